"""One image region on every path: the part of a latent the encoder would see of the image.

The uncompressed baseline runs the encoder's own preprocessing: CLIP's short side and centre crop,
BLIP-2's squash of the whole image, a native-resolution encoder's whole image at its own size. The
neck path reads a latent of the whole (padded) image instead. :func:`latent_view` crops the latent
to the encoder's :meth:`~neckkit.interfaces.VisualEncoder.view_box` (and drops the codec's padding),
so both paths see the same picture, to within half a latent cell; the neck then maps that crop to the
encoder's token grid (:func:`token_grid_of`).

A device that compresses what the encoder sees (``geometric_preprocess`` first: ``neckkit compress
--for-encoder``, ``neckkit ask`` on an image, the benchmarks) gives a latent whose box is the whole
image, so the crop only drops padding, and the bit rate is measured on what the model reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from neckkit.bitstream.padding import Padding
from neckkit.errors import NeckkitError
from neckkit.interfaces.encoder import Grid, VisualEncoder

__all__ = ["latent_box", "latent_view", "token_grid_of"]


def _nearest(value: float) -> int:
    return math.floor(value + 0.5)


def latent_box(
    image_size: Sequence[int], padding: Sequence[int], latent_size: Sequence[int], encoder: VisualEncoder
) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` of the latent cells covering ``encoder.view_box`` of the image.

    ``image_size``: (H, W) before padding; ``padding``: (left, right, top, bottom) pixels the codec added;
    ``latent_size``: (h, w) of the padded image's latent. Box edges go to the nearest latent cell edge,
    at least one cell a side.
    """
    height, width = int(image_size[0]), int(image_size[1])
    left, right, top, bottom = (int(value) for value in padding)
    rows, cols = int(latent_size[0]), int(latent_size[1])
    padded_h, padded_w = height + top + bottom, width + left + right
    if rows < 1 or cols < 1 or padded_h % rows or padded_w % cols:
        raise NeckkitError(f"a latent of {rows}x{cols} cells does not tile a {padded_h}x{padded_w} padded image")
    stride_h, stride_w = padded_h // rows, padded_w // cols
    box_top, box_left, box_h, box_w = encoder.view_box(height, width)
    row0 = min(rows - 1, _nearest((top + box_top) / stride_h))
    col0 = min(cols - 1, _nearest((left + box_left) / stride_w))
    row1 = min(rows, max(row0 + 1, _nearest((top + box_top + box_h) / stride_h)))
    col1 = min(cols, max(col0 + 1, _nearest((left + box_left + box_w) / stride_w)))
    return row0, row1, col0, col1


def latent_view(y_hat: Tensor, image_size: Sequence[int], padding: Padding | Sequence[int],
                encoder: VisualEncoder) -> Tensor:
    """``y_hat`` [B, C, h, w] of a padded image cropped to what ``encoder`` sees of it -> [B, C, h', w']."""
    row0, row1, col0, col1 = latent_box(image_size, padding, y_hat.shape[-2:], encoder)
    if (row0, col0, row1, col1) == (0, 0, *y_hat.shape[-2:]):
        return y_hat
    return y_hat[..., row0:row1, col0:col1]


def token_grid_of(encoder: VisualEncoder, image_size: Sequence[int]) -> Grid | None:
    """The token grid the neck gives an image of ``image_size`` (H, W): the encoder's own grid for it at native
    resolution, ``None`` for a square encoder (its one ``grid x grid``)."""
    if not encoder.native_resolution:
        return None
    return encoder.token_grid(int(image_size[0]), int(image_size[1]))
