"""Qwen3-VL (``qwen3-vl``) and Qwen2.5-VL (``qwen2.5-vl``) entered mid-tower, at native resolution.

:class:`Qwen3VLMLLM` wraps transformers' ``Qwen3VLForConditionalGeneration`` and its processor,
:class:`Qwen25VLMLLM` ``Qwen2_5_VLForConditionalGeneration``. Their :attr:`~_QwenMLLM.visual_encoder`
is a :class:`~neckkit.plugins.encoders.qwen_vl.Qwen3VLTower` / ``Qwen25VLTower`` (the registered
``qwen3-vl-vit`` / ``qwen2.5-vl-vit`` encoders) over the model's own ``model.model.visual`` (shared, not
copied): a neck's raster tokens enter block ``start``, the tower finishes (merger, + DeepStack for
Qwen3-VL), and the features reach the library through the argument its own ``generate`` fills from
``pixel_values`` before the prefill, so placeholder scattering, DeepStack injection, mRoPE positions,
beam expansion and caching are the library's code. ``generate`` needs ``grid=(gh, gw)``, the images'
patch grid (``visual_encoder.token_grid(h, w)``): the prompt's ``<|image_pad|>`` count and the mRoPE
positions follow it. Facts checked against transformers 5.25.0 (``models/qwen3_vl``,
``models/qwen2_5_vl``, ``generation/utils.py``, ``processing_utils.py``):

- Qwen2.5-VL takes the same ``mm_encoder_outputs`` argument, ``{"image": BaseModelOutputWithPooling(
  pooler_output=...)}`` (per-image merger outputs; no DeepStack), the same ``image_grid_thw`` /
  ``mm_token_type_ids`` inputs and the same mRoPE index rule for images (its ``second_per_grid_ts``
  matters for videos only; sections not interleaved). Its Instruct chat template adds the system turn
  ``You are a helpful assistant.`` when a conversation has none (:data:`QWEN25_CHAT_TEMPLATE`).

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

Weights (factories :func:`build_qwen3_vl`, :func:`build_qwen25_vl`): a hub id (default
``Qwen/Qwen3-VL-<size>-Instruct``, sizes 2b / 4b / 8b, default 2b; ``Qwen/Qwen2.5-VL-<size>-Instruct``,
3b / 7b, default 3b) or a folder saved by ``save_pretrained`` (model and processor), in the checkpoint's
dtype unless ``dtype`` says otherwise. ``random_init``: the real architecture of ``size`` (text configs
:data:`QWEN3_VL_TEXT`, :data:`QWEN25_VL_TEXT`) with random weights and the offline tokenizer below.
Random models are drawn with the tower first, so under the host's ``seeded_init(seed)`` the tiny MLLM's
tower holds exactly the weights of the tiny encoder built with the same seed (a neck trained with
``--encoder qwen3-vl-vit --tiny`` serves ``qwen3-vl --tiny``); so does a real-size random one built on
the CPU (on another device, its tower is drawn from that device's generator).

Tiny model (``build_tiny_qwen3_vl``): the tiny Qwen3-VL tower of ``neckkit.plugins.encoders.qwen_vl``
(the same weights as ``Qwen3VLTower.random_init(tiny=True, seed=seed)``), a 3-layer text model of width 48 (=
the tower's ``out_hidden_size``) with interleaved mRoPE sections (4, 2, 2), and an offline tokenizer:
transformers' own ``Qwen2Tokenizer`` (Qwen's pre-tokenizer regex, NFC, byte-level BPE) over a vocabulary
of the 256 byte symbols (GPT-2 order, as Qwen's ids 0..255) and no merges, followed by Qwen's 14
special tokens in Qwen's order (``<|endoftext|>`` .. ``<|video_pad|>``; id = Qwen's id - 151387), EOS
``<|im_end|>``, pad ``<|endoftext|>``, no BOS. The processor is transformers' ``Qwen3VLProcessor``
with that tokenizer, ``Qwen2VLImageProcessor`` with the tower's values (min_pixels of one merge unit,
so small images keep their size) and :data:`CHAT_TEMPLATE`, a reduction of the Qwen3-VL Instruct chat
template that renders system / user / assistant turns with text and images the same way.
``build_tiny_qwen25_vl`` is the same for Qwen2.5-VL: the tiny Qwen2.5-VL tower, a 3-layer
Qwen2.5-VL text model of width 48 (mRoPE sections (4, 2, 2), not interleaved), ``Qwen2_5_VLProcessor``
with :data:`QWEN25_CHAT_TEMPLATE`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
from torch import Tensor

from neckkit.errors import first_line
from neckkit.plugin_api import (
    MLLM,
    NeckkitError,
    VisualEncoder,
    WeightsSource,
    Wording,
    hub_offline,
    random_weights,
    seeded_init,
)
from neckkit.plugins.encoders.qwen_vl import (
    QWEN3_VL_HUB_IDS,
    QWEN3_VL_PROCESSOR,
    QWEN3_VL_TINY_IMAGE_SIZE,
    QWEN25_VL_HUB_IDS,
    QWEN25_VL_PROCESSOR,
    QWEN25_VL_TINY_IMAGE_SIZE,
    Grid,
    ProcessorSpec,
    Qwen3VLTower,
    Qwen25VLTower,
    QwenVisionOutput,
    choose_size,
)
from neckkit.plugins.mllms.common import (
    GENERATION_OPTIONS,
    generation_settings,
    pair_prompts,
    repeat_batch,
    saved_model_wording,
)

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
# The Qwen2.5-VL (and Qwen2-VL) Instruct chat template restricted to text and image content: a system
# turn "You are a helpful assistant." when the conversation starts without one, then every turn alike.
QWEN25_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message.role != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}{%- else %}{%- for content in message.content %}"
    "{%- if content.type == 'image' or 'image' in content or 'image_url' in content %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif 'text' in content %}{{- content.text }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Real text models: the hub config.json ``text_config`` values of the Instruct checkpoints (as quoted by
# public repositories; the hub was not reachable from here). Qwen3-VL's LLMs are Qwen3-1.7B / 4B / 8B.
QWEN3_VL_TEXT: dict[str, dict[str, Any]] = {
    "2b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
               num_key_value_heads=8),
    "4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
               num_key_value_heads=8),
    "8b": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
               num_key_value_heads=8),
}
_QWEN3_TEXT_COMMON = dict(
    vocab_size=151936, head_dim=128, max_position_embeddings=262144, rms_norm_eps=1e-6, hidden_act="silu",
    rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
                     "mrope_interleaved": True},
)
QWEN25_VL_TEXT: dict[str, dict[str, Any]] = {
    "3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, vocab_size=151936),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064),
}
_QWEN25_TEXT_COMMON = dict(
    max_position_embeddings=128000, rms_norm_eps=1e-6, hidden_act="silu",
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
)
TIED_EMBEDDINGS = {"2b", "4b", "3b"}  # the small checkpoints share input embeddings and lm_head


@dataclass(frozen=True)
class QwenFamily:
    """What tells Qwen3-VL and Qwen2.5-VL apart, for the shared MLLM code below."""

    family: str  # "Qwen3-VL", in messages
    name: str  # the registered MLLM name
    encoder: str  # the registered encoder name
    model_type: str  # config.json's model_type
    hub_ids: Mapping[str, str]  # size -> Instruct checkpoint; the first is the default
    tower_class: type[Qwen3VLTower] | type[Qwen25VLTower]
    default_processor: ProcessorSpec
    tiny_image_size: int
    chat_template: str

    @property
    def wording(self) -> Wording:
        return saved_model_wording(f"{self.family} weights", next(iter(self.hub_ids.values())))

    def classes(self) -> tuple[Any, Any, Any, Any, Any]:
        """transformers' (config, text config, model, processor, video processor) classes of the family."""
        if self.model_type == "qwen3_vl":
            from transformers import (
                Qwen3VLConfig,
                Qwen3VLForConditionalGeneration,
                Qwen3VLProcessor,
                Qwen3VLTextConfig,
            )
            from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

            return Qwen3VLConfig, Qwen3VLTextConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor
        from transformers import (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLProcessor,
            Qwen2_5_VLTextConfig,
        )
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        return Qwen2_5_VLConfig, Qwen2_5_VLTextConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLVideoProcessor


QWEN3_VL = QwenFamily("Qwen3-VL", "qwen3-vl", "qwen3-vl-vit", "qwen3_vl", QWEN3_VL_HUB_IDS, Qwen3VLTower,
                      QWEN3_VL_PROCESSOR, QWEN3_VL_TINY_IMAGE_SIZE, CHAT_TEMPLATE)
QWEN25_VL = QwenFamily("Qwen2.5-VL", "qwen2.5-vl", "qwen2.5-vl-vit", "qwen2_5_vl", QWEN25_VL_HUB_IDS, Qwen25VLTower,
                       QWEN25_VL_PROCESSOR, QWEN25_VL_TINY_IMAGE_SIZE, QWEN25_CHAT_TEMPLATE)


# -- the offline tokenizer and processor ---------------------------------------------------------------


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


def _family_of(tower: Qwen3VLTower | Qwen25VLTower) -> QwenFamily:
    return QWEN3_VL if isinstance(tower, Qwen3VLTower) else QWEN25_VL


def offline_processor(tower: Qwen3VLTower | Qwen25VLTower) -> Any:
    """The family's processor (``Qwen3VLProcessor`` / ``Qwen2_5_VLProcessor``): the offline tokenizer, the
    tower's image processor values and the family's chat template."""
    family = _family_of(tower)
    *_, processor_class, video_processor_class = family.classes()
    return processor_class(
        image_processor=tower.processor.transformers_processor(), tokenizer=offline_tokenizer(),
        video_processor=video_processor_class(), chat_template=family.chat_template,
    )


def _special_ids(tokenizer: Any) -> dict[str, int]:
    return dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)), strict=True))


# -- configs -------------------------------------------------------------------------------------------


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


def tiny_qwen25_text_config(tokenizer: Any, width: int) -> Any:
    """A 3-layer Qwen2.5-VL text model of ``width``, 3 heads of 16, 1 KV head, mRoPE sections (4, 2, 2)."""
    from transformers import Qwen2_5_VLTextConfig

    return Qwen2_5_VLTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=3,
        num_attention_heads=width // 16, num_key_value_heads=1, max_position_embeddings=4096,
        initializer_range=0.1, **_qwen25_token_ids(tokenizer),
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [4, 2, 2]},
    )


def _qwen25_token_ids(tokenizer: Any) -> dict[str, int]:
    """Qwen2.5's text-config token ids (BOS and pad ``<|endoftext|>``, EOS ``<|im_end|>``) in ``tokenizer``."""
    ids = _special_ids(tokenizer)
    return dict(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])


def text_config(family: QwenFamily, size: str, tokenizer: Any) -> Any:
    """The real text model of ``size`` (:data:`QWEN3_VL_TEXT`, :data:`QWEN25_VL_TEXT`), special-token ids of
    ``tokenizer``."""
    _, text_class, *_ = family.classes()
    if family is QWEN3_VL:
        return text_class(**_QWEN3_TEXT_COMMON, **QWEN3_VL_TEXT[size], pad_token_id=tokenizer.pad_token_id)
    return text_class(**_QWEN25_TEXT_COMMON, **QWEN25_VL_TEXT[size], **_qwen25_token_ids(tokenizer))


def mllm_config(family: QwenFamily, size: str | None, tokenizer: Any, vision_config: Any) -> Any:
    """The whole model's config: real (``size``) or tiny (``None``) text model, special-token ids of ``tokenizer``."""
    config_class, *_ = family.classes()
    ids = _special_ids(tokenizer)
    if size is None:
        tiny_text = tiny_text_config if family is QWEN3_VL else tiny_qwen25_text_config
        text = tiny_text(tokenizer, vision_config.out_hidden_size)
    else:
        text = text_config(family, size, tokenizer)
    return config_class(
        vision_config=vision_config.to_dict(), text_config=text.to_dict(),
        image_token_id=ids[IMAGE_PAD], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=size in TIED_EMBEDDINGS,
    )


# -- building random models and loading real ones ------------------------------------------------------


def build_random(family: QwenFamily, size: str | None = None, seed: int | None = 0,
                 dtype: torch.dtype | None = None, device: torch.device | None = None) -> tuple[Any, Any]:
    """A random model of the family, tiny (``size=None``) or real-size, and its offline processor.

    The tower is drawn first, as ``<Tower>.random_init`` draws it, so it equals the encoder built from the
    same RNG state: under ``seeded_init(seed)``, or the current state with ``seed=None`` (what the registered
    factories do, inside the host's ``seeded_init``). A tiny model is built on the CPU, then moved.
    """
    tiny = size is None
    build_on = torch.device("cpu") if tiny or device is None else device
    with seeded_init(seed) if seed is not None else contextlib.nullcontext():
        tower = family.tower_class.random_init(size or next(iter(family.hub_ids)), seed=None, tiny=tiny,
                                               device=build_on)
        processor = offline_processor(tower)
        config = mllm_config(family, size, processor.tokenizer, tower.visual.config)
        _, _, model_class, *_ = family.classes()
        with build_on:
            model = model_class._from_config(config, dtype=torch.float32 if tiny else (dtype or torch.float32))
    model.model.visual.load_state_dict(tower.visual.state_dict(), strict=True)
    ids = _special_ids(processor.tokenizer)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]  # as the Instruct models'
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    if tiny and (dtype is not None or device is not None):
        model = model.to(device=device, dtype=dtype)
    return model.eval(), processor


def build_tiny_qwen3_vl(seed: int | None = 0) -> tuple[Any, Any]:
    """Tiny ``Qwen3VLForConditionalGeneration`` and its offline processor (float32, eval, CPU).

    The vision tower holds exactly ``Qwen3VLTower.random_init(tiny=True, seed=seed)``'s weights.
    """
    return build_random(QWEN3_VL, None, seed)


def build_tiny_qwen25_vl(seed: int | None = 0) -> tuple[Any, Any]:
    """Tiny ``Qwen2_5_VLForConditionalGeneration`` and its offline processor (float32, eval, CPU).

    The vision tower holds exactly ``Qwen25VLTower.random_init(tiny=True, seed=seed)``'s weights.
    """
    return build_random(QWEN25_VL, None, seed)


def meta_parameters(family: QwenFamily, size: str) -> dict[str, int]:
    """Parameter counts of the real ``size`` architecture, built on the meta device (no memory, no download):
    ``{"vision", "language_model", "total"}`` (the language model with its embeddings and ``lm_head``)."""
    model, _ = build_random(family, size, seed=0, device=torch.device("meta"))

    def count(*modules: torch.nn.Module) -> int:
        unique = {id(p): p for module in modules for p in module.parameters()}  # tied embeddings once
        return sum(p.numel() for p in unique.values())

    sizes = {"vision": count(model.model.visual), "language_model": count(model.model.language_model, model.lm_head)}
    sizes["total"] = count(model)
    return sizes


def _torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return None if dtype == "auto" else dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise NeckkitError(f"unknown dtype {dtype!r}; use e.g. float32, float16 or bfloat16")
    return value


def _device(family: QwenFamily, device_map: Any) -> torch.device | None:
    """The one device a tiny or random model is put on (``device_map`` as a device string)."""
    if device_map is None:
        return None
    if device_map == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(f"cuda:{device_map}" if isinstance(device_map, int) else device_map)
    except (RuntimeError, TypeError):
        raise NeckkitError(
            f"tiny and random-init {family.name} take device_map as one device (e.g. cuda:0 or auto), "
            f"not {device_map!r}"
        ) from None


def _folder_model_type(source: WeightsSource) -> str | None:
    """``model_type`` of a local folder's config.json (one error line if it has none)."""
    path = source.folder / "config.json"  # type: ignore[operator]
    try:
        return json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise source.fail(f"config.json does not load ({first_line(error)})") from None


def load_qwen_vl(family: QwenFamily, weights: str, dtype: torch.dtype | None = None,
                 device_map: Any = None) -> tuple[Any, Any]:
    """The family's model and ``AutoProcessor`` from a hub id or ``save_pretrained`` folder; one error line if absent
    or another model. The config and processor are read first: they are small, so problems show before the weights load."""
    from transformers import AutoConfig, AutoProcessor

    source = WeightsSource(weights, family.wording)  # a hub id is left to from_pretrained, which fetches what it reads
    offline = hub_offline()
    try:
        model_type = _folder_model_type(source) if source.folder is not None else AutoConfig.from_pretrained(
            source.pretrained, local_files_only=offline).model_type
    except (OSError, ValueError, KeyError) as error:
        raise source.fail(first_line(error)) from None
    if model_type != family.model_type:
        raise NeckkitError(
            f"{source.where} holds a {model_type!r} model, not {family.family}: {family.name} reads "
            f"{family.model_type!r} checkpoints (e.g. {family.wording.hub_id!r})"
        )
    _, _, model_class, *_ = family.classes()
    try:
        processor = AutoProcessor.from_pretrained(source.pretrained, local_files_only=offline)
        model = model_class.from_pretrained(source.pretrained, dtype=dtype or "auto", device_map=device_map,
                                            local_files_only=offline)
    except (OSError, ValueError, KeyError) as error:
        raise source.fail(first_line(error)) from None
    return model.eval(), processor


def _build(family: QwenFamily, size: str | None, weights: str | None, tiny: bool, random: bool,
           entry_layer: int, dtype: str | None, device_map: Any) -> Any:
    chosen = choose_size(family.family, list(family.hub_ids), size, weights, tiny)
    torch_dtype = _torch_dtype(dtype)
    mllm_class = Qwen3VLMLLM if family is QWEN3_VL else Qwen25VLMLLM
    if random:  # under the host's seeded_init(seed): drawn from its state
        model, processor = build_random(family, None if tiny else chosen, seed=None, dtype=torch_dtype,
                                        device=_device(family, device_map))
        return mllm_class(model, processor, entry_layer, image_size=family.tiny_image_size if tiny else None)
    model, processor = load_qwen_vl(family, weights or family.hub_ids[chosen], torch_dtype, device_map)
    return mllm_class(model, processor, entry_layer)


def build_qwen3_vl(size: str | None = None, weights: str | None = None, tiny: bool = False,
                   random_init: bool = False, entry_layer: int = 2, dtype: str | None = None,
                   device_map: Any = None) -> Qwen3VLMLLM:
    """Factory for ``qwen3-vl``: ``Qwen/Qwen3-VL-<size>-Instruct`` (2b, 4b, 8b; default 2b), a hub id or local
    folder, tiny, or the real architecture with random weights; see the module docstring."""
    random = random_weights(weights, tiny, random_init)
    return _build(QWEN3_VL, size, weights, tiny, random, entry_layer, dtype, device_map)


def build_qwen25_vl(size: str | None = None, weights: str | None = None, tiny: bool = False,
                    random_init: bool = False, entry_layer: int = 2, dtype: str | None = None,
                    device_map: Any = None) -> Qwen25VLMLLM:
    """Factory for ``qwen2.5-vl``: ``Qwen/Qwen2.5-VL-<size>-Instruct`` (3b, 7b; default 3b), a hub id or local
    folder, tiny, or the real architecture with random weights; see the module docstring."""
    random = random_weights(weights, tiny, random_init)
    return _build(QWEN25_VL, size, weights, tiny, random, entry_layer, dtype, device_map)


# -- the MLLMs -----------------------------------------------------------------------------------------


class _QwenMLLM(MLLM):
    """A Qwen-VL model answering about images given as raster tokens entering block ``start`` of its tower.

    ``model``: the family's ``...ForConditionalGeneration``; ``processor``: its processor (tokenizer and chat
    template). :attr:`visual_encoder` wraps ``model.model.visual`` itself and is kept out of this module's
    children, so the state dict names every tensor once. Batches: B images of one size (one grid).
    """

    qwen: ClassVar[QwenFamily]
    feature_layer = -1  # the merger reads the last block's output (Qwen3-VL's DeepStack taps: earlier blocks)

    def __init__(self, model: Any, processor: Any, entry_layer: int = 2, *, image_size: int | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # decoder-only batches: prompts end where generation starts
        self.image_token: str = getattr(processor, "image_token", IMAGE_PAD)
        self.image_token_id: int = model.config.image_token_id
        image_processor = getattr(processor, "image_processor", None)
        default = self.qwen.default_processor
        spec = _processor_spec(image_processor, default) if image_processor is not None else default
        tower = self.qwen.tower_class(model.model.visual, spec, entry_layer, image_size=image_size)
        object.__setattr__(self, "_visual", tower)

    @classmethod
    def tiny(cls, seed: int = 0, entry_layer: int = 2) -> Self:
        """The family's tiny model (:func:`build_tiny_qwen3_vl`, :func:`build_tiny_qwen25_vl`)."""
        return cls(*build_random(cls.qwen, None, seed), entry_layer=entry_layer, image_size=cls.qwen.tiny_image_size)

    @property
    def visual_encoder(self) -> VisualEncoder:
        return self._visual

    @property
    def entry_layer(self) -> int:
        return self._visual.entry_layer

    # -- prompts ----------------------------------------------------------------------------------

    def format_prompt(self, prompt: str) -> str:
        """The model's chat template on one user turn (an image, then ``prompt``), generation prompt added."""
        for token in (self.image_token, "<|vision_start|>", "<|vision_end|>"):
            if token in prompt:
                raise NeckkitError(f"{self.qwen.family} prompts may not contain {token}: the image is placed by the template")
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
        merged (and Qwen3-VL's DeepStack) features, each [B, gh/2*gw/2, hidden]. A DeepStack tap before
        ``start - 1`` raises :class:`NeckkitError` (its block output is never computed)."""
        visual = self._visual
        start = visual.entry_layer if start is None else start
        parameter = visual.visual.patch_embed.proj.weight
        return visual.forward_from(tokens.to(device=parameter.device, dtype=parameter.dtype), start, grid)

    def mm_encoder_outputs(self, features: QwenVisionOutput) -> dict[str, Any]:
        """What the model's ``get_image_features`` returns for the batch (per-image features)."""
        raise NotImplementedError

    def _need_grid(self, grid: Grid | None) -> Grid:
        if grid is None:
            raise NeckkitError(
                f"{self.qwen.name} reads images at native resolution: pass grid=(gh, gw), the images' patch grid "
                "(visual_encoder.token_grid(height, width))"
            )
        return int(grid[0]), int(grid[1])

    def _inputs(self, tokens: Tensor, prompt: str | Sequence[str], grid: Grid | None,
                start: int | None) -> tuple[dict[str, Tensor], dict[str, Any]]:
        grid = self._need_grid(grid)
        width, expected = self._visual.width, grid[0] * grid[1]
        if tokens.ndim != 3 or tokens.shape[1:] != (expected, width):
            raise NeckkitError(
                f"{self.qwen.family} tokens for patch grid {grid} must be [B, {expected}, {width}] "
                f"(gh*gw raster tokens), got {tuple(tokens.shape)}"
            )
        prompts = pair_prompts(prompt, tokens.shape[0])
        features = self.image_features(repeat_batch(tokens, len(prompts)), grid, start)
        return self.prompt_inputs(prompts, grid), self.mm_encoder_outputs(features)

    # -- language model ---------------------------------------------------------------------------

    def logits(self, tokens: Tensor, prompt: str | Sequence[str], *, grid: Grid | None = None,
               start: int | None = None) -> Tensor:
        """Logits [B, L, vocab] of the whole prompt (left-padded); differentiable with respect to ``tokens``."""
        inputs, encoded = self._inputs(tokens, prompt, grid, start)
        return self.model(**inputs, mm_encoder_outputs=encoded).logits

    @torch.no_grad()
    def generate_ids(self, tokens: Tensor, prompt: str | Sequence[str], *, grid: Grid | None = None,
                     start: int | None = None, **options: Any) -> Tensor:
        """The new token ids [B, new] (pad after EOS) of :meth:`generate`."""
        unknown = sorted(set(options) - set(GENERATION_OPTIONS))
        if unknown:
            raise NeckkitError(
                f"{self.qwen.name} does not take generation option(s) {', '.join(unknown)} "
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
    def generate(self, tokens: Tensor, prompt: str | list[str], *, start: int | None = None,
                 grid: Grid | None = None, **options: Any) -> list[str]:
        """Answers about B images of patch grid ``grid`` (required) given as raster tokens [B, gh*gw, width]
        entering block ``start`` (default ``entry_layer``). ``options``: ``max_new_tokens`` (64), ``do_sample``
        (false: greedy), ``temperature``, ``top_p``, ``num_beams``. One answer per image (or per prompt for one image).
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


class Qwen3VLMLLM(_QwenMLLM):
    """Qwen3-VL (``qwen3-vl``), reading ``qwen3-vl-vit``: merger output into the prompt, DeepStack into the
    first language-model layers."""

    qwen = QWEN3_VL
    encoder = QWEN3_VL.encoder

    @property
    def visual(self) -> Qwen3VLTower:
        return self._visual

    @staticmethod
    def mm_encoder_outputs(features: QwenVisionOutput) -> dict[str, Any]:  # type: ignore[override]
        """What ``get_image_features`` returns for the batch: per-image merged and DeepStack features."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        return {"image": BaseModelOutputWithDeepstackFeatures(
            pooler_output=list(features.merged),  # B x [N, hidden]
            deepstack_features=[list(feature) for feature in features.deepstack],  # taps x B x [N, hidden]
        )}


class Qwen25VLMLLM(_QwenMLLM):
    """Qwen2.5-VL (``qwen2.5-vl``), reading ``qwen2.5-vl-vit``: merger output into the prompt."""

    qwen = QWEN25_VL
    encoder = QWEN25_VL.encoder

    @property
    def visual(self) -> Qwen25VLTower:
        return self._visual

    @staticmethod
    def mm_encoder_outputs(features: QwenVisionOutput) -> dict[str, Any]:  # type: ignore[override]
        """What ``get_image_features`` returns for the batch: per-image merger outputs."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return {"image": BaseModelOutputWithPooling(pooler_output=list(features.merged))}  # B x [N, hidden]


def _processor_spec(image_processor: Any, default: ProcessorSpec = QWEN3_VL_PROCESSOR) -> ProcessorSpec:
    """The tower's :class:`ProcessorSpec` from a ``Qwen2VLImageProcessor``'s values (``default``'s where absent)."""
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
    "QWEN25_CHAT_TEMPLATE",
    "QWEN25_VL",
    "QWEN25_VL_TEXT",
    "QWEN3_VL",
    "QWEN3_VL_TEXT",
    "SPECIAL_TOKENS",
    "QwenFamily",
    "Qwen25VLMLLM",
    "Qwen3VLMLLM",
    "build_qwen25_vl",
    "build_qwen3_vl",
    "build_random",
    "build_tiny_qwen25_vl",
    "build_tiny_qwen3_vl",
    "load_qwen_vl",
    "meta_parameters",
    "mllm_config",
    "offline_processor",
    "offline_tokenizer",
    "text_config",
    "tiny_qwen25_text_config",
    "tiny_text_config",
]
