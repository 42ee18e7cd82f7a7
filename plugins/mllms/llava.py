"""LLaVA-1.5 (``llava-1.5``) through transformers' ``LlavaForConditionalGeneration``.

LLaVA-1.5 reads CLIP ViT-L/14 at 336 px (the registered ``clip-l-336`` encoder): the hidden state
entering its last block (``vision_feature_layer = -2``) without the class token (``"default"``
strategy), projected by a two-layer GELU MLP into the Llama-2 (Vicuna) language model. So a neck
trained for ``clip-l-336`` serves this MLLM: its tokens enter block ``entry_layer`` of LLaVA's own
``vision_tower`` (wrapped, not copied, by :class:`~neckkit.plugins.encoders.clip.HFClipEncoder`),
then go through LLaVA's own feature selection, ``multi_modal_projector`` and language model.

The projected features enter the library through ``mm_encoder_outputs`` (what transformers'
``generate`` itself computes from ``pixel_values`` before the prefill), so the placeholder
merging, beam expansion and caching are the library's own code, not a re-implementation.

Weights: a hub id (default ``llava-hf/llava-1.5-7b-hf``) or a local folder saved with
``save_pretrained`` (model and processor). ``tiny=True`` builds a tiny Llama and the tiny
``clip-l-336`` vision tower (exactly the tiny encoder plugin's weights) with an offline byte-level
tokenizer; ``random_init=True`` the real LLaVA-1.5-7B architecture with random weights (same
offline tokenizer, whose ``<image>`` id replaces 32000).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from neckkit.errors import first_line
from neckkit.plugin_api import (
    MLLM,
    NeckkitError,
    VisualEncoder,
    WeightsSource,
    byte_level_tokenizer,
    hub_offline,
    random_weights,
)
from neckkit.plugins.encoders.clip import HFClipEncoder
from neckkit.plugins.mllms.common import (
    GENERATION_OPTIONS,
    generation_settings,
    pair_prompts,
    repeat_batch,
    saved_model_wording,
)
from neckkit.plugins.mllms.tokenizer import IMAGE_TOKEN

HUB_ID = "llava-hf/llava-1.5-7b-hf"
ENCODER = "clip-l-336"
# LLaVA-1.5's conversation format (what the llava-hf processor's chat template renders).
PROMPT_FORMAT = "USER: <image>\n{prompt} ASSISTANT:"
# The chat template of the llava-hf processors, given to the tiny processor so both render alike.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
DEFAULT_MAX_NEW_TOKENS = 64
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")


# -- configs --------------------------------------------------------------------------------------


def vision_config() -> Any:
    """CLIP ViT-L/14 at 336 px, as in LLaVA-1.5 (OpenAI's widths)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )


def text_config() -> Any:
    """Llama-2-7B (Vicuna-7B v1.5) with LLaVA-1.5's vocabulary of 32064 (``<image>`` = 32000, ``<pad>`` = 32001)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32064,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=32001,
        tie_word_embeddings=False,
    )


def llava_config() -> Any:
    """The real LLaVA-1.5-7B config (``llava-hf/llava-1.5-7b-hf``), written out so it needs no download."""
    from transformers import LlavaConfig

    return LlavaConfig(
        vision_config=vision_config(),
        text_config=text_config(),
        image_token_index=32000,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=576,
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )


def tiny_text_config(tokenizer: Any) -> Any:
    """A tiny Llama over the offline tokenizer's vocabulary.

    ``initializer_range`` 0.1 (not 0.02): at 32 wide, the usual init gives a language model whose
    greedy answers hardly depend on the image or the prompt, which would make tests weak.
    """
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=0.1,
    )


def meta_size(dtype: str | torch.dtype = "bfloat16") -> dict[str, Any]:
    """Parameter counts of the real LLaVA-1.5-7B, built on the meta device (no memory, no download).

    Returns ``{"vision", "projector", "language_model", "total"}`` parameter counts (the language
    model includes its embeddings and ``lm_head``), the ``dtype`` and the weights' ``bytes`` in it.
    """
    from transformers import LlavaForConditionalGeneration

    torch_dtype = _torch_dtype(dtype) or torch.bfloat16
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(llava_config())

    def count(*modules: torch.nn.Module) -> int:
        return sum(parameter.numel() for module in modules for parameter in module.parameters())

    sizes = {
        "vision": count(model.model.vision_tower),
        "projector": count(model.model.multi_modal_projector),
        "language_model": count(model.model.language_model, model.lm_head),
    }
    sizes["total"] = count(model)
    assert sizes["total"] == sizes["vision"] + sizes["projector"] + sizes["language_model"]
    element = torch.empty((), dtype=torch_dtype).element_size()
    return {**sizes, "dtype": str(torch_dtype).removeprefix("torch."), "bytes": sizes["total"] * element}


# -- tokenizer and processor ----------------------------------------------------------------------


def offline_tokenizer() -> Any:
    """A byte-level tokenizer built locally (no download): one token per byte, Llama's special tokens.

    ``<unk> <s> </s> <pad>`` are ids 0-3, the 256 bytes follow, ``<image>`` is an added special
    token; a ``<s>`` is prepended as Llama's tokenizer does. Decoding round-trips any text.
    """
    return byte_level_tokenizer(SPECIAL_TOKENS, bos="<s>", image_token_attribute=True)


def offline_processor(image_size: int = 336, patch_size: int = 14) -> Any:
    """``LlavaProcessor``: the offline tokenizer, a CLIP image processor (``image_size``), the chat template."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    from neckkit.plugin_api import OPENAI_MEAN, OPENAI_STD

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(OPENAI_MEAN),
        image_std=list(OPENAI_STD),
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=offline_tokenizer(),
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


# -- building and loading -------------------------------------------------------------------------


def _torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise NeckkitError(f"unknown dtype {dtype!r}; use e.g. float32, float16 or bfloat16")
    return value


def _device(device_map: Any) -> torch.device:
    """The one device a tiny or random model is put on (``device_map`` as a device string)."""
    if device_map is None:
        return torch.device("cpu")
    if device_map == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device_map, (str, int, torch.device)):
        return torch.device(device_map)
    raise NeckkitError("tiny and random-init LLaVA take device_map as one device (e.g. cuda:0 or auto), not a map")


# How errors about LLaVA weights read (see neckkit.loading.hub.WeightsSource).
WORDING = saved_model_wording("LLaVA weights", HUB_ID)


def load_llava(weights: str, dtype: str | torch.dtype | None = None, device_map: Any = None) -> tuple[Any, Any]:
    """``LlavaForConditionalGeneration`` and ``AutoProcessor`` from a hub id or folder, one error line if absent.

    The processor is read first: it is small, so missing files are reported before minutes of loading.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    source = WeightsSource(weights, WORDING)  # a hub id is left to from_pretrained, which fetches what it reads
    offline = hub_offline()
    try:
        processor = AutoProcessor.from_pretrained(source.pretrained, local_files_only=offline)
        model = LlavaForConditionalGeneration.from_pretrained(
            source.pretrained, dtype=_torch_dtype(dtype) or "auto", device_map=device_map, local_files_only=offline
        )
    except (OSError, ValueError, KeyError) as error:
        raise source.fail(first_line(error)) from None
    return model, processor


def check_vision_tower(config: Any, where: str) -> None:
    """Refuse a LLaVA whose vision tower is not CLIP ViT /14 at 336 px (the ``clip-l-336`` encoder's shape)."""
    vision = config.vision_config
    found = (
        getattr(vision, "model_type", None),
        getattr(vision, "image_size", None),
        getattr(vision, "patch_size", None),
    )
    if found != ("clip_vision_model", 336, 14):
        raise NeckkitError(
            f"LLaVA weights {where} have a vision tower {found} (model_type, image_size, patch_size); "
            f"llava-1.5 reads {ENCODER!r}: ('clip_vision_model', 336, 14)"
        )


def build_tiny_llava() -> tuple[Any, Any]:
    """Tiny LLaVA: the tiny ``clip-l-336`` vision tower (same weights), a tiny Llama.

    Built under neckkit's ``seeded_init(seed)``: the vision tower is drawn first, from the same RNG
    state as the ``clip-l-336`` factory starts from, so its weights equal ``clip-l-336 --tiny``'s.
    """
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from neckkit.plugins.encoders.clip import build_clip

    clip = build_clip(ENCODER, tiny=True)
    vision = copy.deepcopy(clip.model.config.vision_config)
    processor = offline_processor(vision.image_size, vision.patch_size)
    tokenizer = processor.tokenizer
    config = LlavaConfig(
        vision_config=vision,
        text_config=tiny_text_config(tokenizer),
        image_token_index=tokenizer.image_token_id,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(vision.image_size // vision.patch_size) ** 2,
    )
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(clip.model.vision_model.state_dict(), strict=True)
    return model, processor


def build_random_llava(dtype: torch.dtype | None, device: torch.device) -> tuple[Any, Any]:
    """The real LLaVA-1.5-7B architecture with random weights, and the offline processor."""
    from transformers import LlavaForConditionalGeneration

    processor = offline_processor()
    config = llava_config()
    config.image_token_index = processor.tokenizer.image_token_id  # the offline tokenizer's <image>
    config.text_config.pad_token_id = processor.tokenizer.pad_token_id
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype or torch.float32)
    return model, processor


def build_llava(
    weights: str | None = None,
    tiny: bool = False,
    random_init: bool = False,
    entry_layer: int = 2,
    dtype: str | None = None,
    device_map: Any = None,
) -> LlavaMLLM:
    """Factory for ``llava-1.5``: hub id or local folder, or tiny / random-init; see the module docstring."""
    torch_dtype = _torch_dtype(dtype)
    if random_weights(weights, tiny, random_init):
        device = _device(device_map)
        if tiny:
            model, processor = build_tiny_llava()
            model = model.to(device=device, dtype=torch_dtype)
        else:
            model, processor = build_random_llava(torch_dtype, device)
    else:
        weights = weights or HUB_ID
        model, processor = load_llava(weights, dtype=torch_dtype, device_map=device_map)
        check_vision_tower(model.config, repr(weights))
    return LlavaMLLM(model, processor, entry_layer=entry_layer)


# -- the MLLM -------------------------------------------------------------------------------------


class LlavaMLLM(MLLM):
    """LLaVA-1.5 entered at block ``start`` of its CLIP vision tower.

    ``model`` is a ``LlavaForConditionalGeneration``, ``processor`` its ``LlavaProcessor`` (or any
    processor with a ``tokenizer`` and optionally a ``chat_template``). :attr:`visual_encoder`
    wraps ``model.model.vision_tower`` itself; it is kept out of this module's children so the
    state dict names every tensor once.
    """

    encoder = ENCODER

    def __init__(self, model: Any, processor: Any, entry_layer: int = 2) -> None:
        super().__init__()
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # decoder-only batches: prompts end where generation starts
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.unk_token or self.tokenizer.eos_token
        self.image_token = (
            getattr(processor, "image_token", None) or getattr(self.tokenizer, "image_token", None) or IMAGE_TOKEN
        )
        config = model.config
        self.feature_layer = config.vision_feature_layer
        self.select_strategy = config.vision_feature_select_strategy
        if self.select_strategy not in ("default", "full"):
            raise NeckkitError(f"unknown vision_feature_select_strategy {self.select_strategy!r} in the LLaVA config")
        object.__setattr__(self, "_encoder", HFClipEncoder(model.model.vision_tower, entry_layer=entry_layer))

    @property
    def visual_encoder(self) -> VisualEncoder:
        return self._encoder

    @property
    def entry_layer(self) -> int:
        return self._encoder.entry_layer

    # -- prompts ----------------------------------------------------------------------------------

    def format_prompt(self, prompt: str) -> str:
        """LLaVA-1.5's chat format: ``"USER: <image>\\n{prompt} ASSISTANT:"``.

        Rendered by the processor's chat template when it has one, else by that string.
        """
        template = getattr(self.processor, "chat_template", None)
        if not template:
            return PROMPT_FORMAT.format(prompt=prompt)
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    def text_inputs(self, prompts: Sequence[str], num_image_tokens: int) -> dict[str, Tensor]:
        """``input_ids`` and ``attention_mask`` with ``<image>`` expanded to ``num_image_tokens`` placeholders.

        The same text the ``LlavaProcessor`` builds from an image (it expands ``<image>`` by string
        replacement before tokenizing), left-padded, on the device of the input embeddings.
        """
        texts = [
            self.format_prompt(prompt).replace(self.image_token, self.image_token * num_image_tokens)
            for prompt in prompts
        ]
        encoded = self.tokenizer(texts, padding=True, return_tensors="pt")
        device = self.model.get_input_embeddings().weight.device
        return {"input_ids": encoded["input_ids"].to(device), "attention_mask": encoded["attention_mask"].to(device)}

    # -- vision -----------------------------------------------------------------------------------

    def image_features(self, tokens: Tensor, start: int | None = None) -> Tensor:
        """LLaVA's projected image features from tokens entering block ``start``: -> [B, N, text hidden].

        The remaining blocks of the vision tower up to the selected hidden state, LLaVA's feature
        selection (``"default"`` drops the class token) and ``multi_modal_projector``.
        """
        encoder = self._encoder
        start = encoder.entry_layer if start is None else start
        if tokens.ndim != 3 or tokens.shape[-1] != encoder.width:
            raise NeckkitError(f"expected tokens [B, T, {encoder.width}], got shape {tuple(tokens.shape)}")
        parameter = encoder.vision_model.pre_layrnorm.weight
        tokens = tokens.to(device=parameter.device, dtype=parameter.dtype)
        layers = [self.feature_layer] if isinstance(self.feature_layer, int) else list(self.feature_layer)
        indices = [layer % (encoder.num_layers + 1) for layer in layers]
        if start > min(indices):
            raise NeckkitError(
                f"tokens entering block {start} come after LLaVA's feature layer {self.feature_layer} "
                f"(hidden state {min(indices)}); use an entry layer of at most {min(indices)}"
            )
        states = {start: tokens}
        for index in sorted(set(indices)):  # run only the blocks the selected hidden states need
            last = max(states)
            states[index] = encoder.blocks(states[last], last, index)
        selected = [states[index] for index in indices]
        if self.select_strategy == "default":
            selected = [state[:, 1:] for state in selected]
        projector = self.model.model.multi_modal_projector
        return projector(torch.cat(selected, dim=-1) if len(selected) > 1 else selected[0])

    def _mm_encoder_outputs(self, features: Tensor) -> dict[str, Any]:
        """What transformers' ``generate`` computes from ``pixel_values`` before the prefill."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return {"image": BaseModelOutputWithPooling(pooler_output=list(features))}

    # -- batching ---------------------------------------------------------------------------------

    def _inputs(
        self, tokens: Tensor, prompt: str | Sequence[str], start: int | None
    ) -> tuple[dict[str, Tensor], Tensor]:
        features = self.image_features(tokens, start)
        prompts = pair_prompts(prompt, features.shape[0])
        return self.text_inputs(prompts, features.shape[1]), repeat_batch(features, len(prompts))

    # -- language model ---------------------------------------------------------------------------

    def logits(self, tokens: Tensor, prompt: str | Sequence[str], start: int | None = None) -> Tensor:
        """Logits [B, L, vocab] of the whole prompt (left-padded; ``[:, -1]`` is the next token's).

        Differentiable with respect to ``tokens`` (wrap in ``torch.no_grad()`` for evaluation).
        """
        inputs, features = self._inputs(tokens, prompt, start)
        output = self.model(**inputs, mm_encoder_outputs=self._mm_encoder_outputs(features))
        return output.logits

    @torch.no_grad()
    def generate(
        self, tokens: Tensor, prompt: str | list[str], *, start: int | None = None, **options: Any
    ) -> list[str]:
        """Answers about images given as tokens entering block ``start`` (default ``entry_layer``).

        ``options``: ``max_new_tokens`` (default 64), ``do_sample`` (default false: greedy,
        deterministic), ``temperature``, ``top_p``, ``num_beams``. One answer per image or prompt.
        """
        inputs, features = self._inputs(tokens, prompt, start)
        return self._generate(inputs, {"mm_encoder_outputs": self._mm_encoder_outputs(features)}, options)

    @torch.no_grad()
    def generate_from_pixels(self, pixels: Tensor, prompt: str | list[str], **options: Any) -> list[str]:
        """The uncompressed baseline: preprocessed pixels [B, 3, 336, 336] through the library's own path."""
        encoder = self._encoder
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, encoder.image_size, encoder.image_size):
            raise NeckkitError(
                f"expected pixels [B, 3, {encoder.image_size}, {encoder.image_size}], got {tuple(pixels.shape)}"
            )
        prompts = pair_prompts(prompt, pixels.shape[0])
        parameter = encoder.vision_model.pre_layrnorm.weight
        pixels = repeat_batch(pixels.to(device=parameter.device, dtype=parameter.dtype), len(prompts))
        num_image_tokens = encoder.grid**2 + (0 if self.select_strategy == "default" else 1)
        return self._generate(self.text_inputs(prompts, num_image_tokens), {"pixel_values": pixels}, options)

    def _generate(self, inputs: dict[str, Tensor], vision: dict[str, Any], options: dict[str, Any]) -> list[str]:
        unknown = sorted(set(options) - set(GENERATION_OPTIONS))
        if unknown:
            raise NeckkitError(
                f"llava-1.5 does not take generation option(s) {', '.join(unknown)} (takes: {', '.join(GENERATION_OPTIONS)})"
            )
        settings = generation_settings(options, DEFAULT_MAX_NEW_TOKENS)
        if not settings["do_sample"]:  # greedy and beam search ignore them (and transformers warns)
            settings.update(temperature=None, top_p=None, top_k=None)
        settings["pad_token_id"] = self.tokenizer.pad_token_id
        output = self.model.generate(**inputs, **vision, **settings)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
