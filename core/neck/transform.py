"""The transform-neck: maps a codec's quantised latent to a visual encoder's tokens at ``entry_layer``.

Shape of the paper's neck (ELIC + CLIP ViT-L/14, 13,191,168 parameters)::

    y_hat [B, 320, 16, 16] -> tokens [B, 256, 320] -> Linear -> [B, 256, 1024]
    -> prepend class token, add the neck's own positions [257, 1024] -> LayerNorm
    -> N CLIP-shaped transformer blocks (paper: 1; 16 heads, MLP x4, QuickGELU) -> [B, 257, 1024]

The blocks are open_clip's ``ResidualAttentionBlock`` and the parameter names are those of the
paper's released necks (``trans_latent_dim``, ``class_embedding``, ``positional_embedding``,
``ln_pre``, ``transformer.resblocks.<i>``), so those files load as they are.

Rate conditioning (:mod:`neckkit.neck.conditioning`): with ``config.conditioning`` ``adaln`` or ``film``
the neck also takes the rate level of each latent, ``forward(y_hat, level)``; its extra parameters
(``level_embedding.*``, ``transformer.modulation.<i>.*``) start at zero modulation, so it starts out
computing exactly what the unconditioned neck with the same weights computes.

Other input sizes: when the latent grid differs from the encoder's token grid (another image size,
a non-square image, a 336-px encoder), the latent is resampled (bicubic) to the encoder's grid
before the linear layer, so the encoder and any MLLM reading it see the token count they expect.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neckkit.config.paper import NeckConfig
from neckkit.errors import NeckkitError
from neckkit.neck.conditioning import BLOCKS, MODULATIONS, LevelEmbedding

if TYPE_CHECKING:
    from neckkit.interfaces import Codec, VisualEncoder

ACTIVATIONS = ("quick_gelu", "gelu")


_fastpath_lock = threading.Lock()
_fastpath_users = 0
_fastpath_before = True


@contextmanager
def cpu_fused_attention() -> Iterator[None]:
    """Run ``nn.MultiheadAttention`` through ``scaled_dot_product_attention`` while inside (same math).

    At inference the module's fast path (``torch._native_multi_head_attention``) computes attention
    on the CPU with plain ``bmm``: at batch 16 of 577 tokens that is 4x slower than the fused flash
    kernel ``F.multi_head_attention_forward`` calls, and it grows faster than the batch. Torch's
    switch is process-wide, so nested and concurrent users share it and the last one out restores it.
    """
    global _fastpath_users, _fastpath_before
    with _fastpath_lock:
        if _fastpath_users == 0:
            _fastpath_before = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
        _fastpath_users += 1
    try:
        yield
    finally:
        with _fastpath_lock:
            _fastpath_users -= 1
            if _fastpath_users == 0:
                torch.backends.mha.set_fastpath_enabled(_fastpath_before)


class NeckTransformer(nn.Module):
    """The neck's block stack (named ``transformer.resblocks`` as in CLIP and the released necks).

    With ``conditioning`` ``adaln`` or ``film`` it also holds one zero-initialised modulation per block
    (``transformer.modulation.<i>``) and takes the level embedding [B, width] with the tokens.
    """

    def __init__(
        self, width: int, num_blocks: int, num_heads: int, mlp_ratio: float, activation: str, conditioning: str = "none"
    ) -> None:
        super().__init__()
        from open_clip.transformer import LayerNorm, QuickGELU, ResidualAttentionBlock

        act_layer = QuickGELU if activation == "quick_gelu" else nn.GELU
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, num_heads, mlp_ratio, act_layer=act_layer, norm_layer=LayerNorm)
            for _ in range(num_blocks)
        )
        self.conditioning = conditioning
        if conditioning != "none":  # created after the blocks: their initial weights do not depend on it
            self.modulation = nn.ModuleList(MODULATIONS[conditioning](width) for _ in range(num_blocks))

    def forward(self, tokens: Tensor, level_embedding: Tensor | None = None) -> Tensor:
        if tokens.device.type != "cpu" or torch.is_grad_enabled():  # the fast path runs only without grad
            return self._blocks(tokens, level_embedding)
        with cpu_fused_attention():
            return self._blocks(tokens, level_embedding)

    def _blocks(self, tokens: Tensor, level_embedding: Tensor | None = None) -> Tensor:
        if self.conditioning == "none" or level_embedding is None:
            for block in self.resblocks:
                tokens = block(tokens)  # batch-first: [B, T, width]
            return tokens
        conditioned_block = BLOCKS[self.conditioning]
        for block, modulation in zip(self.resblocks, self.modulation, strict=True):
            tokens = conditioned_block(block, tokens, modulation(level_embedding))  # [B, T, width]
        return tokens


class TransformNeck(nn.Module):
    """Codec latent -> encoder tokens entering block ``entry_layer``."""

    def __init__(
        self,
        latent_channels: int,
        width: int,
        grid: int,
        class_token: bool = True,
        config: NeckConfig | None = None,
    ) -> None:
        super().__init__()
        config = config or NeckConfig()
        if config.activation not in ACTIVATIONS:
            raise NeckkitError(f"neck activation must be one of {', '.join(ACTIVATIONS)}, got {config.activation!r}")
        if width % config.num_heads:
            raise NeckkitError(f"neck width {width} is not divisible by num_heads={config.num_heads}")
        self.latent_channels, self.width, self.grid = latent_channels, width, grid
        self.config = config
        from open_clip.transformer import LayerNorm  # computes in fp32 under half precision

        scale = width**-0.5
        self.trans_latent_dim = nn.Linear(latent_channels, width)
        self.class_embedding = nn.Parameter(scale * torch.randn(width)) if class_token else None
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + int(class_token), width))
        self.ln_pre = LayerNorm(width)
        self.transformer = NeckTransformer(
            width, config.num_blocks, config.num_heads, config.mlp_ratio, config.activation, config.conditioning
        )
        if config.conditioning != "none":
            self.level_embedding = LevelEmbedding(width, config.level_features)

    @classmethod
    def for_pair(cls, codec: Codec, encoder: VisualEncoder, config: NeckConfig | None = None) -> TransformNeck:
        """The neck between ``codec``'s latent and ``encoder``'s tokens."""
        return cls(codec.latent_channels, encoder.width, encoder.grid, encoder.has_class_token, config)

    @property
    def num_tokens(self) -> int:
        return self.positional_embedding.shape[0]

    @property
    def conditioning(self) -> str:
        """``none``, ``adaln`` or ``film``: how the blocks see the rate level."""
        return self.config.conditioning

    @property
    def levels(self) -> tuple[float, ...] | None:
        """The codec's rate levels the neck was trained on (None: a fixed-rate codec's neck)."""
        return self.config.levels

    def check_level(self, level: float) -> None:
        """Refuse, in one line, a level a rate-conditioned neck was not trained around (outside its levels' range)."""
        levels = self.levels
        if self.conditioning == "none" or not levels or min(levels) <= level <= max(levels):
            return
        raise NeckkitError(
            f"this neck is conditioned on rate levels {min(levels):g}..{max(levels):g} ({self.conditioning}); "
            f"level {level:g} is outside them"
        )

    def _level(self, level: Tensor | float | None, batch: int, device: torch.device) -> Tensor | None:
        """The level of each item as a float tensor [B] (None for an unconditioned neck, which ignores it)."""
        if self.conditioning == "none":
            return None
        if level is None:
            raise NeckkitError(
                f"this neck is rate-conditioned ({self.conditioning}): pass the rate level of each latent, "
                "neck(y_hat, level=[B])"
            )
        level = torch.as_tensor(level, dtype=torch.float32, device=device)
        if level.ndim == 0:
            level = level.expand(batch)
        if level.shape != (batch,):
            raise NeckkitError(f"the neck expects one rate level per latent, [{batch}], got shape {list(level.shape)}")
        return level

    def forward(self, y_hat: Tensor, level: Tensor | float | None = None) -> Tensor:
        """[B, latent_channels, h, w] and the rate level of each latent ([B] or one number; ignored by an
        unconditioned neck) -> [B, grid * grid (+ 1), width]."""
        if y_hat.ndim != 4 or y_hat.shape[1] != self.latent_channels:
            raise NeckkitError(
                f"the neck expects a latent [B, {self.latent_channels}, h, w], got shape {list(y_hat.shape)}"
            )
        level = self._level(level, y_hat.shape[0], y_hat.device)
        if tuple(y_hat.shape[-2:]) != (self.grid, self.grid):
            y_hat = F.interpolate(y_hat, size=(self.grid, self.grid), mode="bicubic", align_corners=False)
        tokens = self.trans_latent_dim(y_hat.flatten(2).transpose(1, 2))  # [B, grid*grid, width]
        if self.class_embedding is not None:
            cls = self.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
            tokens = torch.cat([cls, tokens], dim=1)  # [B, grid*grid+1, width]
        tokens = self.ln_pre(tokens + self.positional_embedding.to(tokens.dtype))
        embedding = self.level_embedding(level) if level is not None else None  # [B, width]
        return self.transformer(tokens, embedding)
