"""Qwen3-VL and Qwen2.5-VL vision towers at native resolution (``qwen3-vl-vit``, ``qwen2.5-vl-vit``).

:class:`Qwen3VLTower` and :class:`Qwen25VLTower` are native-resolution visual encoders
(:class:`~neckkit.interfaces.VisualEncoder`, ``native_resolution = True``): they hold transformers'
own vision model (``Qwen3VLVisionModel``, ``Qwen2_5_VisionTransformerPretrainedModel``) and run its
modules in pieces, bitwise equal (float32, CPU, eval) to ``model.visual(pixel_values, grid_thw=...)``.
The factories :func:`build_qwen3_vl_vision` and :func:`build_qwen25_vl_vision` are registered in
``neckkit.plugins.encoders``.

The encoder interface, as these towers fill it:

- ``preprocess`` = :meth:`~_QwenTower.pixels` (the processor's resize to ``input_size(h, w)`` and
  normalisation); ``token_grid(h, w)`` = ``(gh, gw)``; ``view_box`` = the whole image (nothing is cropped);
  ``embed`` / ``blocks`` / ``head`` / ``encode_from`` take ``grid=(gh, gw)``, tokens ``[B, gh*gw, width]``
  in raster order.
- ``encode_from`` (the distillation target) returns what the language model reads, per LLM token:
  Qwen3-VL the merger output and the DeepStack features concatenated, ``[B, gh/2*gw/2, out_hidden *
  (1 + taps)]``; Qwen2.5-VL the merger output. ``embed_dim`` is that last size; there is no text tower.
- ``grid``: the side of the neck's base position grid. Qwen3-VL: the tower's own learned position
  table (``num_grid_per_side``: 48 real, 8 tiny). Qwen2.5-VL has no position table: the grid of its
  default image, ``image_size / 14`` (36 real, 8 tiny).
- ``image_size``: a default square side (multiple of ``patch * merge``), for warm-up requests and
  sizes that must be chosen without an image: Qwen3-VL 512 (a 32x32 token grid), Qwen2.5-VL 504
  (36x36); tiny 64 and 112.

Facts checked against transformers 5.25.0:

- Input. The image processor (``Qwen2VLImageProcessor`` for both) resizes each image to
  ``smart_resize(h, w, factor=patch*merge, min_pixels, max_pixels)`` (bicubic, antialiased, no clamp),
  normalises, and hands the model ``pixel_values [sum T, 3*2*p*p]``: every patch repeated over the
  temporal patch of 2, flattened channel-major, patches listed in **merge-unit order** (the 2x2
  patches of one LLM token consecutive, units row-major), with ``image_grid_thw = [1, gh, gw]``.
  Qwen3-VL: patch 16, mean = std = 0.5, 65536..16777216 pixels; Qwen2.5-VL: patch 14, OpenAI CLIP
  mean / std, 3136..12845056 pixels (the hub ``preprocessor_config.json`` values; transformers'
  class default ``longest_edge`` is 1003520). :meth:`pixels` is an ordinary image tensor; on float
  input it equals the processor's output bitwise once laid out by :meth:`library_inputs`.
- Token order. Here tokens are ``[B, gh*gw, width]`` in **raster order** (row-major over the patch
  grid). transformers runs the blocks on merge-unit order (Qwen3-VL) or on merge units regrouped by
  attention window (Qwen2.5-VL, ``window_index``). The permutation happens only at the edges of
  :meth:`embed`, :meth:`blocks`, :meth:`head` (and DeepStack): each gathers raster tokens into the
  library's order, runs the library's modules on exactly the library's sequence and packing, and
  gathers back. The orders come from the library's own ``get_vision_position_ids`` /
  ``get_vision_window_index``, so they cannot drift from it. Gathers are exact, so the pieces are
  bitwise equal to the library's forward, also when split at any block.
- Qwen3-VL tower: learned position table (``num_position_embeddings`` = 2304, 48x48) bilinearly
  resampled (align_corners) to each grid and added after the patch embedding (Conv3d with bias);
  2D axial rotary embedding; LayerNorm blocks with GELU-tanh MLP, full attention per image
  (``cu_seqlens``); merger = LayerNorm per token, 4 tokens concatenated, MLP -> ``out_hidden_size``.
  DeepStack: after block ``i`` in ``deepstack_visual_indexes`` a separate merger (LayerNorm after the
  concatenation) turns the block's output into one feature per LLM token. 2B / 4B: 24 blocks, width
  1024, taps [5, 11, 17], out 2048 / 2560; 8B: 27 blocks, width 1152, taps [8, 16, 24], out 4096
  (:data:`QWEN3_VL_TOWERS`).
- Qwen2.5-VL tower: no learned position table (the embedding is the bias-free Conv3d alone);
  RMSNorm blocks with SwiGLU MLP; blocks in ``fullatt_block_indexes`` ([7, 15, 23, 31] of 32) attend
  over the whole image, the others within windows of ``window_size`` = 112 px (4x4 merge units; edge
  windows smaller); merger = RMSNorm, 4 tokens concatenated, MLP; no DeepStack. 3B / 7B: width 1280,
  out 2048 / 3584 (:data:`QWEN25_VL_TOWERS`).
- Batches: B images of one size are packed as the library packs them (``[B*T, width]``,
  ``cu_seqlens`` per image) and the output is ``[B, T/4, out_hidden]``, bitwise equal to the library
  given the same batch. One image at a time differs from the batch in the last bits (~3e-8), in
  transformers too: the merger's matrix products see another row count.
- Parameters (2B tower): 406,957,056 in all; patch_embed + pos_embed + blocks 0..1 (what a neck
  entering at block 2 replaces) 29,125,632 (7.2%); one block 12,596,224; merger 25,174,016; the three
  DeepStack mergers 75,540,480.
- Checkpoints: transformers 5.25 saves Qwen3-VL's tower as ``model.visual.*`` and Qwen2.5-VL's as
  ``visual.*`` (the hub layout, restored on save); both prefixes are read, and bare towers (no prefix).
- DeepStack when entering at block ``start``: the feature of tap ``i`` is the merger applied to the
  output of block ``i``, i.e. to the tokens entering block ``i + 1``. Taps ``i >= start`` are computed
  by the blocks; tap ``start - 1`` is the merger of the entering tokens themselves (the neck's tokens
  stand in for that output); taps ``i < start - 1`` are unavailable and :meth:`Qwen3VLTower.forward_from`
  raises :class:`NeckkitError`.

Sources for the real sizes: transformers 5.25.0's ``Qwen3VLVisionConfig`` defaults are the 8B tower
(depth 27, width 1152, intermediate 4304, taps (8, 16, 24), 2304 positions, patch 16) except
``out_hidden_size`` (3584 there, 4096 in the 8B checkpoint); the 2B / 4B and Qwen2.5-VL values are
the hub ``config.json`` ``vision_config`` entries as quoted by several public repositories
(``Qwen/Qwen3-VL-{2B,4B,8B}-Instruct``, ``Qwen/Qwen2.5-VL-{3B,7B}-Instruct``); the hub itself was not
reachable from here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self

import torch
from torch import Tensor, nn

from neckkit.errors import NeckkitError
from neckkit.host.factories import random_weights
from neckkit.interfaces.encoder import Box, Grid, VisualEncoder
from neckkit.interfaces.preprocess import OPENAI_MEAN, OPENAI_STD
from neckkit.loading.hub import WeightsSource, Wording
from neckkit.loading.shards import INDEX_FILE, SINGLE_FILE, read_submodule_tensors
from neckkit.loading.weights import seeded_init, state_dict_mismatches

PREPROCESSOR_FILE = "preprocessor_config.json"  # the image processor alone (hub checkpoints)
PROCESSOR_FILE = "processor_config.json"  # transformers 5's processor save: the image processor under "image_processor"
VISUAL_PREFIXES = ("model.visual.", "visual.")  # Qwen3-VL files: model.visual.*; Qwen2.5-VL files: visual.*


@dataclass(frozen=True)
class ProcessorSpec:
    """What the image processor does to one image: smart_resize bounds and normalisation."""

    patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def transformers_processor(self) -> Any:
        """The equivalent ``Qwen2VLImageProcessor`` (torchvision backend), for comparisons."""
        from transformers import Qwen2VLImageProcessor

        return Qwen2VLImageProcessor(
            size={"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            patch_size=self.patch_size, merge_size=self.merge_size, temporal_patch_size=2,
            image_mean=list(self.mean), image_std=list(self.std),
        )


QWEN3_VL_PROCESSOR = ProcessorSpec(16, 2, 65536, 16777216, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
QWEN25_VL_PROCESSOR = ProcessorSpec(14, 2, 3136, 12845056, OPENAI_MEAN, OPENAI_STD)

# Real tower configs (see the module docstring for sources); the rest are the config classes' defaults.
QWEN3_VL_TOWERS: dict[str, dict[str, Any]] = {
    "2b": dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
               deepstack_visual_indexes=[5, 11, 17]),
    "4b": dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2560,
               deepstack_visual_indexes=[5, 11, 17]),
    "8b": dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
               deepstack_visual_indexes=[8, 16, 24]),
}
_QWEN3_COMMON = dict(hidden_act="gelu_pytorch_tanh", patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                     num_position_embeddings=2304, in_channels=3)
QWEN25_VL_TOWERS: dict[str, dict[str, Any]] = {
    "3b": dict(out_hidden_size=2048),
    "7b": dict(out_hidden_size=3584),
}
_QWEN25_COMMON = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, hidden_act="silu",
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                      fullatt_block_indexes=[7, 15, 23, 31], in_channels=3)

# The Instruct checkpoints holding each size's tower (and MLLM); the first size is the default.
QWEN3_VL_HUB_IDS: dict[str, str] = {size: f"Qwen/Qwen3-VL-{size.upper()}-Instruct" for size in QWEN3_VL_TOWERS}
QWEN25_VL_HUB_IDS: dict[str, str] = {size: f"Qwen/Qwen2.5-VL-{size.upper()}-Instruct" for size in QWEN25_VL_TOWERS}
# Default square sides (``image_size``) of real and tiny towers: multiples of patch * merge.
QWEN3_VL_IMAGE_SIZE, QWEN3_VL_TINY_IMAGE_SIZE = 512, 64  # 32x32 and 4x4 patch tokens
QWEN25_VL_IMAGE_SIZE, QWEN25_VL_TINY_IMAGE_SIZE = 504, 112  # 36x36 and 8x8 patch tokens


def tiny_qwen3_vl_vision_config() -> Any:
    """A tiny Qwen3-VL tower: 4 blocks, width 32, 2 heads, patch 16, taps [1, 2], out 48, 8x8 positions."""
    from transformers import Qwen3VLVisionConfig

    return Qwen3VLVisionConfig(
        depth=4, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=48,
        deepstack_visual_indexes=[1, 2], num_position_embeddings=64, **{
            k: v for k, v in _QWEN3_COMMON.items() if k != "num_position_embeddings"},
    )


def tiny_qwen25_vl_vision_config() -> Any:
    """A tiny Qwen2.5-VL tower: 4 blocks, width 32, 2 heads, patch 14, 2x2-unit windows, full attention in 1, 3."""
    from transformers import Qwen2_5_VLVisionConfig

    tiny = dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=48,
                window_size=56, fullatt_block_indexes=[1, 3])
    return Qwen2_5_VLVisionConfig(**{**_QWEN25_COMMON, **tiny})


@dataclass(frozen=True)
class QwenVisionOutput:
    """The tower's output for B images of one size: what the MLLM splices into its sequence.

    ``merged``: the merger output [B, T/4, out_hidden], LLM tokens row-major over (gh/2, gw/2);
    ``deepstack``: Qwen3-VL's DeepStack features, one [B, T/4, out_hidden] per tap, in the order of
    ``deepstack_visual_indexes`` (empty for Qwen2.5-VL).
    """

    merged: Tensor
    deepstack: tuple[Tensor, ...] = ()


@dataclass(frozen=True)
class _Layout:
    """The library's packed sequence for B images of one grid."""

    order: Tensor  # [T] raster index of each library position (one image)
    inverse: Tensor  # [T] library position of each raster index
    grid_thw: Tensor  # [B, 3]
    cu_seqlens: Tensor  # [B+1] per image (full attention)
    max_seqlen: int | None
    rope: tuple[Tensor, Tensor]  # (cos, sin) [B*T, head_dim], library order
    cu_window_seqlens: Tensor | None = None  # Qwen2.5-VL: per window
    max_window_seqlen: int | None = None
    merge_order: Tensor | None = None  # Qwen2.5-VL: [B*T/4] argsort(window_index), library -> merge-unit order


class _QwenTower(VisualEncoder):
    """What both towers share: the processor's geometry, token orders and packing, the encoder interface."""

    family = "Qwen-VL"
    default_processor: ProcessorSpec
    default_image_size: int
    native_resolution = True
    has_class_token = False

    @classmethod
    def from_pretrained(cls, weights: str, entry_layer: int = 2) -> Self:
        """The vision tower of a hub id or ``save_pretrained`` folder of the family (full MLLM or bare tower)."""
        visual, processor = _load_visual(weights, cls.family)
        return cls(visual, processor or cls.default_processor, entry_layer)

    def __init__(self, visual: nn.Module, processor: ProcessorSpec, entry_layer: int = 2, *,
                 image_size: int | None = None) -> None:
        super().__init__()
        self.visual = visual.eval()
        config = visual.config
        self.processor = processor
        self.width: int = config.hidden_size
        self.out_dim: int = config.out_hidden_size
        self.num_layers: int = config.depth
        self.patch_size: int = config.patch_size
        self.merge_size: int = config.spatial_merge_size
        self.temporal_patch_size: int = config.temporal_patch_size
        self.deepstack_taps: tuple[int, ...] = tuple(getattr(config, "deepstack_visual_indexes", None) or ())
        self.embed_dim: int = self.out_dim * (1 + len(self.deepstack_taps))  # encode_from's size per LLM token
        if (processor.patch_size, processor.merge_size) != (self.patch_size, self.merge_size):
            raise NeckkitError(
                f"{self.family} processor has patch {processor.patch_size} / merge {processor.merge_size}, "
                f"the tower patch {self.patch_size} / merge {self.merge_size}"
            )
        if not 0 <= entry_layer <= self.num_layers:
            raise NeckkitError(f"entry_layer must be in 0..{self.num_layers}, got {entry_layer}")
        self.entry_layer = entry_layer
        self.image_size: int = image_size or self.default_image_size
        if self.image_size % processor.factor:
            raise NeckkitError(f"{self.family} image_size must be a multiple of {processor.factor}, got {self.image_size}")

    # -- the processor's geometry ---------------------------------------------------------------

    def resize_for(self, height: int, width: int) -> tuple[int, int]:
        """The size the image processor resizes a ``height x width`` image to (smart_resize)."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        spec = self.processor
        try:
            return smart_resize(height, width, spec.factor, spec.min_pixels, spec.max_pixels)
        except ValueError as error:  # aspect ratio over 200
            raise NeckkitError(f"{self.family} cannot take a {height}x{width} image: {error}") from None

    def token_grid(self, height: int, width: int) -> Grid:
        """Patch grid (gh, gw) of a ``height x width`` image after the processor's resize."""
        resized_h, resized_w = self.resize_for(height, width)
        return resized_h // self.patch_size, resized_w // self.patch_size

    def llm_tokens(self, height: int, width: int) -> int:
        """Tokens the MLLM reads for the image: (gh/2) * (gw/2)."""
        gh, gw = self.token_grid(height, width)
        return (gh // self.merge_size) * (gw // self.merge_size)

    def pixels(self, x01: Tensor, eight_bit: bool = False) -> Tensor:
        """The processor's resize and normalisation: [B, 3, H, W] in [0, 1] -> [B, 3, H', W'].

        Float images: bicubic antialiased resize (not clamped, as transformers does), then
        ``(x - mean) / std``: equal to the processor given the same float image (``do_rescale=False``).
        ``eight_bit``: the processor given 8-bit images instead (round to uint8, resize in uint8,
        which rounds and clips, then the fused ``/255`` normalisation), e.g. to match PIL inputs.
        """
        from torchvision.transforms.v2 import functional as tvF

        self._check_images(x01)
        size = list(self.resize_for(x01.shape[-2], x01.shape[-1]))
        mean, std = torch.tensor(self.processor.mean), torch.tensor(self.processor.std)
        if eight_bit:
            x01 = (x01 * 255).round().clamp(0, 255).to(torch.uint8)
            mean, std = mean * (1.0 / (1 / 255)), std * (1.0 / (1 / 255))  # the processor's fused rescale
        resized = tvF.resize(x01, size, interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
        resized = resized.to(torch.float32)
        mean, std = mean.to(resized.device).view(-1, 1, 1), std.to(resized.device).view(-1, 1, 1)
        return (resized - mean) / std  # [B, 3, H', W']

    def geometric_preprocess(self, x01: Tensor) -> Tensor:
        """The processor's resize without the normalisation, clamped to [0, 1]: [B, 3, H, W] -> [B, 3, H', W']
        at :meth:`input_size`. What a device compresses: the whole image at the size the tower reads.

        ``preprocess(geometric_preprocess(x))`` equals ``preprocess(x)`` bitwise wherever the bicubic resize
        stays within [0, 1] (an image already at its input size is not resized again). Where it overshoots
        (ringing at sharp edges) the two differ by exactly the overshoot, which the clamp removes so that the
        region can be stored as an image; the processor fed 8-bit images clips there too.
        """
        from torchvision.transforms.v2 import functional as tvF

        self._check_images(x01)
        size = list(self.resize_for(x01.shape[-2], x01.shape[-1]))
        resized = tvF.resize(x01, size, interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
        return resized.to(torch.float32).clamp(0.0, 1.0)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The processor's resize of a ``height x width`` image (:meth:`resize_for`)."""
        return self.resize_for(height, width)

    def view_box(self, height: int, width: int) -> Box:
        """The whole image: the processor resizes it, keeping its aspect ratio (up to rounding), and crops nothing."""
        return 0.0, 0.0, float(height), float(width)

    def preprocess(self, x01: Tensor) -> Tensor:
        """The processor's resize and normalisation (:meth:`pixels`): [B, 3, H, W] in [0, 1] -> [B, 3, H', W']."""
        return self.pixels(x01)

    def _check_images(self, x01: Tensor) -> None:
        if x01.ndim != 4 or x01.shape[1] != 3:
            raise NeckkitError(f"expected images [B, 3, H, W], got shape {tuple(x01.shape)}")

    def grid_of(self, pixels: Tensor) -> Grid:
        """Patch grid of preprocessed pixels [B, 3, H, W] (H, W multiples of patch * merge)."""
        height, width = pixels.shape[-2:]
        factor = self.processor.factor
        if pixels.ndim != 4 or height % factor or width % factor:
            raise NeckkitError(
                f"{self.family} pixels must be [B, 3, H, W] with H and W multiples of {factor}, "
                f"got {tuple(pixels.shape)}: resize with pixels()"
            )
        return height // self.patch_size, width // self.patch_size

    def library_inputs(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """The processor's layout: ``pixel_values`` [B*T, 3*2*p*p] in merge-unit order, ``image_grid_thw`` [B, 3]."""
        gh, gw = self.grid_of(pixels)
        batch, channels = pixels.shape[:2]
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        patches = pixels.reshape(batch, channels, gh // m, m, p, gw // m, m, p)
        patches = patches.permute(0, 2, 5, 3, 6, 1, 4, 7)  # [B, gh/m, gw/m, m, m, C, p, p]
        patches = patches.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, tp, -1, -1)  # the image as 2 equal frames
        pixel_values = patches.reshape(batch * gh * gw, channels * tp * p * p)
        grid_thw = torch.tensor([[1, gh, gw]] * batch, dtype=torch.long, device=pixels.device)
        return pixel_values, grid_thw

    # -- token orders and packing ----------------------------------------------------------------

    def _check_grid(self, grid: Grid) -> None:
        gh, gw = grid
        m = self.merge_size
        if gh <= 0 or gw <= 0 or gh % m or gw % m:
            raise NeckkitError(f"{self.family} grid must be positive multiples of {m}, got {grid}")

    def _check_tokens(self, tokens: Tensor, grid: Grid) -> None:
        self._check_grid(grid)
        expected = grid[0] * grid[1]
        if tokens.ndim != 3 or tokens.shape[1:] != (expected, self.width):
            raise NeckkitError(
                f"{self.family} tokens for grid {grid} must be [B, {expected}, {self.width}], got {tuple(tokens.shape)}"
            )

    def _check_range(self, start: int, end: int) -> None:
        if not 0 <= start <= end <= self.num_layers:
            raise NeckkitError(f"{self.family} has blocks 0..{self.num_layers}; got start={start}, end={end}")

    def _grid_thw(self, grid: Grid, batch: int, device: torch.device) -> Tensor:
        return torch.tensor([[1, grid[0], grid[1]]] * batch, dtype=torch.long, device=device)

    def _base_layout(self, grid: Grid, batch: int, device: torch.device) -> _Layout:
        """Merge-unit order, per-image cu_seqlens and rotary embedding, as the library computes them."""
        from transformers.vision_utils import get_vision_attention_seqlens, get_vision_position_ids

        grid_thw = self._grid_thw(grid, batch, device)
        position_ids = get_vision_position_ids(grid_thw, self.merge_size)  # [B*T, 2] (row, col)
        cu_seqlens, max_seqlen = get_vision_attention_seqlens(grid_thw, self.visual.config)
        probe = torch.empty(0, device=device)  # the rotary module reads only its device
        rope = self.visual.rotary_pos_emb(probe, position_ids)
        tokens = grid[0] * grid[1]
        order = position_ids[:tokens, 0] * grid[1] + position_ids[:tokens, 1]
        return _Layout(order, torch.argsort(order), grid_thw, cu_seqlens, max_seqlen, rope)

    def _layout(self, grid: Grid, batch: int, device: torch.device) -> _Layout:
        """The library's sequence order for the blocks (merge-unit order by default)."""
        return self._base_layout(grid, batch, device)

    @staticmethod
    def _to_library(tokens: Tensor, order: Tensor) -> Tensor:
        """Raster [B, T, D] -> the library's packed sequence [B*T, D]."""
        return tokens[:, order].reshape(-1, tokens.shape[-1])

    @staticmethod
    def _to_raster(packed: Tensor, inverse: Tensor, batch: int) -> Tensor:
        """The library's packed sequence [B*T, D] -> raster [B, T, D]."""
        return packed.reshape(batch, -1, packed.shape[-1])[:, inverse]

    def _patch_embed(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """The library's patch embedding of the processor's layout: [B*T, width] in merge-unit order."""
        pixel_values, grid_thw = self.library_inputs(pixels)
        return self.visual.patch_embed(pixel_values), grid_thw

    def _run_blocks(self, packed: Tensor, start: int, end: int, layout: _Layout,
                    after_block: Any = None) -> Tensor:
        for index in range(start, end):
            cu_seqlens, max_seqlen = self._attention(index, layout)
            packed = self.visual.blocks[index](
                packed, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen, position_embeddings=layout.rope
            )
            if after_block is not None:
                after_block(index, packed)
        return packed

    def _attention(self, index: int, layout: _Layout) -> tuple[Tensor, int | None]:
        return layout.cu_seqlens, layout.max_seqlen

    def _merge(self, packed: Tensor, layout: _Layout, batch: int) -> Tensor:
        """The library's merger on its packed sequence -> [B, T/4, out_hidden]."""
        return self.visual.merger(packed).reshape(batch, -1, self.out_dim)

    def to_library(self, tokens: Tensor, grid: Grid) -> Tensor:
        """Raster tokens [B, T, width] -> the library's packed block sequence [B*T, width]."""
        self._check_tokens(tokens, grid)
        return self._to_library(tokens, self._layout(grid, tokens.shape[0], tokens.device).order)

    def to_raster(self, packed: Tensor, grid: Grid) -> Tensor:
        """The library's packed block sequence [B*T, width] (e.g. its ``hidden_states``) -> raster [B, T, width]."""
        self._check_grid(grid)
        tokens = grid[0] * grid[1]
        if packed.ndim != 2 or packed.shape[0] % tokens:
            raise NeckkitError(f"{self.family} packed tokens for grid {grid} must be [B*{tokens}, D], got {tuple(packed.shape)}")
        batch = packed.shape[0] // tokens
        return self._to_raster(packed, self._layout(grid, batch, packed.device).inverse, batch)

    # -- the split forward -----------------------------------------------------------------------

    def embed(self, pixels: Tensor) -> Tensor:
        """Patch embedding (+ Qwen3-VL's position table): [B, 3, H, W] -> [B, gh*gw, width], raster order."""
        raise NotImplementedError

    def blocks(self, tokens: Tensor, start: int, end: int, grid: Grid | None = None) -> Tensor:
        """Run blocks ``start .. end - 1`` on raster tokens [B, gh*gw, width] -> same shape and order."""
        grid = self._need_grid(grid)
        self._check_tokens(tokens, grid)
        self._check_range(start, end)
        layout = self._layout(grid, tokens.shape[0], tokens.device)
        packed = self._run_blocks(self._to_library(tokens, layout.order), start, end, layout)
        return self._to_raster(packed, layout.inverse, tokens.shape[0])

    def head(self, tokens: Tensor, grid: Grid | None = None) -> Tensor:
        """The merger on the last block's raster tokens -> [B, gh/2 * gw/2, out_hidden], LLM tokens row-major."""
        grid = self._need_grid(grid)
        self._check_tokens(tokens, grid)
        layout = self._layout(grid, tokens.shape[0], tokens.device)
        return self._merge(self._to_library(tokens, layout.order), layout, tokens.shape[0])

    def forward_from(self, tokens: Tensor, start: int, grid: Grid | None = None) -> QwenVisionOutput:
        """Finish the forward from raster tokens entering block ``start``."""
        grid = self._need_grid(grid)
        return QwenVisionOutput(self.head(self.blocks(tokens, start, self.num_layers, grid), grid))

    def forward(self, pixels: Tensor) -> QwenVisionOutput:
        """The whole tower on preprocessed pixels [B, 3, H, W]."""
        return self.forward_from(self.embed(pixels), 0, self.grid_of(pixels))

    def encode_from(self, tokens: Tensor, start: int, grid: Grid | None = None) -> Tensor:
        """What the language model reads, from raster tokens entering block ``start``: the merger output and
        the DeepStack features (Qwen3-VL) concatenated -> [B, gh/2 * gw/2, embed_dim]. The distillation target."""
        output = self.forward_from(tokens, start, grid)
        return torch.cat([output.merged, *output.deepstack], dim=-1)

    def encode(self, pixels: Tensor) -> Tensor:
        """:meth:`encode_from` on preprocessed pixels [B, 3, H, W], entering at block 0."""
        return self.encode_from(self.embed(pixels), 0, self.grid_of(pixels))

    def hidden_states(self, tokens: Tensor, start: int, grid: Grid | None = None) -> tuple[Tensor | None, ...]:
        """Raster tokens entering each block (``num_layers + 1`` entries, ``None`` before ``start``)."""
        grid = self._need_grid(grid)
        states: list[Tensor | None] = [None] * start + [tokens]
        for index in range(start, self.num_layers):
            tokens = self.blocks(tokens, index, index + 1, grid)
            states.append(tokens)
        return tuple(states)

    def library_forward(self, pixels: Tensor) -> Any:
        """transformers' own ``visual(pixel_values, grid_thw=...)`` on the same pixels (the reference)."""
        pixel_values, grid_thw = self.library_inputs(pixels)
        return self.visual(pixel_values, grid_thw=grid_thw)


def _tower_config(family: str, config_class: Any, common: Mapping[str, Any], towers: Mapping[str, Mapping[str, Any]],
                  size: str) -> Any:
    """A real-size tower's vision config, from the values shared by a family and those of one ``size``."""
    if size not in towers:
        raise NeckkitError(f"{family} tower size must be one of {', '.join(towers)}, got {size!r}")
    return config_class(**common, **towers[size])


def _random_visual(model_class: Any, config: Any, seed: int | None, device: str | torch.device | None) -> nn.Module:
    """The library's vision model with random weights, built on ``device`` (``"meta"``: no memory).

    Drawn under ``seeded_init(seed)``, or, with ``seed=None``, from the current RNG state (a factory inside
    the host's ``seeded_init``, so that an MLLM factory drawing its tower first gets the same weights).
    """
    with seeded_init(seed) if seed is not None else contextlib.nullcontext(), torch.device(device or "cpu"):
        return model_class(config)


class Qwen3VLTower(_QwenTower):
    """Qwen3-VL's vision tower (``Qwen3VLVisionModel``) split at any block, with DeepStack taps.

    ``visual`` may be the ``model.visual`` of a loaded ``Qwen3VLForConditionalGeneration`` (shared,
    not copied). Tokens are raster-ordered everywhere; see the module docstring for the orders.
    """

    family = "Qwen3-VL"
    default_processor = QWEN3_VL_PROCESSOR
    default_image_size = QWEN3_VL_IMAGE_SIZE

    def __init__(self, visual: nn.Module, processor: ProcessorSpec = QWEN3_VL_PROCESSOR, entry_layer: int = 2, *,
                 image_size: int | None = None) -> None:
        super().__init__(visual, processor, entry_layer, image_size=image_size)
        self.grid: int = int(visual.num_grid_per_side)  # the side of the learned position table

    @classmethod
    def random_init(cls, size: str = "2b", seed: int | None = 0, device: str | torch.device | None = None,
                    tiny: bool = False, processor: ProcessorSpec | None = None, entry_layer: int = 2) -> Qwen3VLTower:
        """A real-size tower (``"2b"``, ``"4b"``, ``"8b"``) or the tiny one with random weights.

        ``device="meta"`` builds it without memory (to count parameters); ``seed=None`` draws from the
        current RNG state (as the registered factory does, inside the host's ``seeded_init``).
        """
        from transformers import Qwen3VLVisionConfig
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

        config = tiny_qwen3_vl_vision_config() if tiny else _tower_config(
            cls.family, Qwen3VLVisionConfig, _QWEN3_COMMON, QWEN3_VL_TOWERS, size)
        visual = _random_visual(Qwen3VLVisionModel, config, seed, device)
        return cls(visual, processor or _tiny_processor(QWEN3_VL_PROCESSOR, tiny), entry_layer,
                   image_size=QWEN3_VL_TINY_IMAGE_SIZE if tiny else None)

    def position_embedding(self, grid: Grid) -> Tensor:
        """The learned position table resampled to ``grid`` -> [gh*gw, width], raster order."""
        self._check_grid(grid)
        device = self.visual.pos_embed.weight.device
        layout = self._base_layout(grid, 1, device)
        return self._position_table(layout.grid_thw)[layout.inverse]

    def _position_table(self, grid_thw: Tensor) -> Tensor:
        """The library's resampled positions [B*T, width] in merge-unit order."""
        from transformers.vision_utils import get_vision_interpolation_indices_and_weights

        visual = self.visual
        indices, weights = get_vision_interpolation_indices_and_weights(
            grid_thw, num_grid_per_side=visual.num_grid_per_side, mode=visual.interpolation_mode,
            align_corners=visual.interpolation_align_corners, spatial_merge_size=self.merge_size,
        )
        return (visual.pos_embed(indices) * weights[:, :, None]).sum(1)

    def embed(self, pixels: Tensor) -> Tensor:
        hidden, grid_thw = self._patch_embed(pixels)  # [B*T, width], merge-unit order
        hidden = hidden + self._position_table(grid_thw).to(hidden.dtype)
        layout = self._base_layout(self.grid_of(pixels), pixels.shape[0], pixels.device)
        return self._to_raster(hidden, layout.inverse, pixels.shape[0])  # [B, T, width], raster

    def blocks(self, tokens: Tensor, start: int, end: int, grid: Grid | None = None,
               deepstack: dict[int, Tensor] | None = None) -> Tensor:
        """Run blocks ``start .. end - 1`` on raster tokens; with ``deepstack``, also store there the
        DeepStack feature [B, T/4, out_hidden] of every tap ``i`` in ``start .. end - 1``."""
        grid = self._need_grid(grid)
        self._check_tokens(tokens, grid)
        self._check_range(start, end)
        batch = tokens.shape[0]
        layout = self._layout(grid, batch, tokens.device)

        def tap(index: int, packed: Tensor) -> None:
            if deepstack is not None and index in self.deepstack_taps:
                deepstack[index] = self._deepstack_merge(index, packed, batch)

        packed = self._run_blocks(self._to_library(tokens, layout.order), start, end, layout, tap)
        return self._to_raster(packed, layout.inverse, batch)

    def _deepstack_merge(self, index: int, packed: Tensor, batch: int) -> Tensor:
        merger = self.visual.deepstack_merger_list[self.deepstack_taps.index(index)]
        return merger(packed).reshape(batch, -1, self.out_dim)

    def deepstack_feature(self, tokens: Tensor, tap: int, grid: Grid) -> Tensor:
        """The DeepStack feature of ``tap`` from block ``tap``'s raster output -> [B, T/4, out_hidden]."""
        self._check_tokens(tokens, grid)
        if tap not in self.deepstack_taps:
            raise NeckkitError(f"{self.family} has DeepStack taps {list(self.deepstack_taps)}, not {tap}")
        layout = self._layout(grid, tokens.shape[0], tokens.device)
        return self._deepstack_merge(tap, self._to_library(tokens, layout.order), tokens.shape[0])

    def missing_taps(self, start: int) -> list[int]:
        """Taps whose block output is never seen when entering at ``start``: those before ``start - 1``."""
        return [tap for tap in self.deepstack_taps if tap < start - 1]

    def forward_from(self, tokens: Tensor, start: int, grid: Grid | None = None) -> QwenVisionOutput:
        """Merger output and all DeepStack features from raster tokens entering block ``start``.

        Tap ``start - 1`` is computed from the entering tokens (they stand for that block's output);
        a tap before it raises :class:`NeckkitError`.
        """
        grid = self._need_grid(grid)
        self._check_range(start, self.num_layers)
        missing = self.missing_taps(start)
        if missing:
            raise NeckkitError(
                f"{self.family} DeepStack taps {missing} lie before entry block {start}: their features need "
                f"the output of block {missing[0]}, which a forward entering at block {start} never computes "
                f"(taps {list(self.deepstack_taps)}; enter at block {missing[0] + 1} or earlier)"
            )
        features: dict[int, Tensor] = {}
        if start - 1 in self.deepstack_taps:
            features[start - 1] = self.deepstack_feature(tokens, start - 1, grid)
        last = self.blocks(tokens, start, self.num_layers, grid, deepstack=features)
        return QwenVisionOutput(self.head(last, grid), tuple(features[tap] for tap in self.deepstack_taps))


class Qwen25VLTower(_QwenTower):
    """Qwen2.5-VL's vision tower (``Qwen2_5_VisionTransformerPretrainedModel``) split at any block.

    Its blocks run on merge units regrouped by attention window (the library's ``window_index``);
    windowed blocks attend within a window, ``fullatt_block_indexes`` over the whole image.
    """

    family = "Qwen2.5-VL"
    default_processor = QWEN25_VL_PROCESSOR
    default_image_size = QWEN25_VL_IMAGE_SIZE

    def __init__(self, visual: nn.Module, processor: ProcessorSpec = QWEN25_VL_PROCESSOR, entry_layer: int = 2, *,
                 image_size: int | None = None) -> None:
        super().__init__(visual, processor, entry_layer, image_size=image_size)
        self.full_attention_blocks: tuple[int, ...] = tuple(visual.config.fullatt_block_indexes)
        self.grid: int = self.image_size // self.patch_size  # no position table: the default image's grid

    @classmethod
    def random_init(cls, size: str = "3b", seed: int | None = 0, device: str | torch.device | None = None,
                    tiny: bool = False, processor: ProcessorSpec | None = None, entry_layer: int = 2) -> Qwen25VLTower:
        """A real-size tower (``"3b"``, ``"7b"``) or the tiny one with random weights (``seed``: as for Qwen3-VL)."""
        from transformers import Qwen2_5_VLVisionConfig
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

        config = tiny_qwen25_vl_vision_config() if tiny else _tower_config(
            cls.family, Qwen2_5_VLVisionConfig, _QWEN25_COMMON, QWEN25_VL_TOWERS, size)
        visual = _random_visual(Qwen2_5_VisionTransformerPretrainedModel, config, seed, device)
        return cls(visual, processor or _tiny_processor(QWEN25_VL_PROCESSOR, tiny), entry_layer,
                   image_size=QWEN25_VL_TINY_IMAGE_SIZE if tiny else None)

    def _layout(self, grid: Grid, batch: int, device: torch.device) -> _Layout:
        """Window order: merge units regrouped by window (``window_index``), rotary embedding permuted alike."""
        from transformers.utils.generic import get_max_seqlen
        from transformers.vision_utils import get_vision_window_index

        base = self._base_layout(grid, batch, device)
        config = self.visual.config
        window_index, cu_window_seqlens = get_vision_window_index(
            base.grid_thw, spatial_merge_size=self.merge_size, window_size=config.window_size,
            patch_size=self.patch_size,
        )
        max_window_seqlen = get_max_seqlen(cu_window_seqlens, config, kwargs={}, kwarg_name="max_window_seqlen")
        seq_len = base.rope[0].shape[0]
        rope = tuple(self.visual.permute_input_for_window_attn(part, window_index, seq_len=seq_len) for part in base.rope)
        unit = self.merge_size**2
        tokens = grid[0] * grid[1]
        per_image = window_index[: tokens // unit]  # the first image's units (later images: + b*T/4)
        positions = (per_image[:, None] * unit + torch.arange(unit, device=device)).reshape(-1)
        order = base.order[positions]  # window position -> merge-unit position -> raster index
        return replace(base, order=order, inverse=torch.argsort(order), rope=rope,
                       cu_window_seqlens=cu_window_seqlens, max_window_seqlen=max_window_seqlen,
                       merge_order=torch.argsort(window_index))

    def _attention(self, index: int, layout: _Layout) -> tuple[Tensor, int | None]:
        if index in self.full_attention_blocks:
            return layout.cu_seqlens, layout.max_seqlen
        return layout.cu_window_seqlens, layout.max_window_seqlen

    def _merge(self, packed: Tensor, layout: _Layout, batch: int) -> Tensor:
        merged = self.visual.merger(packed)[layout.merge_order]  # the library's reverse_indices
        return merged.reshape(batch, -1, self.out_dim)

    def embed(self, pixels: Tensor) -> Tensor:
        hidden, _ = self._patch_embed(pixels)  # [B*T, width], merge-unit order
        layout = self._base_layout(self.grid_of(pixels), pixels.shape[0], pixels.device)
        return self._to_raster(hidden, layout.inverse, pixels.shape[0])  # [B, T, width], raster


def _tiny_processor(spec: ProcessorSpec, tiny: bool) -> ProcessorSpec:
    """Tiny towers keep small images small: min_pixels of one 2x2 merge unit."""
    return replace(spec, min_pixels=spec.factor**2) if tiny else spec


# -- loading the visual part of a checkpoint ---------------------------------------------------------

_FAMILIES: dict[str, dict[str, str]] = {
    "Qwen3-VL": dict(full="qwen3_vl", vision="qwen3_vl_vision", hub_id=QWEN3_VL_HUB_IDS["2b"]),
    "Qwen2.5-VL": dict(full="qwen2_5_vl", vision="qwen2_5_vl_vision", hub_id=QWEN25_VL_HUB_IDS["3b"]),
}


def _wording(family: str) -> Wording:
    return Wording(
        name=f"{family} weights",
        hub_id=_FAMILIES[family]["hub_id"],
        folder="holds config.json and the safetensors",
        folder_hint=f"pass a {family} folder saved by save_pretrained, or use random_init",
        flag="--encoder-weights",
        fallback="--random-init",
        patterns=("*.json", "*.safetensors"),
    )


def _read_json(source: WeightsSource, name: str) -> dict[str, Any]:
    try:
        return json.loads((source.folder / name).read_text())
    except (OSError, ValueError) as error:
        raise NeckkitError(f"cannot read {name} of {source.wording.name} {source.where}: {error}") from None


def _vision_config(source: WeightsSource, family: str) -> tuple[Any, bool]:
    """The tower config of a full MLLM or bare-tower folder, and whether it is a full MLLM."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLVisionConfig, Qwen3VLConfig, Qwen3VLVisionConfig

    config = _read_json(source, "config.json")
    model_type, names = config.get("model_type"), _FAMILIES[family]
    classes = {"Qwen3-VL": (Qwen3VLConfig, Qwen3VLVisionConfig), "Qwen2.5-VL": (Qwen2_5_VLConfig, Qwen2_5_VLVisionConfig)}
    full_class, vision_class = classes[family]
    if model_type == names["full"]:  # the MLLM's own config class applies its fix-ups to vision_config
        return full_class.from_dict(config).vision_config, True
    if model_type == names["vision"]:
        return vision_class.from_dict(config), False
    raise NeckkitError(
        f"{family} weights {source.where} have model_type {model_type!r} in config.json; "
        f"expected {names['full']!r} (the MLLM) or {names['vision']!r} (its vision tower)"
    )


def _tensor_names(source: WeightsSource) -> list[str]:
    """Every tensor name in the checkpoint, from the shard index or the single file's header."""
    from safetensors import safe_open

    if (source.folder / INDEX_FILE).is_file():
        return list(_read_json(source, INDEX_FILE).get("weight_map", {}))
    source.need([SINGLE_FILE])
    with safe_open(str(source.folder / SINGLE_FILE), framework="pt") as handle:
        return list(handle.keys())


def _processor_spec(source: WeightsSource, default: ProcessorSpec) -> ProcessorSpec | None:
    """The image processor values saved in the folder (``preprocessor_config.json``, or the ``image_processor``
    entry of transformers 5's ``processor_config.json``), if any."""
    if (source.folder / PREPROCESSOR_FILE).is_file():
        config = _read_json(source, PREPROCESSOR_FILE)
    elif (source.folder / PROCESSOR_FILE).is_file() and "image_processor" in _read_json(source, PROCESSOR_FILE):
        config = _read_json(source, PROCESSOR_FILE)["image_processor"]
    else:
        return None
    size = config.get("size") or {}
    return ProcessorSpec(
        patch_size=int(config.get("patch_size", default.patch_size)),
        merge_size=int(config.get("merge_size", default.merge_size)),
        min_pixels=int(size.get("shortest_edge") or config.get("min_pixels") or default.min_pixels),
        max_pixels=int(size.get("longest_edge") or config.get("max_pixels") or default.max_pixels),
        mean=tuple(config.get("image_mean", default.mean)),
        std=tuple(config.get("image_std", default.std)),
    )


def _load_visual(weights: str, family: str) -> tuple[nn.Module, ProcessorSpec | None]:
    """The vision model with the checkpoint's visual tensors (float32), and its processor values if saved.

    Reads ``config.json``'s ``vision_config`` and only the ``model.visual.*`` / ``visual.*`` tensors, from
    just the safetensors shards holding them (for a hub id only those are downloaded): the language
    model is never built or read.
    """
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

    source = WeightsSource(weights, _wording(family), fetch=["config.json", INDEX_FILE, PREPROCESSOR_FILE, PROCESSOR_FILE])
    config, full = _vision_config(source, family)
    prefix = ""
    if full:
        names = _tensor_names(source)
        found = [p for p in VISUAL_PREFIXES if any(name.startswith(p) for name in names)]
        if not found:
            raise NeckkitError(f"{family} weights {source.where} hold no tensors named {' or '.join(VISUAL_PREFIXES)}*")
        prefix = found[0]
    state = read_submodule_tensors(source, prefix)
    model_class = Qwen3VLVisionModel if family == "Qwen3-VL" else Qwen2_5_VisionTransformerPretrainedModel
    with torch.device("meta"):  # no random init: every parameter is assigned below
        visual = model_class(config)
    problems = state_dict_mismatches(visual.state_dict(), state, reference="model")
    if problems:
        raise NeckkitError(f"{family} vision weights {source.where} do not match their config: {'; '.join(problems)}")
    state = {name: tensor.to(torch.float32) for name, tensor in state.items()}
    visual.load_state_dict(state, strict=True, assign=True)
    visual.rotary_pos_emb = type(visual.rotary_pos_emb)(config)  # its buffers are not saved: rebuild off meta
    default = QWEN3_VL_PROCESSOR if family == "Qwen3-VL" else QWEN25_VL_PROCESSOR
    return visual.eval(), _processor_spec(source, default)


# -- the registered factories -------------------------------------------------------------------------


def choose_size(family: str, sizes: Sequence[str], size: str | None, weights: str | None, tiny: bool) -> str:
    """The checked ``size`` option (default: the first of ``sizes``); refused where it would mean nothing."""
    if size is None:
        return sizes[0]
    if weights is not None:
        raise NeckkitError(f"{family}: size picks the default weights; with weights={weights!r} the checkpoint "
                           "decides the size: pass one of them")
    if tiny:
        raise NeckkitError(f"{family}: size and tiny exclude each other (tiny has one size)")
    chosen = str(size).lower()
    if chosen not in sizes:
        raise NeckkitError(f"{family} size must be one of {', '.join(sizes)}, got {size!r}")
    return chosen


def _build_tower(tower_class: type[_QwenTower], hub_ids: Mapping[str, str], size: str | None, weights: str | None,
                 tiny: bool, random: bool, entry_layer: int) -> Any:
    chosen = choose_size(tower_class.family, list(hub_ids), size, weights, tiny)
    if random:  # under the host's seeded_init(seed): drawn from its state
        return tower_class.random_init(chosen, seed=None, tiny=tiny, entry_layer=entry_layer)  # type: ignore[attr-defined]
    return tower_class.from_pretrained(weights or hub_ids[chosen], entry_layer)


def build_qwen3_vl_vision(size: str | None = None, weights: str | None = None, tiny: bool = False,
                          random_init: bool = False, entry_layer: int = 2) -> Qwen3VLTower:
    """Factory for ``qwen3-vl-vit``: the tower of ``Qwen/Qwen3-VL-<size>-Instruct`` (2b, 4b, 8b; default 2b),
    of a hub id or local folder (full MLLM or bare tower), tiny, or real-size random."""
    random = random_weights(weights, tiny, random_init)
    return _build_tower(Qwen3VLTower, QWEN3_VL_HUB_IDS, size, weights, tiny, random, entry_layer)


def build_qwen25_vl_vision(size: str | None = None, weights: str | None = None, tiny: bool = False,
                           random_init: bool = False, entry_layer: int = 2) -> Qwen25VLTower:
    """Factory for ``qwen2.5-vl-vit``: the tower of ``Qwen/Qwen2.5-VL-<size>-Instruct`` (3b, 7b; default 3b),
    of a hub id or local folder (full MLLM or bare tower), tiny, or real-size random."""
    random = random_weights(weights, tiny, random_init)
    return _build_tower(Qwen25VLTower, QWEN25_VL_HUB_IDS, size, weights, tiny, random, entry_layer)


def parameter_count(module: nn.Module, prefixes: Sequence[str] = ("",)) -> int:
    """Parameters of ``module`` whose names start with one of ``prefixes`` (works on the meta device)."""
    return sum(p.numel() for name, p in module.named_parameters() if name.startswith(tuple(prefixes)))


__all__ = [
    "QWEN25_VL_HUB_IDS",
    "QWEN25_VL_IMAGE_SIZE",
    "QWEN25_VL_PROCESSOR",
    "QWEN25_VL_TINY_IMAGE_SIZE",
    "QWEN25_VL_TOWERS",
    "QWEN3_VL_HUB_IDS",
    "QWEN3_VL_IMAGE_SIZE",
    "QWEN3_VL_PROCESSOR",
    "QWEN3_VL_TINY_IMAGE_SIZE",
    "QWEN3_VL_TOWERS",
    "Grid",
    "ProcessorSpec",
    "Qwen25VLTower",
    "Qwen3VLTower",
    "QwenVisionOutput",
    "build_qwen25_vl_vision",
    "build_qwen3_vl_vision",
    "choose_size",
    "parameter_count",
    "tiny_qwen25_vl_vision_config",
    "tiny_qwen3_vl_vision_config",
]
