"""BLIP-2 with OPT (``blip2``), through transformers' ``Blip2ForConditionalGeneration``.

The MLLM reads the ``eva-g-blip2`` encoder: :attr:`Blip2MLLM.visual_encoder` is a
:class:`~neckkit.plugins.encoders.blip2.Blip2Encoder` around the loaded model's own
``vision_model`` (shared, not copied), so a neck trained for ``eva-g-blip2`` feeds it directly.
Tokens entering block ``start`` run the remaining ViT-g blocks and ``post_layernorm`` here;
everything after that is the library's own code, unmodified: while the library runs, the
vision model's ``forward`` is replaced by one that returns those precomputed outputs
(:meth:`Blip2MLLM.vision_outputs`), so ``Blip2ForConditionalGeneration.forward`` /
``.generate`` run their own Q-Former, ``language_projection``, placement of the query outputs
at the ``<image>`` tokens, and OPT.

Prompts: a question ``q`` becomes BLIP-2 OPT's ``"Question: q Answer:"``; a prompt that already
starts with ``"Question:"`` or ends with ``"Answer:"`` is used as it is; an empty prompt means
captioning (just the image tokens and BOS, as the library's own default). The text is tokenised by
the checkpoint's ``Blip2Processor``: ``num_query_tokens`` ``<image>`` tokens first, then the prompt,
padded on the left so that batches of prompts of different lengths answer as each alone would.

Weights: a hub id (default ``Salesforce/blip2-opt-2.7b``) or a local folder saved by
``Blip2ForConditionalGeneration.save_pretrained`` plus ``Blip2Processor.save_pretrained``; loaded
in the checkpoint's own dtype (``Salesforce/blip2-opt-2.7b``: float32) unless ``dtype`` says otherwise
(under ``float16`` the library keeps the Q-Former and query tokens in float32, tiny models too). ``tiny=True``: the same
classes with tiny widths, random init, an offline byte-level tokenizer, and exactly the tiny
``eva-g-blip2`` encoder's vision weights, so a neck trained with ``--encoder eva-g-blip2 --tiny``
serves ``blip2 --tiny``. ``random_init=True``: the real-size BLIP-2 OPT-2.7b architecture with
random weights (its vision tower equals ``eva-g-blip2 --random-init`` built with the same seed)
and the same byte-level tokenizer.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from neckkit.errors import first_line
from neckkit.loading.weights import few_names
from neckkit.plugin_api import MLLM, NeckkitError, WeightsSource, Wording, byte_level_tokenizer, random_weights
from neckkit.plugins.encoders.blip2 import (
    FULL_MODEL_TYPE,
    HUB_ID,
    INDEX_FILE,
    RANDOM_INIT_RANGE,
    SINGLE_FILE,
    Blip2Encoder,
    blip2_vision_config,
    build_blip2_vision,
)
from neckkit.plugins.mllms.common import GENERATION_OPTIONS, generation_settings, pair_prompts, repeat_batch
from neckkit.plugins.mllms.tokenizer import IMAGE_TOKEN

ENCODER = "eva-g-blip2"
# The files a BLIP-2 folder needs: the model's config and safetensors, the processor's and tokenizer's files.
DOWNLOAD_PATTERNS = ("*.json", "*.safetensors", "*.txt")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")
DEFAULT_MAX_NEW_TOKENS = 30  # LAVIS' default caption length for BLIP-2
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
BYTE_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # OPT's ids 0..3: bos = eos = "</s>" (2), pad 1
# The real Salesforce/blip2-opt-2.7b: OPT-2.7b stops at "\n" (50118) and <image> is 50265.
OPT_2_7B = dict(
    hidden_size=2560, ffn_dim=10240, num_hidden_layers=32, num_attention_heads=32, vocab_size=50272,
    max_position_embeddings=2048, word_embed_proj_dim=2560, do_layer_norm_before=True,
    bos_token_id=2, eos_token_id=50118, pad_token_id=1,
)
OPT_2_7B_IMAGE_TOKEN = 50265
TINY_QUERY_TOKENS = 8
TINY_QFORMER = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, cross_attention_frequency=2,
    vocab_size=64, max_position_embeddings=64,
)
TINY_OPT = dict(
    hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=272,
    max_position_embeddings=512, word_embed_proj_dim=32, do_layer_norm_before=True,
)


# -- prompts ------------------------------------------------------------------------------------


def format_prompt(prompt: str) -> str:
    """BLIP-2 OPT's VQA format ``"Question: {prompt} Answer:"``; ``""`` (captioning) and prompts
    already in that format are kept."""
    text = prompt.strip()
    if not text or text.startswith("Question:") or text.endswith("Answer:"):
        return text
    return f"Question: {text} Answer:"


def generation_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """The library's ``generate`` keywords; greedy unless ``do_sample``; unknown options are an error."""
    unknown = sorted(set(options) - set(GENERATION_OPTIONS))
    if unknown:
        raise NeckkitError(f"unknown generation option {unknown[0]!r} for blip2 (accepts: {', '.join(GENERATION_OPTIONS)})")
    return generation_settings(options, DEFAULT_MAX_NEW_TOKENS)


# -- the MLLM -----------------------------------------------------------------------------------


class Blip2MLLM(MLLM):
    """A ``Blip2ForConditionalGeneration`` (OPT) and its ``Blip2Processor``, entered at any ViT block."""

    encoder = ENCODER
    feature_layer = -1  # the Q-Former reads the last block's tokens, after post_layernorm

    def __init__(self, model: Any, processor: Any, entry_layer: int = 2) -> None:
        super().__init__()
        if not getattr(model.config, "use_decoder_only_language_model", False):
            raise NeckkitError("the blip2 plugin serves BLIP-2 with a decoder-only language model (OPT), not Flan-T5")
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        # Not a registered submodule: the vision weights are already ``model.vision_model``'s.
        object.__setattr__(self, "_visual_encoder", Blip2Encoder(model.vision_model, entry_layer=entry_layer))
        self._lock = threading.RLock()
        self._check_image_tokens()

    def _check_image_tokens(self) -> None:
        config, processor = self.model.config, self.processor
        image_token_id = config.image_token_id
        if image_token_id is None:
            raise NeckkitError(
                "this BLIP-2 checkpoint has no image_token_index in config.json (an old snapshot, from before "
                f"transformers placed the query outputs at <image> tokens); download a current copy (`hf download {HUB_ID}`)"
            )
        if processor.num_query_tokens is None:  # older processor configs do not record it
            processor.num_query_tokens = config.num_query_tokens
        processor_token = self.tokenizer.convert_tokens_to_ids(str(processor.image_token))
        if processor_token != image_token_id or processor.num_query_tokens != config.num_query_tokens:
            raise NeckkitError(
                f"the BLIP-2 processor (image token {processor_token}, {processor.num_query_tokens} query tokens) does "
                f"not match the model (image token {image_token_id}, {config.num_query_tokens} query tokens)"
            )

    @property
    def visual_encoder(self) -> Blip2Encoder:
        return self._visual_encoder

    @property
    def entry_layer(self) -> int:
        return self.visual_encoder.entry_layer

    @property
    def num_query_tokens(self) -> int:
        return int(self.model.config.num_query_tokens)

    # -- pieces ------------------------------------------------------------------------------

    def image_embeds(self, tokens: Tensor, start: int | None = None) -> Tensor:
        """What the vision model would return as ``last_hidden_state``, from tokens entering block ``start``.

        ``tokens`` [B, T, width] (e.g. a neck's output, any float dtype and device) run blocks
        ``start..`` of the shared ViT-g and ``post_layernorm`` on the vision model's device and dtype.
        """
        encoder = self.visual_encoder
        start = encoder.entry_layer if start is None else start
        if tokens.dim() != 3 or tokens.shape[-1] != encoder.width:
            raise NeckkitError(f"expected visual tokens [B, T, {encoder.width}], got {list(tokens.shape)}")
        weight = self.model.vision_model.embeddings.patch_embedding.weight
        tokens = tokens.to(device=weight.device, dtype=weight.dtype)
        return encoder.last_hidden_state(encoder.blocks(tokens, start, encoder.num_layers))

    def text_inputs(self, prompts: list[str]) -> dict[str, Tensor]:
        """``input_ids`` and ``attention_mask`` as ``Blip2Processor(images=..., text=...)`` makes them.

        The processor tokenises the formatted prompts (padded on the left) and, as it does when
        images are given, ``num_query_tokens`` ``<image>`` tokens go first, never padded.
        """
        texts = [format_prompt(prompt) for prompt in prompts]
        encoding = self.processor(text=texts, padding=True, padding_side="left", return_tensors="pt")
        ids, mask = encoding["input_ids"], encoding["attention_mask"]
        image = torch.full((ids.shape[0], self.num_query_tokens), self.model.config.image_token_id, dtype=ids.dtype)
        device = self.model.get_input_embeddings().weight.device
        return {
            "input_ids": torch.cat([image, ids], dim=1).to(device),
            "attention_mask": torch.cat([torch.ones_like(image), mask], dim=1).to(device),
        }

    @contextlib.contextmanager
    def vision_outputs(self, image_embeds: Tensor) -> Iterator[None]:
        """While inside, ``model.vision_model(...)`` returns ``image_embeds`` as its outputs.

        The library's ``forward`` / ``generate`` call the vision model on ``pixel_values`` and
        hand its ``last_hidden_state`` to the Q-Former; this makes them use tokens computed from
        block ``start`` on instead, so the rest of the path is the library's own. The pooled
        output is what ``Blip2VisionModel`` computes (``post_layernorm`` of the class token).
        Raises if the library did not call the vision model (its tokens would have been ignored).
        """
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        vision = self.model.vision_model
        outputs = BaseModelOutputWithPooling(
            last_hidden_state=image_embeds, pooler_output=vision.post_layernorm(image_embeds[:, 0])
        )
        calls = []

        def forward(*_args: Any, **_kwargs: Any) -> Any:
            calls.append(1)
            return outputs

        with self._lock:
            saved = vision.__dict__.get("forward")  # accelerate's hook, if any
            vision.forward = forward
            try:
                yield
            finally:
                if saved is None:
                    del vision.forward
                else:
                    vision.forward = saved
        if not calls:
            raise RuntimeError("transformers' BLIP-2 did not call its vision model; neck tokens would be ignored")

    def _inputs(self, image_embeds: Tensor, prompt: str | list[str]) -> tuple[Tensor, dict[str, Tensor]]:
        prompts = pair_prompts(prompt, image_embeds.shape[0])
        return repeat_batch(image_embeds, len(prompts)), self.text_inputs(prompts)

    def _decode(self, sequences: Tensor, input_ids: Tensor) -> list[str]:
        """The generated text only: the library returns the prompt's ids followed by the new ones."""
        length = input_ids.shape[1]
        if sequences.shape[1] >= length and torch.equal(sequences[:, :length].to(input_ids.device), input_ids):
            sequences = sequences[:, length:]
        return [text.strip() for text in self.tokenizer.batch_decode(sequences, skip_special_tokens=True)]

    # -- the MLLM interface ------------------------------------------------------------------

    def logits(self, tokens: Tensor, prompt: str | list[str], start: int | None = None) -> Tensor:
        """The language model's logits over the whole sequence (image tokens, prompt): [B, L, vocab].

        The library's ``model(pixel_values=..., input_ids=..., attention_mask=...).logits`` with the
        vision model entered at block ``start`` (default ``entry_layer``).
        """
        image_embeds, inputs = self._inputs(self.image_embeds(tokens, start), prompt)
        with self.vision_outputs(image_embeds):
            return self.model(pixel_values=image_embeds, **inputs).logits

    def logits_from_pixels(self, pixels: Tensor, prompt: str | list[str]) -> Tensor:
        """The same from preprocessed pixels through the library's full forward (the uncompressed baseline)."""
        pixels, inputs = self._inputs(self._pixels(pixels), prompt)
        return self.model(pixel_values=pixels, **inputs).logits

    @torch.no_grad()
    def generate(
        self, tokens: Tensor, prompt: str | list[str], *, start: int | None = None, **options: Any
    ) -> list[str]:
        """Answers (one per image, or per prompt for one image) from tokens entering block ``start``.

        ``options``: ``max_new_tokens`` (default 30), ``do_sample`` (default false: greedy,
        deterministic), ``temperature``, ``top_p`` (sampling only), ``num_beams``.
        """
        kwargs = generation_kwargs(options)
        image_embeds, inputs = self._inputs(self.image_embeds(tokens, start), prompt)
        with self.vision_outputs(image_embeds):
            sequences = self.model.generate(pixel_values=image_embeds, **inputs, **kwargs)
        return self._decode(sequences, inputs["input_ids"])

    @torch.no_grad()
    def generate_from_pixels(self, pixels: Tensor, prompt: str | list[str], **options: Any) -> list[str]:
        """The uncompressed baseline: the library's ``generate`` on preprocessed pixels [B, 3, S, S]."""
        kwargs = generation_kwargs(options)
        pixels, inputs = self._inputs(self._pixels(pixels), prompt)
        sequences = self.model.generate(pixel_values=pixels, **inputs, **kwargs)
        return self._decode(sequences, inputs["input_ids"])

    def _pixels(self, pixels: Tensor) -> Tensor:
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise NeckkitError(f"expected preprocessed pixels [B, 3, S, S], got {list(pixels.shape)}")
        weight = self.model.vision_model.embeddings.patch_embedding.weight
        return pixels.to(device=weight.device, dtype=weight.dtype)


# -- configs, tokenizer, processor ---------------------------------------------------------------


def byte_tokenizer() -> Any:
    """An offline byte-level tokenizer laid out like OPT's: ``<s> <pad> </s> <unk>``, 256 bytes, ``<image>``.

    Every text is encoded (one token per UTF-8 byte), ``"</s>"`` is BOS and EOS as in OPT, and
    BOS starts every encoding; padding is on the left, for batched generation.
    """
    return byte_level_tokenizer(BYTE_SPECIALS, bos="</s>", bos_between_pairs=True)


def random_processor(num_query_tokens: int, image_size: int = 224) -> Any:
    """``Blip2Processor``: BLIP-2's image processor (square resize, OpenAI mean / std) and :func:`byte_tokenizer`."""
    from transformers import Blip2Processor, BlipImageProcessor

    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    return Blip2Processor(image_processor, byte_tokenizer(), num_query_tokens=num_query_tokens)


def blip2_config(tiny: bool, vision_config: Any = None, image_token_index: int | None = None, eos_token_id: int | None = None) -> Any:
    """The Blip2Config of BLIP-2 OPT-2.7b (ViT-g/14, 32-query Q-Former, OPT-2.7b), or a tiny one."""
    from transformers import Blip2Config, Blip2QFormerConfig, OPTConfig

    vision_config = vision_config if vision_config is not None else blip2_vision_config(tiny=tiny)
    if tiny:
        qformer = Blip2QFormerConfig(**TINY_QFORMER)
        text = OPTConfig(**TINY_OPT, bos_token_id=2, eos_token_id=2, pad_token_id=1)
        query_tokens = TINY_QUERY_TOKENS
    else:
        qformer = Blip2QFormerConfig()  # transformers' defaults are BLIP-2's: 768 wide, 12 layers, cross-attention every 2
        text = OPTConfig(**OPT_2_7B)
        query_tokens = 32
    if eos_token_id is not None:
        text.eos_token_id = eos_token_id
    return Blip2Config(
        vision_config=vision_config,
        qformer_config=qformer,
        text_config=text,
        num_query_tokens=query_tokens,
        image_token_index=OPT_2_7B_IMAGE_TOKEN if image_token_index is None else image_token_index,
        initializer_range=RANDOM_INIT_RANGE,
    )


def meta_size(dtype: str = "bfloat16") -> dict[str, Any]:
    """Parameter counts of the real-size BLIP-2 OPT-2.7b, built on the meta device (no memory, no download).

    ``bytes``: the parameters as ``from_pretrained(dtype=...)`` holds them (float16 keeps the
    Q-Former and query tokens in float32, see :func:`kept_in_float32`; bfloat16 keeps nothing);
    the language model's output layer is tied to its input embedding and counted once.
    """
    from transformers import Blip2ForConditionalGeneration

    target = _dtype(dtype) or torch.float32
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(blip2_config(tiny=False))

    def count(module: torch.nn.Module) -> int:
        return sum(parameter.numel() for parameter in module.parameters())

    parts = {
        "vision": count(model.vision_model),
        "qformer": count(model.qformer) + model.query_tokens.numel(),
        "projection": count(model.language_projection),
        "language_model": count(model.language_model),
    }
    total = count(model)
    if total != sum(parts.values()):
        raise AssertionError("every BLIP-2 parameter belongs to one part")
    keep = kept_in_float32(model, target)
    size = torch.empty((), dtype=target).element_size()
    return {
        "model": HUB_ID,
        "parameters": {**parts, "total": total},
        "dtype": str(target).removeprefix("torch."),
        "bytes": sum(p.numel() * (4 if name in keep else size) for name, p in model.named_parameters()),
    }


def _dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype).removeprefix("torch.") not in DTYPES:
        raise NeckkitError(f"unknown dtype {dtype!r} for blip2 (use one of: {', '.join(DTYPES)}, auto)")
    return DTYPES[str(dtype).removeprefix("torch.")]


def kept_in_float32(model: Any, dtype: torch.dtype) -> set[str]:
    """Parameters ``from_pretrained(dtype=...)`` keeps in float32: ``_keep_in_fp32_modules`` for float16
    only, ``_keep_in_fp32_modules_strict`` for float16 and bfloat16 (BLIP-2: query tokens and Q-Former
    under float16)."""
    keep = set(getattr(model, "_keep_in_fp32_modules_strict", None) or ()) if dtype in (torch.float16, torch.bfloat16) else set()
    if dtype == torch.float16:
        keep |= set(getattr(model, "_keep_in_fp32_modules", None) or ())
    patterns = [re.compile(rf"(^|\.){re.escape(name)}(\.|$)") for name in keep]
    return {name for name, _ in model.named_parameters() if any(pattern.search(name) for pattern in patterns)}


def _to_dtype(model: Any, dtype: torch.dtype) -> None:
    """Cast as ``from_pretrained(dtype=...)`` does, keeping :func:`kept_in_float32` parameters in float32."""
    keep = kept_in_float32(model, dtype)
    model.to(dtype)
    for name, parameter in model.named_parameters():
        if name in keep:
            parameter.data = parameter.data.float()


def _device(device_map: Any) -> torch.device | None:
    """Where a tiny or random model goes: ``"auto"`` (a GPU if there is one), a device, or ``{"": device}``."""
    if device_map is None:
        return None
    if isinstance(device_map, dict):
        if set(device_map) != {""}:
            raise NeckkitError("a tiny or random-init blip2 takes one device (device_map='cuda:0' or {'': 0})")
        device_map = device_map[""]
    if device_map == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(f"cuda:{device_map}" if isinstance(device_map, int) else device_map)
    except (RuntimeError, TypeError):
        raise NeckkitError(f"invalid device_map {device_map!r} for blip2") from None


def build_random(tiny: bool, dtype: Any = None, device_map: Any = None) -> tuple[Any, Any]:
    """A seeded random BLIP-2 (tiny or real size) whose vision tower is ``eva-g-blip2``'s, and its processor."""
    from transformers import Blip2ForConditionalGeneration

    # Under neckkit's seeded_init(seed) the vision tower is drawn first, from the RNG state the
    # eva-g-blip2 factory starts from, so it equals eva-g-blip2 built with the same seed.
    vision = build_blip2_vision(tiny=tiny, random_init=not tiny).model
    vision_config = vision.config
    processor = random_processor(TINY_QUERY_TOKENS if tiny else 32, image_size=vision_config.image_size)
    tokenizer = processor.tokenizer
    config = blip2_config(
        tiny, vision_config=vision_config, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        eos_token_id=tokenizer.eos_token_id,
    )
    if len(tokenizer) > config.text_config.vocab_size:
        raise AssertionError("the byte tokenizer must fit OPT's vocabulary")
    model = Blip2ForConditionalGeneration(config)
    # transformers zeroes the query tokens (all 32 queries alike); BLIP-2 (LAVIS) draws them N(0, 0.02).
    torch.nn.init.normal_(model.query_tokens, mean=0.0, std=RANDOM_INIT_RANGE)
    model.vision_model.load_state_dict(vision.state_dict(), strict=True)
    del vision
    target = _dtype(dtype)
    if target is not None and target != torch.float32:
        _to_dtype(model, target)
    device = _device(device_map)
    if device is not None:
        model.to(device)
    return model, processor


# -- loading real weights -------------------------------------------------------------------------


# How errors about BLIP-2 MLLM weights read (see neckkit.loading.hub.WeightsSource).
WORDING = Wording(
    name="BLIP-2 weights",
    loading="BLIP-2",
    hub_id=HUB_ID,
    folder="holds config.json and the safetensors",
    folder_hint=(
        "pass --mllm-weights with a folder holding Blip2ForConditionalGeneration.save_pretrained and "
        "Blip2Processor.save_pretrained output, or use --tiny"
    ),
    flag="--mllm-weights",
    fallback="--tiny",
    pronoun="it",
    patterns=DOWNLOAD_PATTERNS,
)


def check_folder(source: WeightsSource) -> None:
    """config.json of a BLIP-2, its safetensors and the processor's files are all in ``source.folder``."""
    folder = source.folder
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise source.fail("config.json not found")
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise source.fail(f"unreadable config.json ({first_line(error)})") from None
    if model_type != FULL_MODEL_TYPE:
        raise NeckkitError(f"BLIP-2 weights {source.where} have model_type {model_type!r} in config.json; expected {FULL_MODEL_TYPE!r}")
    missing = []
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as error:
            raise source.fail(f"unreadable {INDEX_FILE} ({error!r})") from None
        missing += [name for name in shards if not (folder / name).is_file()]
    elif not (folder / SINGLE_FILE).is_file():
        missing.append(f"{SINGLE_FILE} (or {INDEX_FILE} and its shards)")
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        missing.append(" or ".join(PROCESSOR_FILES))
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("the tokenizer files (tokenizer.json or vocab.json)")
    if missing:
        raise source.fail(f"{few_names(missing)} not found")


def load_blip2(weights: str, dtype: Any = None, device_map: Any = None) -> tuple[Any, Any]:
    """``Blip2ForConditionalGeneration`` and ``Blip2Processor`` of a hub id or local folder (the checkpoint's dtype by default)."""
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    source = WeightsSource(weights, WORDING, fetch=DOWNLOAD_PATTERNS)
    check_folder(source)
    options: dict[str, Any] = {"dtype": "auto" if dtype in (None, "auto") else _dtype(dtype)}
    if device_map is not None:
        options["device_map"] = device_map
    try:
        processor = Blip2Processor.from_pretrained(source.folder)
    except (OSError, ValueError, TypeError) as error:
        raise source.fail(f"its processor does not load ({first_line(error)})") from None
    try:
        model = Blip2ForConditionalGeneration.from_pretrained(source.folder, **options)
    except (OSError, ValueError, RuntimeError) as error:
        raise source.fail(f"the model does not load ({first_line(error)})") from None
    return model, processor


def build_blip2(
    weights: str | None = None,
    tiny: bool = False,
    random_init: bool = False,
    entry_layer: int = 2,
    dtype: str | None = None,
    device_map: Any = None,
) -> Blip2MLLM:
    """Factory for ``blip2``: a hub id or local folder (default Salesforce/blip2-opt-2.7b), tiny or random."""
    if random_weights(weights, tiny, random_init):
        if dtype == "auto":
            dtype = None
        model, processor = build_random(tiny=tiny, dtype=dtype, device_map=device_map)
    else:
        model, processor = load_blip2(weights or HUB_ID, dtype=dtype, device_map=device_map)
    return Blip2MLLM(model, processor, entry_layer=entry_layer)
