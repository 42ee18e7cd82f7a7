"""Training and evaluation images: ImageNet-style folders, plain folders, the bundled photos.

- A folder whose sub-folders hold images is labelled. Sub-folders named by WordNet id
  (``n01440764``) map onto the 1000 ImageNet-1k classes (label = ImageNet index, names from
  open_clip's metadata); other sub-folder names are the class names themselves (``_`` as space).
- A folder of images is unlabelled: distillation only.
- No folder: the photos bundled with neckkit (unlabelled).

Images are cropped as in the paper (resize the short side to 256, centre crop 256, kept in [0, 1]):
on tensors (``DataConfig.preprocess = "neckkit"``), or with the authors' PIL transforms (``"paper"``:
bilinear for the training split, bicubic for the evaluation split). For a native-resolution encoder
each item has its own crop shape instead, its bucket (``ImageSet.crop_shapes``, set by
:func:`neckkit.training.buckets.with_buckets`): resized to cover it, centre-cropped, on tensors. Unreadable
files, and files over the pixel limit (``NECKKIT_MAX_IMAGE_PIXELS``, also for the resized crop of a very
long strip), are skipped and counted, never fatal.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from neckkit.bitstream.images import IMAGE_SUFFIXES, load_image, load_pil_image
from neckkit.bitstream.pixel_limit import MAX_PIXELS_ENV, max_image_pixels
from neckkit.config.paper import DataConfig
from neckkit.errors import NeckkitError
from neckkit.interfaces.preprocess import pil_resize_center_crop, resize_center_crop, resize_cover_crop

WORDNET_ID = re.compile(r"^n\d{8}$")


def imagenet_wordnet_ids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (timm's bundled metadata)."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


@dataclass
class ImageSet(Dataset):
    """Image files with optional labels; items are (image [3, crop, crop], label or -1), or with
    ``crop_shapes`` (image [3, H, W] of the item's (H, W), label or -1)."""

    paths: list[Path]
    labels: list[int] | None = None
    class_names: list[str] | None = None
    config: DataConfig = field(default_factory=DataConfig)
    skipped: list[str] = field(default_factory=list)  # "path: reason" of unreadable files
    split: str = "train"  # "train" or "eval": which of the paper's interpolations its crops use
    crop_shapes: list[tuple[int, int]] | None = None  # (H, W) of each item's crop (its bucket); None: squares

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: list[int]) -> ImageSet:
        """The items ``indices`` as an image set of their own (sharing this one's ``skipped`` list)."""
        labels, shapes = self.labels, self.crop_shapes
        return replace(
            self, paths=[self.paths[i] for i in indices], labels=[labels[i] for i in indices] if labels is not None else None,
            crop_shapes=[shapes[i] for i in indices] if shapes is not None else None,
        )

    def __getitem__(self, index: int) -> tuple[Tensor, int] | None:
        """The cropped image and its label (-1 when unlabelled); ``None`` for an unreadable file."""
        if self.crop_shapes is not None:
            return self._bucket_crop(index)
        paper = self.config.preprocess == "paper"
        try:
            image = load_pil_image(self.paths[index], alpha="drop") if paper else load_image(self.paths[index])
            check_resized(image, self.config.resize, self.paths[index])
        except NeckkitError as error:
            self.skipped.append(str(error))
            return None
        if paper:
            interpolation = "bilinear" if self.split == "train" else "bicubic"
            crop = pil_resize_center_crop(image, self.config.resize, self.config.crop, interpolation)[0]
        else:
            crop = resize_center_crop(image, self.config.resize, self.config.crop)[0]  # [3, crop, crop]
        return crop, self.labels[index] if self.labels is not None else -1

    def _bucket_crop(self, index: int) -> tuple[Tensor, int] | None:
        """The item resized to cover its crop shape and centre-cropped to it (neckkit's tensor crop)."""
        height, width = self.crop_shapes[index]  # type: ignore[index]
        try:
            image = load_image(self.paths[index])
            check_covering(image, height, width, self.paths[index])
        except NeckkitError as error:
            self.skipped.append(str(error))
            return None
        crop = resize_cover_crop(image, height, width)[0]  # [3, H, W]
        return crop, self.labels[index] if self.labels is not None else -1


def check_covering(image: Tensor, height: int, width: int, path: Path) -> None:
    """:func:`check_resized` for a crop of ``height x width``: refuse an image whose resize to cover it
    would exceed the pixel limit."""
    source_h, source_w = image.shape[-2:]
    scale = max(height / source_h, width / source_w)
    resized = max(height, math.ceil(source_h * scale)) * max(width, math.ceil(source_w * scale))
    if resized > max_image_pixels():
        raise NeckkitError(
            f"{path} is {source_w}x{source_h}: resizing it to cover a {width}x{height} crop makes {resized} "
            f"pixels, more than the {max_image_pixels()} neckkit allows ({MAX_PIXELS_ENV})"
        )


def check_resized(image: Image.Image | Tensor, resize: int, path: Path) -> None:
    """Refuse an image whose short side resized to ``resize`` would exceed the pixel limit (a 60000x1 strip
    would become 256 x 15.4 million), so one such file is skipped instead of ending a run out of memory."""
    height, width = image.shape[-2:] if isinstance(image, Tensor) else image.size[::-1]
    short, long = sorted((height, width))
    resized = math.ceil(resize * long / short) * resize
    if resized > max_image_pixels():
        raise NeckkitError(
            f"{path} is {width}x{height}: resizing its short side to {resize} makes {resized} pixels, more than "
            f"the {max_image_pixels()} neckkit allows ({MAX_PIXELS_ENV})"
        )


def usable_workers(requested: int) -> int:
    """Data-loading processes to start: ``requested``, at most one per CPU core this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(requested, cores))


def collate_readable(items: list[tuple[Tensor, int] | None]) -> tuple[Tensor, Tensor, int]:
    """Batch the readable items, all of one shape: (images [B, 3, H, W], labels [B], number skipped)."""
    readable = [item for item in items if item is not None]
    skipped = len(items) - len(readable)
    if not readable:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images = torch.stack([image for image, _ in readable])
    labels = torch.tensor([label for _, label in readable], dtype=torch.long)
    return images, labels, skipped


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def open_image_set(folder: str | Path | None = None, config: DataConfig | None = None, split: str = "train") -> ImageSet:
    """The images of ``folder`` (see the module docstring); the bundled photos when ``None``.

    ``split``: ``train`` or ``eval``, the crops' interpolation under ``preprocess = "paper"``.
    """
    if split not in ("train", "eval"):
        raise NeckkitError(f"split must be train or eval, got {split!r}")
    config = config or DataConfig()
    if folder is None:
        from neckkit.samples import sample_images

        return ImageSet(sample_images(), config=config, split=split)
    root = Path(folder)
    if not root.is_dir():
        raise NeckkitError(f"data folder {root} does not exist")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and _images_in(d))
    loose = _images_in(root)
    if class_dirs and loose:  # neither reading is safe: labelled mode would drop the loose images
        raise NeckkitError(
            f"data folder {root} holds both {len(loose)} images (e.g. {loose[0].name}) and {len(class_dirs)} "
            f"sub-folders of images (e.g. {class_dirs[0].name}/): a labelled folder holds only class sub-folders, "
            "an unlabelled one only images; move one or the other"
        )
    if not class_dirs:
        paths = _images_in(root)
        if not paths:
            raise NeckkitError(f"data folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageSet(paths, config=config, split=split)
    if all(WORDNET_ID.match(d.name) for d in class_dirs):
        from neckkit.training.zero_shot import imagenet_class_names

        index = {wnid: i for i, wnid in enumerate(imagenet_wordnet_ids())}
        unknown = [d.name for d in class_dirs if d.name not in index]
        if unknown:
            raise NeckkitError(f"data folder {root}: {unknown[0]} is not an ImageNet-1k WordNet id")
        class_names, class_of = imagenet_class_names(), {d.name: index[d.name] for d in class_dirs}
    else:
        class_names = [d.name.replace("_", " ") for d in class_dirs]
        class_of = {d.name: i for i, d in enumerate(class_dirs)}
    paths, labels = [], []
    for directory in class_dirs:
        for path in _images_in(directory):
            paths.append(path)
            labels.append(class_of[directory.name])
    return ImageSet(paths, labels, class_names, config=config, split=split)
