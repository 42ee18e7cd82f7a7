"""A toy vision transformer split into embed / blocks / head, like CLIP's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neckkit.plugin_api import NeckkitError, VisualEncoder


class ToyViT(VisualEncoder):
    """Patch embedding, class token, positions, pre-norm blocks, class-token head."""

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 8,
        width: int = 32,
        depth: int = 4,
        heads: int = 4,
        embed_dim: int = 16,
        tiny: bool = False,
    ) -> None:
        super().__init__()
        if tiny:
            width, depth, heads, embed_dim = 16, 3, 2, 8
        self.image_size = image_size
        self.grid = image_size // patch_size
        self.width = width
        self.num_layers = depth
        self.embed_dim = embed_dim
        self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * 0.02)
        self.positional_embedding = nn.Parameter(torch.randn(self.grid**2 + 1, width) * 0.02)
        self.ln_pre = nn.LayerNorm(width)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(depth)
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def preprocess(self, x01: Tensor) -> Tensor:
        pixels = F.interpolate(x01, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return (pixels - 0.5) / 0.5

    def geometric_preprocess(self, x01: Tensor) -> Tensor:
        """What ``preprocess`` shows: the whole image squashed to the input size, still in [0, 1]."""
        return F.interpolate(x01, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)

    def embed(self, pixels: Tensor) -> Tensor:
        patches = self.conv1(pixels).flatten(2).transpose(1, 2)  # [B, grid*grid, width]
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)  # [B, 1, width]
        tokens = torch.cat([cls, patches], dim=1) + self.positional_embedding  # [B, grid*grid+1, width]
        return self.ln_pre(tokens)

    def blocks(self, tokens: Tensor, start: int, end: int) -> Tensor:
        if not 0 <= start <= end <= self.num_layers:
            raise NeckkitError(f"toy-vit has blocks 0..{self.num_layers}; got start={start}, end={end}")
        for layer in self.layers[start:end]:
            tokens = layer(tokens)
        return tokens

    def head(self, tokens: Tensor) -> Tensor:
        return self.proj(self.ln_post(tokens[:, 0]))  # [B, embed_dim]
