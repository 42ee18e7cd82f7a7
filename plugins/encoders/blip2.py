"""BLIP-2's EVA ViT-g/14 vision encoder (``eva-g-blip2``), built on transformers' ``Blip2VisionModel``.

The tokens a neck produces are consumed by exactly the modules the BLIP-2 MLLM runs: the 39
``Blip2EncoderLayer`` blocks and ``post_layernorm``. There is no pre-norm (``embed`` is the
patch, class and position embedding only) and no projection (``embed_dim == width``), and no
text tower: a neck for this encoder trains with distillation only.

Weights: a hub id (default ``Salesforce/blip2-opt-2.7b``) or a local folder holding either a
full BLIP-2 checkpoint (``Blip2ForConditionalGeneration`` / ``Blip2Model`` / ... saved with
``save_pretrained``: ``config.json`` with ``model_type`` ``"blip-2"``, tensors named
``vision_model.*``) or a bare ``Blip2VisionModel`` folder (tensors named without a prefix).
Only the vision config and the ``vision_model.*`` tensors are read, from just the safetensors
shards that hold them (``neckkit.plugin_api.read_submodule_tensors``); the language model and the
Q-Former are never built.
``tiny=True`` builds the same class with tiny widths; ``random_init=True`` the real ViT-g with
random weights.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import Tensor

from neckkit.loading.shards import INDEX_FILE, SINGLE_FILE  # noqa: F401 (Hugging Face's names; blip2 MLLM reads them)
from neckkit.plugin_api import (
    OPENAI_MEAN,
    OPENAI_STD,
    NeckkitError,
    VisualEncoder,
    WeightsSource,
    Wording,
    random_weights,
    read_submodule_tensors,
    resize_square,
    resize_square_normalize,
    state_dict_mismatches,
)

HUB_ID = "Salesforce/blip2-opt-2.7b"
VISION_PREFIX = "vision_model."  # prefix of the vision tensors in a full BLIP-2 checkpoint
FULL_MODEL_TYPE = "blip-2"
VISION_MODEL_TYPE = "blip_2_vision_model"
# transformers' default initializer_range for BLIP-2 vision is 1e-10, which makes a random model
# nearly constant; random and tiny models use the usual 0.02 so their outputs depend on the input.
RANDOM_INIT_RANGE = 0.02


def blip2_vision_config(tiny: bool) -> Any:
    """The ViT-g/14 of BLIP-2 (transformers' defaults: 1408 wide, 39 blocks), or a tiny one."""
    from transformers import Blip2VisionConfig

    if tiny:
        sizes = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2)
    else:
        sizes = {}  # Blip2VisionConfig's defaults are the ViT-g: 1408 / 6144 / 39 layers / 16 heads
    return Blip2VisionConfig(**sizes, image_size=224, patch_size=14, initializer_range=RANDOM_INIT_RANGE)


# -- locating and reading the weights ----------------------------------------------------------


# How errors about the encoder's weights read (see neckkit.loading.hub.WeightsSource).
WORDING = Wording(
    name="BLIP-2 weights",
    hub_id=HUB_ID,
    folder="holds config.json and the safetensors",
    folder_hint="pass --encoder-weights with a BLIP-2 folder saved by save_pretrained, or use --random-init",
    flag="--encoder-weights",
    fallback="--random-init",
    patterns=("*.json", "*.safetensors"),
)


def read_vision_config(source: WeightsSource) -> tuple[Any, str]:
    """The ``Blip2VisionConfig`` of a full BLIP-2 or bare vision folder, and the tensors' key prefix."""
    from transformers import Blip2VisionConfig

    source.need(["config.json"])
    try:
        config = json.loads((source.folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise NeckkitError(f"cannot read config.json of BLIP-2 weights {source.where}: {error}") from None
    model_type = config.get("model_type")
    if model_type == FULL_MODEL_TYPE:
        return Blip2VisionConfig.from_dict(config.get("vision_config") or {}), VISION_PREFIX
    if model_type == VISION_MODEL_TYPE:
        return Blip2VisionConfig.from_dict(config), ""
    raise NeckkitError(
        f"BLIP-2 weights {source.where} have model_type {model_type!r} in config.json; "
        f"expected {FULL_MODEL_TYPE!r} (a full BLIP-2 checkpoint) or {VISION_MODEL_TYPE!r} (a Blip2VisionModel)"
    )


def check_state_dict(model: torch.nn.Module, state: dict[str, Tensor], where: str) -> None:
    """One error line naming a few missing, unexpected and wrongly shaped tensors, if any."""
    problems = state_dict_mismatches(model.state_dict(), state, reference="model")
    if problems:
        raise NeckkitError(f"BLIP-2 vision weights {where} do not match their config: {'; '.join(problems)}")


def load_blip2_vision(weights: str) -> Any:
    """A ``Blip2VisionModel`` with the vision weights of a hub id or local folder, in float32."""
    from transformers import Blip2VisionModel

    source = WeightsSource(weights, WORDING, fetch=["config.json", INDEX_FILE])
    config, prefix = read_vision_config(source)
    state = read_submodule_tensors(source, prefix)  # only the shards holding the vision tensors
    with torch.device("meta"):  # no random init of ~1B parameters: every tensor is assigned below
        model = Blip2VisionModel(config)
    check_state_dict(model, state, source.where)
    dtypes = {name: tensor.dtype for name, tensor in model.state_dict().items()}
    state = {name: tensor.to(dtypes[name]) for name, tensor in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model


# -- the encoder --------------------------------------------------------------------------------


class Blip2Encoder(VisualEncoder):
    """A transformers ``Blip2VisionModel`` split into embed / blocks / head; no text tower.

    ``model`` may be any ``Blip2VisionModel``, e.g. the ``vision_model`` of a loaded
    ``Blip2ForConditionalGeneration`` (shared, not copied), so that an MLLM plugin and its
    encoder run the same modules.
    """

    mean = OPENAI_MEAN
    std = OPENAI_STD
    has_class_token = True

    def __init__(self, model: Any, entry_layer: int = 2) -> None:
        super().__init__()
        self.model = model.eval()
        config = model.config
        self.width = config.hidden_size
        self.image_size = config.image_size
        self.grid = config.image_size // config.patch_size
        self.num_layers = config.num_hidden_layers
        self.embed_dim = config.hidden_size  # no projection: head returns post-layernormed width
        if not 0 <= entry_layer <= self.num_layers:
            raise NeckkitError(f"entry_layer must be in 0..{self.num_layers}, got {entry_layer}")
        self.entry_layer = entry_layer

    @property
    def vision_model(self) -> Any:
        return self.model

    def preprocess(self, x01: Tensor) -> Tensor:
        """BLIP-2's ``BlipImageProcessor``: resize to ``image_size`` square, bicubic, OpenAI mean / std.

        The whole image is resized to ``image_size x image_size`` (aspect ratio not kept, no
        crop), antialiased, clamped to [0, 1] (bicubic overshoots) and normalised. This equals
        the processor run on float images with ``do_rescale=False`` up to that clamp; on 8-bit
        images the processor resizes before rescaling, so values differ by rounding only.
        """
        return resize_square_normalize(x01, self.image_size, self.mean, self.std)

    def geometric_preprocess(self, x01: Tensor) -> Tensor:
        """The whole image squashed to ``image_size`` square (what ``preprocess`` shows, unnormalised)."""
        return resize_square(x01, self.image_size)

    def view_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        """The whole image (squashed, not cropped)."""
        return 0.0, 0.0, height, width

    def embed(self, pixels: Tensor) -> Tensor:
        """Patch, class and position embedding (BLIP-2 has no pre-norm): -> [B, grid*grid+1, width]."""
        return self.model.embeddings(pixels)

    def blocks(self, tokens: Tensor, start: int, end: int) -> Tensor:
        if not 0 <= start <= end <= self.num_layers:
            raise NeckkitError(f"BLIP-2 ViT-g has blocks 0..{self.num_layers}; got start={start}, end={end}")
        for layer in self.model.encoder.layers[start:end]:
            tokens = layer(tokens)  # Blip2EncoderLayer returns the tensor itself
        return tokens

    def last_hidden_state(self, tokens: Tensor) -> Tensor:
        """What the Q-Former reads: the last block's tokens after ``post_layernorm`` -> [B, T, width].

        Equals ``Blip2VisionModel(pixels).last_hidden_state``; the BLIP-2 MLLM plugin feeds it to
        ``qformer(query_embeds=..., encoder_hidden_states=...)``.
        """
        return self.model.post_layernorm(tokens)

    def head(self, tokens: Tensor) -> Tensor:
        """The library's ``pooler_output``: -> [B, width].

        transformers applies ``post_layernorm`` to all tokens and then once more to the class
        token, so the pooled output is layer-normed twice; this repeats that exactly.
        """
        post_layernorm = self.model.post_layernorm
        return post_layernorm(post_layernorm(tokens[:, 0]))


def build_blip2_vision(weights: str | None = None, tiny: bool = False, random_init: bool = False, entry_layer: int = 2) -> Blip2Encoder:
    """Factory for ``eva-g-blip2``: hub id or local folder (full BLIP-2 or bare vision model), tiny or random."""
    from transformers import Blip2VisionModel

    if random_weights(weights, tiny, random_init):
        model = Blip2VisionModel(blip2_vision_config(tiny=tiny))  # under neckkit's seeded_init(seed)
    else:
        model = load_blip2_vision(weights or HUB_ID)
    return Blip2Encoder(model, entry_layer=entry_layer)

