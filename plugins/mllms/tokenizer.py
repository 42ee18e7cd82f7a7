"""An offline byte-level tokenizer for tiny and random-init MLLMs: built locally, no download.

Exported to plugins as ``neckkit.plugin_api.byte_level_tokenizer``.

One token per UTF-8 byte, so any text round-trips. The special tokens come first, in the order
and roles of the model family's own tokenizer (Llama: ``<unk> <s> </s> <pad>``; OPT:
``<s> <pad> </s> <unk>`` with ``</s>`` as BOS), so a tiny model keeps its family's token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IMAGE_TOKEN = "<image>"


def byte_level_tokenizer(
    specials: Sequence[str],
    bos: str,
    *,
    eos: str = "</s>",
    pad: str = "<pad>",
    unk: str = "<unk>",
    image_token: str = IMAGE_TOKEN,
    bos_between_pairs: bool = False,
    image_token_attribute: bool = False,
) -> Any:
    """A ``PreTrainedTokenizerFast``: ``specials`` are ids 0.., the 256 bytes follow, then ``image_token``.

    ``bos`` starts every encoding (and, with ``bos_between_pairs``, the second text of a pair, as
    OPT's tokenizer does); padding is on the left, for batched generation; the special tokens and
    ``image_token`` are never split. ``image_token_attribute``: the tokenizer names ``image_token``
    (``tokenizer.image_token`` / ``image_token_id``, which ``LlavaProcessor`` reads; ``Blip2Processor``
    adds its own ``<image>`` to a tokenizer without one).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if not {bos, eos, pad, unk} <= set(specials):
        raise ValueError(f"bos, eos, pad and unk must be among the special tokens {list(specials)}")
    vocab = {token: index for index, token in enumerate([*specials, *sorted(pre_tokenizers.ByteLevel.alphabet())])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    second = f"{bos} $B" if bos_between_pairs else "$B"
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {second}", special_tokens=[(bos, vocab[bos])]
    )
    added = [AddedToken(token, special=True, normalized=False) for token in (*specials, image_token)]
    backend.add_special_tokens(added)
    named = {"extra_special_tokens": {"image_token": image_token}} if image_token_attribute else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        padding_side="left",
        **named,
    )
