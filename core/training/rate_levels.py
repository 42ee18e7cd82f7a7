"""Training one neck over the rate levels of a variable-rate codec.

With a :class:`~neckkit.interfaces.codec.VariableRateCodec` the run trains on ``neck.levels`` (all of the
codec's levels when unset, resolved by :func:`resolve_levels` before anything is saved) and every step
codes its batch at one of them, drawn from ``(seed, step)`` (:class:`~neckkit.training.batches.LevelPlan`),
so a resumed run sees the same levels. The batch carries ``level`` [B] to the neck path. The neck is
rate-conditioned (``neck.conditioning`` adaln or film) or, with ``none``, one neck for all the levels
(the baseline); ``neck.levels`` with one level trains a per-level neck.

Rows are numbered level-major (:class:`LevelledRows`): row ``i`` at level index ``k`` is
``k * rows_per_level + i``. The d1 feature cache holds every trained level of each crop, once: the
teacher fields once per crop and ``y_hat_l<k>`` / ``bits_l<k>`` per level index ``k`` (:func:`level_field`);
:class:`CachedLevel` reads one level's fields of a row. Changing ``neck.levels`` builds another cache.

Refused in one line (:func:`check_rate_levels`): conditioning or levels with a fixed-rate codec; levels
the codec cannot code at; scenarios d2/d3 with a variable-rate codec (they would train the codec at every
level, which needs one lambda per level: ``neckkit train-codec`` trains the codec, d1 its neck).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from neckkit.config.train import TrainConfig
from neckkit.errors import NeckkitError
from neckkit.interfaces.codec import is_variable_rate

__all__ = ["CachedLevel", "LevelledCollate", "LevelledRows", "check_rate_levels", "level_field", "resolve_levels"]


def check_rate_levels(codec: object, config: TrainConfig, label: str) -> None:
    """Refuse, in one line naming the codec (``label``), rate settings this codec or scenario cannot train."""
    neck = config.neck
    if not is_variable_rate(codec):
        if neck.conditioning != "none":
            raise NeckkitError(
                f"{label} is fixed-rate: it has no rate levels to condition the neck on (--neck-conditioning "
                f"{neck.conditioning}); use a variable-rate codec or --neck-conditioning none"
            )
        if neck.levels is not None:
            shown = ",".join(f"{level:g}" for level in neck.levels)
            raise NeckkitError(f"{label} is fixed-rate: it has no rate levels (--levels {shown}); drop --levels")
        return
    if config.scenario != "d1":
        raise NeckkitError(
            f"scenario {config.scenario} would train the variable-rate {label} at all its levels, which needs a "
            "lambda per level; train the codec with `neckkit train-codec` and its neck with --scenario d1"
        )
    for level in neck.levels or ():
        try:
            codec.check_level(level)  # type: ignore[attr-defined]
        except NeckkitError as error:
            raise NeckkitError(f"--levels: {error}") from None


def resolve_levels(config: TrainConfig, codec: object, label: str) -> TrainConfig:
    """``config`` checked (:func:`check_rate_levels`), with ``neck.levels`` set to all of a variable-rate
    codec's levels when unset; the config a run saves and resumes with."""
    check_rate_levels(codec, config, label)
    if not is_variable_rate(codec) or config.neck.levels is not None:
        return config
    every = [float(level) for level in range(codec.num_levels)]  # type: ignore[attr-defined]
    return config.with_overrides({"neck.levels": every})


def level_field(name: str, index: int) -> str:
    """The d1 cache field of ``name`` (``y_hat``, ``bits``) at level index ``index``: ``y_hat_l0``."""
    return f"{name}_l{index}"


LEVEL_FIELDS = ("y_hat", "bits")  # cached once per level; the teacher fields once per crop
_PER_LEVEL = re.compile(rf"^({'|'.join(LEVEL_FIELDS)})_l\d+$")


class CachedLevel(Dataset):
    """One level's view of a d1 cache holding every level: items as a fixed-rate cache's."""

    def __init__(self, cache: Any, index: int) -> None:
        self.cache, self.index = cache, index
        self.renamed = {level_field(name, index): name for name in LEVEL_FIELDS}
        shared = [name for name in cache.fields if not _PER_LEVEL.match(name)]  # teacher, pixels, ...
        self.fields = [*self.renamed, *shared]

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, row: int) -> dict[str, Tensor]:
        item = self.cache.row(row, self.fields)
        return {self.renamed.get(name, name): value for name, value in item.items()}


class LevelledRows(Dataset):
    """The training rows at every level: item ``k * rows_per_level + i`` is ``(per_level[k][i], levels[k])``."""

    def __init__(self, per_level: Sequence[Dataset], levels: Sequence[float]) -> None:
        if len(per_level) != len(levels) or not levels:
            raise ValueError("one row set per level")
        self.per_level, self.levels = list(per_level), [float(level) for level in levels]
        self.rows_per_level = len(per_level[0])  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.rows_per_level * len(self.levels)

    def __getitem__(self, index: int) -> tuple[Any, float]:
        k, row = divmod(index, self.rows_per_level)
        return self.per_level[k][row], self.levels[k]

    def rows_at(self, index: int, rows: Sequence[int]) -> list[int]:
        """The item numbers of ``rows`` at level index ``index``."""
        return [index * self.rows_per_level + row for row in rows]


class LevelledCollate:
    """``collate`` of the items, plus ``level`` [B] (float) of the readable ones (an unreadable image is None)."""

    def __init__(self, collate: Callable[[list[Any]], dict[str, Tensor]]) -> None:
        self.collate = collate

    def __call__(self, items: list[tuple[Any, float]]) -> dict[str, Tensor]:
        batch = self.collate([item for item, _ in items])
        batch["level"] = torch.tensor([level for item, level in items if item is not None], dtype=torch.float32)
        return batch
