"""OpenAI CLIP ViT-L/14 at 224 px (``clip-l``, the paper's encoder) and 336 px (``clip-l-336``, LLaVA-1.5's).

Built on transformers' ``CLIPModel`` so that the tokens a neck produces are consumed by exactly
the modules an MLLM plugin runs. Real weights: a hub id or a local folder; ``tiny=True`` builds the
same classes with tiny widths; ``random_init=True`` the real-size architecture with random weights.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from neckkit.loading.hub import hub_location
from neckkit.plugin_api import (
    OPENAI_MEAN,
    OPENAI_STD,
    NeckkitError,
    VisualEncoder,
    hub_offline,
    random_weights,
    resize_center_crop_normalize,
)


@dataclass(frozen=True)
class ClipVariant:
    """One published CLIP checkpoint: its hub id and input size (ViT-L/14 widths)."""

    hub_id: str
    image_size: int


VISION_MODEL_TYPE = "clip_vision_model"  # a bare CLIPVisionModel (e.g. LLaVA's vision tower)

VARIANTS = {
    "clip-l": ClipVariant("openai/clip-vit-large-patch14", 224),
    "clip-l-336": ClipVariant("openai/clip-vit-large-patch14-336", 336),
}


def clip_config(image_size: int, tiny: bool) -> Any:
    """ViT-L/14 text and vision towers (OpenAI's widths), or tiny ones of the same shape family."""
    from transformers import CLIPConfig

    if tiny:
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2)
        projection_dim = 16
    else:
        text = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
        projection_dim = 768
    return CLIPConfig(
        text_config=dict(text, vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=0),
        vision_config=dict(vision, image_size=image_size, patch_size=14, hidden_act="quick_gelu"),
        projection_dim=projection_dim,
    )


def load_clip_model(weights: str, image_size: int) -> Any:
    """``CLIPModel.from_pretrained`` with one clear line when the weights cannot be found."""
    from transformers import CLIPModel

    try:
        model = CLIPModel.from_pretrained(weights, local_files_only=hub_offline())
    except (OSError, ValueError) as error:
        where = "the local folder" if os.path.isdir(weights) else hub_location()
        raise NeckkitError(
            f"cannot load CLIP weights {weights!r} from {where}: {str(error).splitlines()[0]}. "
            f"Download them (`hf download {weights}`), pass --encoder-weights /path/to/folder, or use --random-init"
        ) from None
    if model.config.vision_config.image_size != image_size:
        raise NeckkitError(
            f"CLIP weights {weights!r} are for {model.config.vision_config.image_size} px, this encoder expects {image_size} px"
        )
    return model


class HFClipEncoder(VisualEncoder):
    """A transformers ``CLIPModel`` split into embed / blocks / head, with its text tower.

    ``model`` may also be a bare ``CLIPVisionModel`` (config ``model_type`` ``"clip_vision_model"``),
    e.g. LLaVA's ``vision_tower`` (shared, not copied), so that an MLLM plugin and its encoder run
    the same modules. Such a model has no text tower and no projection: :meth:`head` returns the
    library's ``pooler_output`` (``post_layernorm`` of the class token) and ``embed_dim == width``.

    ``double_ln_post``: the paper's head. The paper's released necks were trained with a CLIP
    forward that applies the final LayerNorm (``post_layernorm``) twice and projects every token;
    with this option :meth:`head` returns ``visual_projection(post_layernorm(post_layernorm(cls)))``.
    Projecting every token and then taking the class token gives the same numbers (LayerNorm and
    the projection act on each token alone), so only the class token is computed. LayerNorm is not
    idempotent with affine weights: this differs from the stock head, which is the default.
    """

    mean = OPENAI_MEAN
    std = OPENAI_STD

    def __init__(self, model: Any, entry_layer: int = 2, double_ln_post: bool = False) -> None:
        super().__init__()
        self.model = model.eval()
        self.double_ln_post = double_ln_post
        self.vision_only = getattr(model.config, "model_type", None) == VISION_MODEL_TYPE
        vision = model.config if self.vision_only else model.config.vision_config
        self.width = vision.hidden_size
        self.image_size = vision.image_size
        self.grid = vision.image_size // vision.patch_size
        self.num_layers = vision.num_hidden_layers
        self.embed_dim = vision.hidden_size if self.vision_only else model.config.projection_dim
        if not 0 <= entry_layer <= self.num_layers:
            raise NeckkitError(f"entry_layer must be in 0..{self.num_layers}, got {entry_layer}")
        self.entry_layer = entry_layer

    @property
    def vision_model(self) -> Any:
        return self.model if self.vision_only else self.model.vision_model

    def preprocess(self, x01: Tensor) -> Tensor:
        return resize_center_crop_normalize(x01, self.image_size, self.mean, self.std)

    def embed(self, pixels: Tensor) -> Tensor:
        tokens = self.vision_model.embeddings(pixels)  # [B, grid*grid+1, width]
        return self.vision_model.pre_layrnorm(tokens)

    def blocks(self, tokens: Tensor, start: int, end: int) -> Tensor:
        if not 0 <= start <= end <= self.num_layers:
            raise NeckkitError(f"CLIP has blocks 0..{self.num_layers}; got start={start}, end={end}")
        for layer in self.vision_model.encoder.layers[start:end]:
            tokens = layer(tokens, attention_mask=None)
        return tokens

    def head(self, tokens: Tensor) -> Tensor:
        pooled = self.vision_model.post_layernorm(tokens[:, 0])  # [B, width]
        if self.double_ln_post:  # the paper's quirk, see the class docstring
            pooled = self.vision_model.post_layernorm(pooled)
        if self.vision_only:  # a bare CLIPVisionModel: its pooler_output, no projection
            return pooled
        return self.model.visual_projection(pooled)  # [B, embed_dim]

    def text_tower(self) -> nn.Module | None:
        if self.vision_only:
            return None
        return nn.ModuleList([self.model.text_model, self.model.text_projection])

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> Tensor:
        """Projected text embeddings [N, embed_dim] (OpenAI BPE, context 77, from open_clip)."""
        if self.vision_only:
            raise self._no_text_tower()
        input_ids = openai_tokenizer()(texts)  # [N, 77], zero padding after the end token
        # The text transformer is causal and pools at the end token, so padding after the
        # longest text cannot change any embedding: drop it (4x faster for ImageNet prompts).
        length = int((input_ids != 0).sum(dim=1).max())
        input_ids = input_ids[:, :length].to(self.model.text_projection.weight.device)
        return self.model.get_text_features(input_ids=input_ids).pooler_output


@functools.cache
def openai_tokenizer() -> Any:
    """OpenAI CLIP's BPE tokenizer, bundled with open_clip (no download)."""
    from open_clip import get_tokenizer

    return get_tokenizer("ViT-L-14")


def build_clip(
    variant: str,
    weights: str | None = None,
    tiny: bool = False,
    random_init: bool = False,
    entry_layer: int = 2,
    double_ln_post: bool = False,
) -> HFClipEncoder:
    """Factory for ``clip-l`` and ``clip-l-336``; ``double_ln_post``: the paper's head (see :class:`HFClipEncoder`)."""
    from transformers import CLIPModel

    spec = VARIANTS[variant]
    if random_weights(weights, tiny, random_init):
        model = CLIPModel(clip_config(spec.image_size, tiny=tiny))  # under neckkit's seeded_init(seed)
    else:
        model = load_clip_model(weights or spec.hub_id, spec.image_size)
    return HFClipEncoder(model, entry_layer=entry_layer, double_ln_post=double_ln_post)

