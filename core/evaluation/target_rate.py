"""``--target-bpp``: the qualities of an image codec (JPEG, AVIF, VTM...) that land nearest to given bit rates.

Anchor curves must overlap the neck curves' rate range for a BD-rate to exist, and an anchor's quality knob
says nothing about bits. For each target the quality is found by bisection on the knob (the codec's payload
bpp rises monotonically with quality, or falls with VTM's QP), measured as the mean payload bits per pixel
of the evaluation's own images; the nearer neighbour in log-rate wins. A target the knob cannot reach
within :data:`TOLERANCE` is kept at the nearest quality, with a note saying why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from neckkit.errors import NeckkitError

if TYPE_CHECKING:
    from torch import Tensor

    from neckkit.interfaces.image_codec import ImageCodec

__all__ = ["TOLERANCE", "RateTarget", "parse_targets", "qualities_for_targets"]

TOLERANCE = 0.15  # a quality lands on its target when its rate is within 15 % of it


@dataclass(frozen=True)
class RateTarget:
    """The quality chosen for one target bit rate, the rate it gives, and why it misses (None: within tolerance)."""

    target: float
    quality: int
    bpp: float  # mean payload bits per pixel of the evaluation images at ``quality``
    note: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"target_bpp": self.target, "quality": self.quality, "payload_bpp": self.bpp,
                "within_tolerance": self.note is None, "note": self.note}


def parse_targets(values: Sequence[str]) -> list[float]:
    """``--target-bpp`` values, repeated or comma-separated, as positive floats; one line for anything else."""
    targets = []
    for value in values:
        for part in str(value).split(","):
            try:
                target = float(part)
            except ValueError:
                raise NeckkitError(f"--target-bpp takes positive bit rates, e.g. 0.05,0.1,0.2,0.4; got {part!r}") from None
            if not math.isfinite(target) or target <= 0:
                raise NeckkitError(f"--target-bpp takes positive bit rates, got {part!r}")
            targets.append(target)
    return sorted(set(targets))


class _Rates:
    """Mean payload bpp of ``images`` per quality, each quality coded once."""

    def __init__(self, codec: ImageCodec, images: Sequence[Tensor]) -> None:
        if not images:
            raise NeckkitError("--target-bpp needs at least one readable evaluation image")
        self.codec, self.images, self.known = codec, list(images), {}

    def __call__(self, quality: int) -> float:
        if quality not in self.known:
            before, self.codec.quality = self.codec.quality, quality
            try:
                bits = [len(self.codec.encode(x)) * 8 / (x.shape[-2] * x.shape[-1]) for x in self.images]
            finally:
                self.codec.quality = before
            self.known[quality] = sum(bits) / len(bits)
        return self.known[quality]


def qualities_for_targets(codec: ImageCodec, images: Sequence[Tensor], targets: Sequence[float],
                          name: str | None = None) -> list[RateTarget]:
    """One :class:`RateTarget` per target bpp: the quality nearest to it in log-rate, found by bisection."""
    label = name or codec.name
    rate = _Rates(codec, images)
    low, high = codec.quality_range
    steps = high - low
    more_bits = codec.higher_quality_more_bits

    def quality_at(index: int) -> int:  # index 0 .. steps codes with more and more bits
        return low + index if more_bits else high - index

    chosen = []
    for target in targets:
        first, last = 0, steps
        if rate(quality_at(last)) <= target:
            index = last
        elif rate(quality_at(first)) >= target:
            index = first
        else:
            while last - first > 1:  # rate(first) < target < rate(last)
                middle = (first + last) // 2
                if rate(quality_at(middle)) < target:
                    first = middle
                else:
                    last = middle
            index = min((first, last), key=lambda i: abs(math.log(rate(quality_at(i)) / target)))
        quality = quality_at(index)
        bpp = rate(quality)
        note = None
        if abs(bpp / target - 1) > TOLERANCE:
            if index == steps:
                note = f"{label}'s highest quality ({quality}) gives only {bpp:.4g} bpp, below {target:g}"
            elif index == 0:
                note = f"{label}'s lowest quality ({quality}) already gives {bpp:.4g} bpp, above {target:g}"
            else:
                note = (f"no {label} quality lands within {TOLERANCE:.0%} of {target:g} bpp: the nearest, {quality}, "
                        f"gives {bpp:.4g}")
        chosen.append(RateTarget(target, quality, bpp, note))
    return chosen
