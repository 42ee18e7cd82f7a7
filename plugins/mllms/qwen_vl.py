"""Qwen3-VL entered mid-tower: groundwork for a ``qwen3-vl`` MLLM plugin (not registered yet).

:class:`Qwen3VLMLLM` wraps transformers' ``Qwen3VLForConditionalGeneration`` and its processor. Its
:attr:`~Qwen3VLMLLM.visual` is a :class:`~neckkit.plugins.encoders.qwen_vl.Qwen3VLTower` over the
model's own ``model.model.visual`` (shared, not copied): a neck's raster tokens enter block ``start``,
the tower finishes (merger + DeepStack), and the features reach the library through the argument its
own ``generate`` fills from ``pixel_values`` before the prefill, so placeholder scattering, DeepStack
injection, mRoPE positions, beam expansion and caching are the library's code. Facts checked against
transformers 5.25.0 (``models/qwen3_vl``, ``generation/utils.py``, ``processing_utils.py``):

- The precomputed-features argument is ``mm_encoder_outputs`` (``Qwen3VLModel.forward``,
  ``Qwen3VLForConditionalGeneration.forward``, and ``generate``, which passes it to the prefill only):
  ``{"image": BaseModelOutputWithDeepstackFeatures(pooler_output=..., deepstack_features=...)}``.
  ``pooler_output`` is a sequence of per-image tensors ``[N_i, text_hidden]`` (``get_image_features``
  returns ``torch.split`` of the merger output), concatenated by ``forward`` and scattered, in order,
  into the ``<|image_pad|>`` positions (``masked_scatter``; a count mismatch raises). ``deepstack_features``
  is a list, one entry per tap in ``deepstack_visual_indexes`` order, of per-image sequences
  ``[N_i, text_hidden]``. Passing it together with ``pixel_values`` is a ``ValueError``.
- DeepStack enters the language model, not the prompt: after decoder layer ``k`` (``k`` < number of
  taps), tap ``k``'s features are added to the hidden states at the image positions
  (``Qwen3VLTextModel._deepstack_process``; ``visual_pos_masks`` = the ``<|image_pad|>`` mask), in the
  prefill only (decode steps carry no image tokens).
- Image tokens: the chat template renders an image as ``<|vision_start|><|image_pad|><|vision_end|>``;
  the processor repeats ``<|image_pad|>`` ``prod(image_grid_thw) / merge**2`` = ``(gh/2)*(gw/2)`` times
  (``replace_image_token``) and returns ``image_grid_thw = [1, gh, gw]`` per image and
  ``mm_token_type_ids`` (1 at ``<|image_pad|>``, else 0). The Instruct template adds no default
  system prompt (unlike Qwen2-VL's).
- Position ids (3-D interleaved mRoPE): ``get_rope_index(input_ids, mm_token_type_ids, image_grid_thw,
  attention_mask)``. Text runs count up on all three axes; an image starting at position ``p`` gets
  ``(t, h, w) = (p, p + row, p + col)`` over its ``(gh/2, gw/2)`` LLM grid, and the text after it resumes
  at ``p + max(gh, gw)/2``; padding (attention mask 0) is skipped. So ``image_grid_thw`` and
  ``mm_token_type_ids`` are needed on the neck path too (``forward`` raises without the latter when the
  former is given). ``generate`` computes them once before the prefill, as ``[4, B, L]`` (text positions
  for the causal mask, then t, h, w), stores ``rope_deltas = max position + 1 - length`` and decodes at
  text position + delta. Nothing depends on the pixels, only on the grid.
- The model keeps ``rope_deltas`` between calls; a call with ``input_ids`` and no cache recomputes it.

Tiny model (``build_tiny_qwen3_vl``): the tiny Qwen3-VL tower of ``neckkit.plugins.encoders.qwen_vl``
(the same weights as ``Qwen3VLTower.random_init(tiny=True)``), a 3-layer text model of width 48 (=
the tower's ``out_hidden_size``) with interleaved mRoPE sections (4, 2, 2), and an offline tokenizer:
transformers' own ``Qwen2Tokenizer`` (Qwen's pre-tokenizer regex, NFC, byte-level BPE) over a vocabulary
of the 256 byte symbols (GPT-2 order, as Qwen's ids 0..255) and no merges, followed by Qwen's 14
special tokens in Qwen's order (``<|endoftext|>`` .. ``<|video_pad|>``; id = Qwen's id - 151387), EOS
``<|im_end|>``, pad ``<|endoftext|>``, no BOS. The processor is transformers' ``Qwen3VLProcessor``
with that tokenizer, ``Qwen2VLImageProcessor`` with the tower's values (min_pixels of one merge unit,
so small images keep their size) and :data:`CHAT_TEMPLATE`, a reduction of the Qwen3-VL Instruct chat
template that renders system / user / assistant turns with text and images the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from neckkit.errors import NeckkitError
from neckkit.loading.weights import seeded_init
from neckkit.plugins.encoders.qwen_vl import (
    QWEN3_VL_PROCESSOR,
    Grid,
    ProcessorSpec,
    Qwen3VLTower,
    QwenVisionOutput,
    tiny_qwen3_vl_vision_config,
)
from neckkit.plugins.mllms.common import GENERATION_OPTIONS, generation_settings, pair_prompts, repeat_batch

DEFAULT_MAX_NEW_TOKENS = 64
# Qwen's special tokens in the order of its vocabulary (<|endoftext|> is 151643 there).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
IMAGE_PAD = "<|image_pad|>"
# The Qwen3-VL Instruct chat template restricted to text and image content (no tools, no video): for
# those conversations it renders exactly what the hub template renders.
CHAT_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].content is string %}{{- messages[0].content }}{%- else %}"
    "{%- for content in messages[0].content %}{%- if 'text' in content %}{{- content.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message.role == 'user' or message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}{%- else %}{%- for content in message.content %}"
    "{%- if message.role == 'user' and (content.type == 'image' or 'image' in content or 'image_url' in content) %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif 'text' in content %}{{- content.text }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


# -- the tiny model, offline -------------------------------------------------------------------------


def _byte_symbols() -> list[str]:
    """The 256 byte-level symbols in GPT-2's order (Qwen's token ids 0..255)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return [chr(byte) for byte in printable] + [chr(256 + index) for index in range(len(others))]


def offline_tokenizer() -> Any:
    """transformers' ``Qwen2Tokenizer`` over single bytes and Qwen's special tokens: no download."""
    from transformers import Qwen2Tokenizer

    vocab = {symbol: index for index, symbol in enumerate([*_byte_symbols(), *SPECIAL_TOKENS])}
    return Qwen2Tokenizer(
        vocab=vocab, merges=[], unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        padding_side="left", extra_special_tokens=list(SPECIAL_TOKENS),
    )


def offline_processor(tower: Qwen3VLTower) -> Any:
    """``Qwen3VLProcessor``: the offline tokenizer, the tower's image processor values, :data:`CHAT_TEMPLATE`."""
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    return Qwen3VLProcessor(
        image_processor=tower.processor.transformers_processor(), tokenizer=offline_tokenizer(),
        video_processor=Qwen3VLVideoProcessor(), chat_template=CHAT_TEMPLATE,
    )


def tiny_text_config(tokenizer: Any, width: int) -> Any:
    """A 3-layer Qwen3-VL text model of ``width`` (the tower's ``out_hidden_size``), 3 heads of 16, 1 KV head.

    ``initializer_range`` 0.1 (as the tiny LLaVA): answers then depend on the image and the prompt.
    """
    from transformers import Qwen3VLTextConfig

    return Qwen3VLTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=3,
        num_attention_heads=width // 16, num_key_value_heads=1, head_dim=16, max_position_embeddings=4096,
        initializer_range=0.1, pad_token_id=tokenizer.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [4, 2, 2],
                         "mrope_interleaved": True},
    )


def build_tiny_qwen3_vl(seed: int = 0) -> tuple[Any, Any]:
    """Tiny ``Qwen3VLForConditionalGeneration`` and its offline processor (float32, eval).

    The vision tower holds exactly ``Qwen3VLTower.random_init(tiny=True, seed=seed)``'s weights; the rest
    is drawn under ``seeded_init(seed)``.
    """
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tower = Qwen3VLTower.random_init(tiny=True, seed=seed)
    processor = offline_processor(tower)
    tokenizer = processor.tokenizer
    ids = dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)), strict=True))
    config = Qwen3VLConfig(
        vision_config=tiny_qwen3_vl_vision_config().to_dict(),
        text_config=tiny_text_config(tokenizer, tower.out_dim).to_dict(),
        image_token_id=ids[IMAGE_PAD], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    with seeded_init(seed):
        model = Qwen3VLForConditionalGeneration(config)
    model.model.visual.load_state_dict(tower.visual.state_dict(), strict=True)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]  # as Qwen3-VL Instruct's
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model.eval(), processor


# -- the MLLM ------------------------------------------------------------------------------------------


class Qwen3VLMLLM(nn.Module):
    """Qwen3-VL answering about images given as raster tokens entering block ``start`` of its tower.

    ``model``: a ``Qwen3VLForConditionalGeneration``; ``processor``: its ``Qwen3VLProcessor`` (tokenizer and
    chat template). :attr:`visual` wraps ``model.model.visual`` itself and is kept out of this module's
    children, so the state dict names every tensor once. Batches: B images of one size (one grid).
    """

    def __init__(self, model: Any, processor: Any, entry_layer: int = 2) -> None:
        super().__init__()
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # decoder-only batches: prompts end where generation starts
        self.image_token: str = getattr(processor, "image_token", IMAGE_PAD)
        self.image_token_id: int = model.config.image_token_id
        image_processor = getattr(processor, "image_processor", None)
        spec = _processor_spec(image_processor) if image_processor is not None else QWEN3_VL_PROCESSOR
        visual = Qwen3VLTower(model.model.visual, spec, entry_layer)
        object.__setattr__(self, "_visual", visual)

    @classmethod
    def tiny(cls, seed: int = 0, entry_layer: int = 2) -> Qwen3VLMLLM:
        """The tiny model of :func:`build_tiny_qwen3_vl`."""
        return cls(*build_tiny_qwen3_vl(seed), entry_layer=entry_layer)

    @property
    def visual(self) -> Qwen3VLTower:
        return self._visual

    @property
    def entry_layer(self) -> int:
        return self._visual.entry_layer

    # -- prompts ----------------------------------------------------------------------------------

    def format_prompt(self, prompt: str) -> str:
        """The model's chat template on one user turn (an image, then ``prompt``), generation prompt added."""
        for token in (self.image_token, "<|vision_start|>", "<|vision_end|>"):
            if token in prompt:
                raise NeckkitError(f"Qwen3-VL prompts may not contain {token}: the image is placed by the template")
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    def prompt_inputs(self, prompts: Sequence[str], grid: Grid) -> dict[str, Tensor]:
        """Text inputs for one image of patch grid ``(gh, gw)`` per prompt, as the processor builds them.

        ``<|image_pad|>`` repeated (gh/2)*(gw/2) times, left-padded; returns ``input_ids``, ``attention_mask``,
        ``mm_token_type_ids`` [B, L] and ``image_grid_thw`` [B, 3] = (1, gh, gw), on the model's device.
        """
        self._visual._check_grid(grid)
        merge = self._visual.merge_size
        count = (grid[0] // merge) * (grid[1] // merge)
        texts = [self.format_prompt(prompt).replace(self.image_token, self.image_token * count) for prompt in prompts]
        encoded = self.tokenizer(texts, padding=True, return_tensors="pt")
        device = self.model.get_input_embeddings().weight.device
        input_ids = encoded["input_ids"].to(device)
        return {
            "input_ids": input_ids,
            "attention_mask": encoded["attention_mask"].to(device),
            "mm_token_type_ids": (input_ids == self.image_token_id).long(),
            "image_grid_thw": torch.tensor([[1, *grid]] * len(texts), dtype=torch.long, device=device),
        }

    # -- vision -----------------------------------------------------------------------------------

    def preprocess(self, x01: Tensor) -> Tensor:
        """The processor's resize and normalisation: images [B, 3, H, W] in [0, 1] -> pixels [B, 3, H', W']."""
        return self._visual.pixels(x01)

    def image_features(self, tokens: Tensor, grid: Grid, start: int | None = None) -> QwenVisionOutput:
        """The tower from block ``start`` (default ``entry_layer``) on raster tokens [B, gh*gw, width]:
        merged and DeepStack features, each [B, gh/2*gw/2, hidden]. A DeepStack tap before ``start - 1``
        raises :class:`NeckkitError` (its block output is never computed)."""
        visual = self._visual
        start = visual.entry_layer if start is None else start
        parameter = visual.visual.patch_embed.proj.weight
        return visual.forward_from(tokens.to(device=parameter.device, dtype=parameter.dtype), start, grid)

    @staticmethod
    def mm_encoder_outputs(features: QwenVisionOutput) -> dict[str, Any]:
        """What ``get_image_features`` returns for the batch: per-image merged and DeepStack features."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        return {"image": BaseModelOutputWithDeepstackFeatures(
            pooler_output=list(features.merged),  # B x [N, hidden]
            deepstack_features=[list(feature) for feature in features.deepstack],  # taps x B x [N, hidden]
        )}

    def _inputs(self, tokens: Tensor, prompt: str | Sequence[str], grid: Grid,
                start: int | None) -> tuple[dict[str, Tensor], dict[str, Any]]:
        grid = (int(grid[0]), int(grid[1]))
        width, expected = self._visual.width, grid[0] * grid[1]
        if tokens.ndim != 3 or tokens.shape[1:] != (expected, width):
            raise NeckkitError(
                f"Qwen3-VL tokens for patch grid {grid} must be [B, {expected}, {width}] "
                f"(gh*gw raster tokens), got {tuple(tokens.shape)}"
            )
        prompts = pair_prompts(prompt, tokens.shape[0])
        features = self.image_features(repeat_batch(tokens, len(prompts)), grid, start)
        return self.prompt_inputs(prompts, grid), self.mm_encoder_outputs(features)

    # -- language model ---------------------------------------------------------------------------

    def logits(self, tokens: Tensor, prompt: str | Sequence[str], *, grid: Grid, start: int | None = None) -> Tensor:
        """Logits [B, L, vocab] of the whole prompt (left-padded); differentiable with respect to ``tokens``."""
        inputs, encoded = self._inputs(tokens, prompt, grid, start)
        return self.model(**inputs, mm_encoder_outputs=encoded).logits

    @torch.no_grad()
    def generate_ids(self, tokens: Tensor, prompt: str | Sequence[str], *, grid: Grid, start: int | None = None,
                     **options: Any) -> Tensor:
        """The new token ids [B, new] (pad after EOS) of :meth:`generate`."""
        unknown = sorted(set(options) - set(GENERATION_OPTIONS))
        if unknown:
            raise NeckkitError(
                f"qwen3-vl does not take generation option(s) {', '.join(unknown)} "
                f"(takes: {', '.join(GENERATION_OPTIONS)})"
            )
        inputs, encoded = self._inputs(tokens, prompt, grid, start)
        settings = generation_settings(options, DEFAULT_MAX_NEW_TOKENS)
        if not settings["do_sample"]:  # greedy and beam search ignore them (and transformers warns)
            settings.update(temperature=None, top_p=None, top_k=None)
        settings["pad_token_id"] = self.tokenizer.pad_token_id
        output = self.model.generate(**inputs, mm_encoder_outputs=encoded, **settings)
        return output[:, inputs["input_ids"].shape[1]:]

    @torch.no_grad()
    def generate(self, tokens: Tensor, prompt: str | list[str], *, grid: Grid, start: int | None = None,
                 **options: Any) -> list[str]:
        """Answers about B images of patch grid ``grid`` given as raster tokens [B, gh*gw, width] entering block
        ``start`` (default ``entry_layer``). ``options``: ``max_new_tokens`` (64), ``do_sample`` (false:
        greedy), ``temperature``, ``top_p``, ``num_beams``. One answer per image (or per prompt for one image).
        """
        new_tokens = self.generate_ids(tokens, prompt, grid=grid, start=start, **options)
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    @torch.no_grad()
    def generate_from_pixels(self, pixels: Tensor, prompt: str | list[str], **options: Any) -> list[str]:
        """The uncompressed baseline through the same path: pixels [B, 3, H, W] (see :meth:`preprocess`),
        embedded by the tower and entered at block 0."""
        parameter = self._visual.visual.patch_embed.proj.weight
        pixels = pixels.to(device=parameter.device, dtype=parameter.dtype)
        grid = self._visual.grid_of(pixels)
        return self.generate(self._visual.embed(pixels), prompt, grid=grid, start=0, **options)


def _processor_spec(image_processor: Any) -> ProcessorSpec:
    """The tower's :class:`ProcessorSpec` from a ``Qwen2VLImageProcessor``'s values (Qwen3-VL's defaults else)."""
    default = QWEN3_VL_PROCESSOR
    size = getattr(image_processor, "size", None) or {}
    return ProcessorSpec(
        patch_size=int(getattr(image_processor, "patch_size", default.patch_size)),
        merge_size=int(getattr(image_processor, "merge_size", default.merge_size)),
        min_pixels=int(size.get("shortest_edge") or default.min_pixels),
        max_pixels=int(size.get("longest_edge") or default.max_pixels),
        mean=tuple(getattr(image_processor, "image_mean", default.mean)),
        std=tuple(getattr(image_processor, "image_std", default.std)),
    )


__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "Qwen3VLMLLM",
    "build_tiny_qwen3_vl",
    "offline_processor",
    "offline_tokenizer",
    "tiny_text_config",
]
