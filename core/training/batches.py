"""Which images each training step sees: a stateless plan, so resuming and torchrun are exact.

The training rows are read as an endless stream of shuffled passes (pass ``k`` is a permutation
seeded by ``(seed, k)``); step ``s`` takes items ``[s * B, (s + 1) * B)`` of that stream. The
batch of any step is therefore known without replaying earlier steps, and every rank of a
torchrun job takes its own slice of the same global batch. With a variable-rate codec the rate
level of each step is drawn the same way (:class:`LevelPlan`), from ``(seed, step)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from neckkit.training.distributed import World, split_batch


def split_rows(count: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) row indices: a seeded shuffle, at least one held-out row when possible."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    held_out = 0 if count < 2 or val_fraction <= 0 else max(1, round(count * val_fraction))
    return sorted(order[held_out:]), sorted(order[:held_out])


class BatchPlan:
    """Global batch ``[B]`` of row indices for any step."""

    def __init__(self, rows: list[int], batch_size: int, seed: int) -> None:
        if not rows:
            raise ValueError("no training rows")
        self.rows, self.batch_size, self.seed = rows, batch_size, seed
        self._passes: dict[int, list[int]] = {}

    def _pass(self, k: int) -> list[int]:
        if k not in self._passes:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
            order = torch.randperm(len(self.rows), generator=generator).tolist()
            self._passes = {j: rows for j, rows in self._passes.items() if j >= k - 1}  # a batch spans <= 2 passes
            self._passes[k] = [self.rows[i] for i in order]
        return self._passes[k]

    def batch(self, step: int) -> list[int]:
        n = len(self.rows)
        start = step * self.batch_size
        return [self._pass(i // n)[i % n] for i in range(start, start + self.batch_size)]


class LevelPlan:
    """The rate level of every step (one per batch), a function of ``(seed, step)`` like the batches.

    Rows are numbered level-major (:class:`~neckkit.training.rate_levels.LevelledRows`): row ``i`` at
    level index ``k`` is ``k * rows_per_level + i``, so a step's rows move by :meth:`offset`.
    """

    def __init__(self, num_levels: int, rows_per_level: int, seed: int) -> None:
        self.num_levels, self.rows_per_level, self.seed = num_levels, rows_per_level, seed

    def index(self, step: int) -> int:
        """Index of the level that ``step`` trains at, uniform over the levels."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_033 + step + 17)
        return int(torch.randint(self.num_levels, (1,), generator=generator))

    def offset(self, step: int) -> int:
        return self.index(step) * self.rows_per_level


class PlanSampler(Sampler[list[int]]):
    """Batches of this rank for steps ``start .. stop - 1`` (a DataLoader ``batch_sampler``).

    With ``levels`` every batch is the step's rows at the step's rate level.
    """

    def __init__(self, plan: BatchPlan, start: int, stop: int, world: World, levels: LevelPlan | None = None) -> None:
        self.plan, self.start, self.stop, self.world, self.levels = plan, start, stop, world, levels

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            rows = self.plan.batch(step)
            if self.levels is not None:
                offset = self.levels.offset(step)
                rows = [offset + row for row in rows]
            yield split_batch(self.world, rows)
