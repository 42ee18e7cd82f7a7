"""Training crops for ``neckkit train-codec``: random square crops, a pure function of ``(seed, step, slot)``.

CompressAI trains codecs on random crops of full-resolution images (``RandomCrop(256)``). Here the crop
of slot ``i`` of step ``s`` is drawn from a generator seeded by ``(seed, s, i)`` alone, and the images
of each step come from :class:`~neckkit.training.batches.BatchPlan`, so any step's batch is known
without replaying earlier ones: a resumed run and every torchrun rank see exactly the batches an
uninterrupted single-process run would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from neckkit.errors import NeckkitError
from neckkit.training.batches import BatchPlan
from neckkit.training.distributed import World, split_batch

__all__ = ["CropItem", "CropSampler", "RandomCrops", "crop_generator", "crops_batch", "fit_short_side"]

CROP_STREAM = 0  # generator streams of one step: crops here, the rate level in codec_training
CropItem = tuple[int, int, int]  # (image row, step, slot in the global batch)


def crop_generator(seed: int, step: int, stream: int, slot: int = 0) -> np.random.Generator:
    """The generator of one draw of one step: independent of every other ``(seed, step, stream, slot)``."""
    return np.random.default_rng((seed, step, stream, slot))


def fit_short_side(image: Tensor, size: int) -> Tensor:
    """``image`` [1, 3, H, W], upscaled (bicubic, clamped) so its short side is at least ``size``."""
    height, width = image.shape[-2:]
    if min(height, width) >= size:
        return image
    scale = size / min(height, width)
    shape = [max(size, round(height * scale)), max(size, round(width * scale))]
    return TF.resize(image, shape, interpolation=TF.InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)


@dataclass
class RandomCrops(Dataset):
    """Items ``(row, step, slot)`` -> a ``crop`` x ``crop`` [3, S, S] crop of image ``row``; ``None`` if unreadable."""

    paths: list[Path]
    crop: int
    seed: int
    skipped: list[str] = field(default_factory=list)  # "path: reason" of unreadable files

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: CropItem) -> tuple[Tensor, int] | None:
        from neckkit.bitstream.images import load_image

        row, step, slot = item
        try:
            image = fit_short_side(load_image(self.paths[row]), self.crop)  # [1, 3, H, W]
        except NeckkitError as error:
            self.skipped.append(str(error))
            return None
        height, width = image.shape[-2:]
        rng = crop_generator(self.seed, step, CROP_STREAM, slot)
        top, left = int(rng.integers(height - self.crop + 1)), int(rng.integers(width - self.crop + 1))
        return image[0, :, top : top + self.crop, left : left + self.crop].contiguous(), -1  # [3, S, S]


class CropSampler(Sampler[list[CropItem]]):
    """This rank's ``(row, step, slot)`` items for steps ``start .. stop - 1`` (a DataLoader ``batch_sampler``)."""

    def __init__(self, plan: BatchPlan, start: int, stop: int, world: World) -> None:
        self.plan, self.start, self.stop, self.world = plan, start, stop, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[CropItem]]:
        for step in range(self.start, self.stop):
            items = [(row, step, slot) for slot, row in enumerate(self.plan.batch(step))]
            yield split_batch(self.world, items)


def crops_batch(items: list[tuple[Tensor, int] | None]) -> dict[str, Tensor]:
    """Collate: ``{"images": [B, 3, S, S], "skipped": number unreadable}``."""
    from neckkit.training.data import collate_readable

    images, _, skipped = collate_readable(items)
    return {"images": images, "skipped": torch.tensor(skipped)}
