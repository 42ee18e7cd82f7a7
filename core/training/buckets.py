"""Crop buckets: the training crops of a native-resolution encoder keep about their image's aspect ratio.

A square encoder (CLIP) trains on the paper's ``crop x crop`` squares. A native-resolution encoder
(Qwen-VL) reads every image at its own shape, so its training crops come in a few shapes, the buckets:
one per aspect ratio of ``DataConfig.bucket_ratios`` (width / height), of about ``crop**2`` pixels, both
sides multiples of the encoder's patch x merge (:func:`bucket_multiple`), at the size the encoder reads
without resizing (its :meth:`~neckkit.interfaces.VisualEncoder.input_size`). Each image goes to the bucket
whose aspect ratio is nearest its own in log ratio (:func:`nearest_bucket`); its crop covers the bucket
and is centre-cropped to it (:class:`~neckkit.training.data.ImageSet` with ``crop_shapes``). The crops of
a batch share one bucket (:class:`~neckkit.training.batches.BucketPlan`); the d1 cache holds one folder
per bucket.

Image sizes are read from the file headers, without decoding pixels, upright as
:func:`~neckkit.bitstream.images.load_image` turns them (EXIF orientation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngImageFile

from neckkit.bitstream.pixel_limit import check_pixels
from neckkit.config.paper import DataConfig
from neckkit.errors import NeckkitError
from neckkit.interfaces.encoder import VisualEncoder
from neckkit.training.data import ImageSet

__all__ = ["Shape", "bucket_multiple", "bucket_shapes", "nearest_bucket", "rows_by_bucket", "upright_size", "with_buckets"]

Shape = tuple[int, int]  # (H, W) of a crop, in pixels

EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = frozenset({5, 6, 7, 8})  # EXIF orientations whose upright image is transposed


def bucket_multiple(encoder: VisualEncoder, config: DataConfig) -> int:
    """The pixel multiple of a bucket's sides: the encoder's patch x merge when it states them (Qwen's
    ``processor.factor``), else ``config.bucket_multiple``."""
    factor = getattr(getattr(encoder, "processor", None), "factor", None)
    if factor is None and hasattr(encoder, "patch_size") and hasattr(encoder, "merge_size"):
        factor = encoder.patch_size * encoder.merge_size
    return int(factor) if factor else config.bucket_multiple


def bucket_shapes(encoder: VisualEncoder, config: DataConfig) -> list[Shape]:
    """The buckets of ``config.bucket_ratios``, in their order, without repeats: (H, W) of about ``crop**2``
    pixels, sides rounded to :func:`bucket_multiple`, then resized by the encoder's own rule if it would."""
    if not encoder.native_resolution:
        raise NeckkitError(f"{type(encoder).__name__} reads square images: it has no crop buckets")
    multiple, area = bucket_multiple(encoder, config), config.crop**2
    shapes: list[Shape] = []
    for ratio in config.bucket_ratios:
        height = max(1, round(math.sqrt(area / ratio) / multiple)) * multiple
        width = max(1, round(math.sqrt(area * ratio) / multiple)) * multiple
        read_at = encoder.input_size(height, width)  # e.g. Qwen's min_pixels may enlarge a small bucket
        shape = (int(read_at[0]), int(read_at[1]))
        if shape not in shapes:
            shapes.append(shape)
    return shapes


def nearest_bucket(height: int, width: int, shapes: Sequence[Shape]) -> int:
    """Index of the bucket whose aspect ratio is nearest that of a ``height x width`` image (in log ratio;
    the first of equals)."""
    aspect = math.log(width / height)
    return min(range(len(shapes)), key=lambda k: abs(math.log(shapes[k][1] / shapes[k][0]) - aspect))


def upright_size(path: str | Path) -> Shape:
    """(H, W) of an image file as :func:`~neckkit.bitstream.images.load_image` returns it, from its header
    alone; one :class:`NeckkitError` line when it cannot be read or is over the pixel limit.

    A PNG whose EXIF follows its pixel data is taken as stored (Pillow would decode it to find out): its
    crop still has its bucket's shape, cut from the other side.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            check_pixels(width, height, source=str(path))
            if isinstance(image, PngImageFile) and "exif" not in image.info:
                orientation = 1
            else:
                orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise NeckkitError(f"{path} is not a readable image ({type(error).__name__}: {error})") from None
    if min(width, height) < 1:
        raise NeckkitError(f"{path} is an empty {width}x{height} image")
    return (width, height) if orientation in _SWAPS_SIDES else (height, width)


def with_buckets(data: ImageSet, shapes: Sequence[Shape]) -> ImageSet:
    """``data`` as bucket crops, each image's the bucket nearest its aspect ratio, ordered bucket by bucket
    as ``shapes`` (within one, as in ``data``): the order of the d1 cache's rows, so that training from the
    cache and from the images agree. Files whose header cannot be read are left out and said in
    ``data.skipped``."""
    if not shapes:
        raise NeckkitError("no crop buckets: set data.bucket_ratios")
    buckets: dict[int, int] = {}  # image index -> bucket index
    for index, path in enumerate(data.paths):
        try:
            buckets[index] = nearest_bucket(*upright_size(path), shapes)
        except NeckkitError as error:
            data.skipped.append(str(error))
    order = sorted(buckets, key=lambda index: buckets[index])  # stable: data's order within a bucket
    return replace(data.subset(order), crop_shapes=[shapes[buckets[index]] for index in order])


def rows_by_bucket(rows: Sequence[int], row_shapes: Sequence[Shape]) -> dict[Shape, list[int]]:
    """``rows`` grouped by their crop's shape (``row_shapes[row]``), buckets in order of first appearance
    in ``row_shapes``, rows in their order; buckets without rows are left out."""
    groups: dict[Shape, list[int]] = {shape: [] for shape in dict.fromkeys(row_shapes)}
    for row in rows:
        groups[row_shapes[row]].append(row)
    return {shape: group for shape, group in groups.items() if group}
