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

Native resolution (``positions="interpolated"``, built by :meth:`TransformNeck.for_pair` for an encoder
with ``native_resolution``: Qwen3-VL, Qwen2.5-VL): no class token, and the position table is a
``grid x grid`` base table bilinearly resampled to each image's token grid ``(gh, gw)``, as Qwen3-VL's
own tower does with its learned positions; ``forward(y_hat, grid=(gh, gw))`` gives ``[B, gh*gw, width]``
in raster order. A latent whose grid already equals the token grid (Qwen3-VL: 16-px patches on the
1/16 latent of ELIC and TIC) is read as it is, one latent position per token; another (Qwen2.5-VL's
14-px patches) is resampled bicubically to the token grid first.
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
POSITIONS = ("fixed", "interpolated")  # one square table / a base table resampled to each token grid


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
        positions: str = "fixed",
    ) -> None:
        super().__init__()
        config = config or NeckConfig()
        if positions not in POSITIONS:
            raise NeckkitError(f"neck positions must be one of {', '.join(POSITIONS)}, got {positions!r}")
        if positions == "interpolated" and class_token:
            raise NeckkitError("a neck with interpolated positions (native resolution) has no class token")
        self.positions = positions
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
        positions = "interpolated" if getattr(encoder, "native_resolution", False) else "fixed"
        return cls(codec.latent_channels, encoder.width, encoder.grid, encoder.has_class_token, config, positions)

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

    def position_table(self, grid: tuple[int, int]) -> Tensor:
        """Positions of a ``(gh, gw)`` token grid [gh*gw, width], raster order: the base table itself at
        ``(grid, grid)``, else resampled bilinearly (interpolated positions only)."""
        if tuple(grid) == (self.grid, self.grid):
            return self.positional_embedding
        if self.positions != "interpolated":
            raise NeckkitError(f"this neck has positions for a {self.grid}x{self.grid} token grid only, not {tuple(grid)}")
        table = self.positional_embedding.T.reshape(1, self.width, self.grid, self.grid)  # [1, width, grid, grid]
        table = F.interpolate(table, size=tuple(grid), mode="bilinear", align_corners=False)  # [1, width, gh, gw]
        return table.flatten(2)[0].T  # [gh*gw, width]

    def forward(self, y_hat: Tensor, level: Tensor | float | None = None, grid: tuple[int, int] | None = None) -> Tensor:
        """[B, latent_channels, h, w] and the rate level of each latent ([B] or one number; ignored by an
        unconditioned neck) -> [B, grid * grid (+ 1), width]; with interpolated positions, ``grid`` is the
        token grid ``(gh, gw)`` (default: the latent's own) -> [B, gh * gw, width]."""
        if y_hat.ndim != 4 or y_hat.shape[1] != self.latent_channels:
            raise NeckkitError(
                f"the neck expects a latent [B, {self.latent_channels}, h, w], got shape {list(y_hat.shape)}"
            )
        level = self._level(level, y_hat.shape[0], y_hat.device)
        if self.positions == "interpolated":
            target = (int(grid[0]), int(grid[1])) if grid is not None else tuple(y_hat.shape[-2:])
        else:
            target = (self.grid, self.grid)
            if grid is not None and tuple(grid) != target:
                raise NeckkitError(f"this neck gives a {self.grid}x{self.grid} token grid, not {tuple(grid)}")
        if min(target) < 1:
            raise NeckkitError(f"a token grid needs at least one token per side, got {target}")
        if tuple(y_hat.shape[-2:]) != target:
            y_hat = F.interpolate(y_hat, size=target, mode="bicubic", align_corners=False)
        tokens = self.trans_latent_dim(y_hat.flatten(2).transpose(1, 2))  # [B, gh*gw, width]
        if self.class_embedding is not None:
            cls = self.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
            tokens = torch.cat([cls, tokens], dim=1)  # [B, grid*grid+1, width]
        tokens = self.ln_pre(tokens + self.position_table(target).to(tokens.dtype))
        embedding = self.level_embedding(level) if level is not None else None  # [B, width]
        return self.transformer(tokens, embedding)
