"""Padding images to a codec's multiple and cropping back (CompressAI's ``compute_padding``).

torch and CompressAI are imported inside the functions, so :class:`Padding` is cheap to import
(the ``.nk`` reader uses it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from torch import Tensor


class Padding(NamedTuple):
    """Pixels added on each side (the order ``F.pad`` takes for the last two dims)."""

    left: int
    right: int
    top: int
    bottom: int


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, Padding]:
    """Zero-pad [B, C, H, W] symmetrically so H and W are multiples of ``multiple``."""
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    height, width = x.shape[-2:]
    pad, _ = compute_padding(height, width, min_div=multiple)
    padding = Padding(*pad)
    if not any(padding):
        return x, padding
    return F.pad(x, tuple(padding), mode="constant", value=0.0), padding


def crop_padding(x: Tensor, padding: Padding) -> Tensor:
    """Undo :func:`pad_to_multiple` on a reconstruction of the padded size."""
    left, right, top, bottom = padding
    height, width = x.shape[-2:]
    return x[..., top : height - bottom, left : width - right]
