"""Rate conditioning: one neck for every rate level of a variable-rate codec.

The neck is told the level each latent was coded at (a float per batch item, so a continuous codec's
level 2.5 works) through a level embedding and a per-block modulation:

- :class:`LevelEmbedding`: sinusoidal features of the level, then a two-layer MLP (DiT's timestep
  embedder, Peebles & Xie, arXiv 2212.09748): ``[B] -> [B, width]``;
- ``adaln`` (:class:`AdaLNModulation`, adaLN-Zero): per block, a shift and a scale for each of its two
  LayerNorms and a gate for each sub-layer (attention, MLP), ``6 x width`` numbers per item;
- ``film`` (:class:`FiLMModulation`): per block, a scale and a shift of the block's output, ``2 x width``;
- ``none``: no conditioning; the neck ignores the level.

Every modulation is zero at initialisation and enters as ``x * (1 + scale) + shift`` and
``sublayer * (1 + gate)``, so a freshly conditioned neck computes exactly (bitwise) what the
unconditioned neck with the same weights computes, and can start from an unconditioned checkpoint.
The blocks stay open_clip's ``ResidualAttentionBlock``; :func:`adaln_block` runs one around its
submodules (``ln_1``, ``attn``, ``ls_1``, ``ln_2``, ``mlp``, ``ls_2``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Conditioning = Literal["none", "adaln", "film"]
CONDITIONINGS: tuple[str, ...] = ("none", "adaln", "film")
MAX_PERIOD = 100.0  # slowest sinusoid: period 2*pi*100 levels; the fastest turns 1 radian per level


def level_features(level: Tensor, features: int) -> Tensor:
    """Sinusoidal features of a (fractional) level: [B] -> [B, features], cosines then sines."""
    half = features // 2
    frequencies = torch.exp(
        -math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32, device=level.device) / half
    )  # [half], 1 .. 1/MAX_PERIOD radians per level
    angles = level.float()[:, None] * frequencies[None]  # [B, half]
    out = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return F.pad(out, (0, features - 2 * half))  # an odd ``features`` gets one zero column


class LevelEmbedding(nn.Module):
    """Rate level -> conditioning vector: sinusoidal features, Linear, SiLU, Linear ([B] -> [B, width])."""

    def __init__(self, width: int, features: int) -> None:
        super().__init__()
        self.features = features
        self.linear_1 = nn.Linear(features, width)
        self.linear_2 = nn.Linear(width, width)

    def forward(self, level: Tensor) -> Tensor:
        hidden = level_features(level, self.features).to(self.linear_1.weight.dtype)  # [B, features]
        return self.linear_2(F.silu(self.linear_1(hidden)))  # [B, width]


class _ZeroModulation(nn.Module):
    """SiLU then a zero-initialised Linear(width -> chunks * width): [B, width] -> chunks x [B, 1, width]."""

    chunks: int

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, self.chunks * width)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, embedding: Tensor) -> tuple[Tensor, ...]:
        out = self.linear(F.silu(embedding))  # [B, chunks * width]
        return out[:, None].chunk(self.chunks, dim=-1)  # chunks x [B, 1, width]


class AdaLNModulation(_ZeroModulation):
    """adaLN-Zero: (shift_1, scale_1, gate_1, shift_2, scale_2, gate_2) of one block."""

    chunks = 6


class FiLMModulation(_ZeroModulation):
    """FiLM: (scale, shift) of one block's output."""

    chunks = 2


MODULATIONS: dict[str, type[_ZeroModulation]] = {"adaln": AdaLNModulation, "film": FiLMModulation}


def adaln_block(block: nn.Module, x: Tensor, modulation: tuple[Tensor, ...]) -> Tensor:
    """An open_clip ``ResidualAttentionBlock`` with adaLN-Zero modulation: [B, T, width] -> [B, T, width]."""
    shift_1, scale_1, gate_1, shift_2, scale_2, gate_2 = modulation  # each [B, 1, width]
    attended = block.attention(q_x=block.ln_1(x) * (1 + scale_1) + shift_1)
    x = x + block.ls_1(attended * (1 + gate_1))
    return x + block.ls_2(block.mlp(block.ln_2(x) * (1 + scale_2) + shift_2) * (1 + gate_2))


def film_block(block: nn.Module, x: Tensor, modulation: tuple[Tensor, ...]) -> Tensor:
    """A block whose output is scaled and shifted: [B, T, width] -> [B, T, width]."""
    scale, shift = modulation  # each [B, 1, width]
    return block(x) * (1 + scale) + shift


BLOCKS = {"adaln": adaln_block, "film": film_block}



def is_conditioning_key(key: str) -> bool:
    """Whether a neck state-dict key belongs to the rate conditioning (absent from an unconditioned neck)."""
    return key.startswith(("level_embedding.", "transformer.modulation."))
