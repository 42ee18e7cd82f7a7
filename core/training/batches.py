"""Which images each training step sees: a stateless plan, so resuming and torchrun are exact.

The training rows are read as an endless stream of shuffled passes (pass ``k`` is a permutation
seeded by ``(seed, k)``); step ``s`` takes items ``[s * B, (s + 1) * B)`` of that stream. The
batch of any step is therefore known without replaying earlier steps, and every rank of a
torchrun job takes its own slice of the same global batch. With a variable-rate codec the rate
level of each step is drawn the same way (:class:`LevelPlan`), from ``(seed, step)``. With crop
buckets (a native-resolution encoder, :mod:`neckkit.training.buckets`) every batch holds one bucket's
rows (:class:`BucketPlan`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Protocol

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
        return self.items(step * self.batch_size)

    def items(self, start: int) -> list[int]:
        """Items ``[start, start + B)`` of the stream of passes."""
        n = len(self.rows)
        return [self._pass(i // n)[i % n] for i in range(start, start + self.batch_size)]


class BucketPlan:
    """Global batch ``[B]`` of row indices for any step, every batch from one bucket's rows.

    Each bucket's rows are a stream of shuffled passes of their own (a :class:`BatchPlan`). An epoch of
    the plan is ``ceil(n_b / B)`` batches of every bucket ``b``, the buckets' turns shuffled by ``(seed,
    epoch)``: epoch ``e``'s ``j``-th batch of bucket ``b`` is items ``[e * n_b + j * B, ... + B)`` of its
    stream, i.e. its ``e``-th pass in batches, the last one filled from the next pass. So a step's batch is known
    without replaying earlier steps, every row is seen at least once an epoch, and buckets come up in
    proportion to their size, rounded up to whole batches. (Drawing each step's bucket at random by size
    would be as stateless but could leave a row of a small bucket unseen for many epochs.)
    """

    def __init__(self, groups: Sequence[Sequence[int]], batch_size: int, seed: int) -> None:
        groups = [list(group) for group in groups if group]
        if not groups:
            raise ValueError("no training rows")
        self.batch_size, self.seed = batch_size, seed
        self.plans = [BatchPlan(group, batch_size, seed) for group in groups]
        self.sizes = [len(group) for group in groups]
        self.per_epoch = [math.ceil(size / batch_size) for size in self.sizes]
        self.turns = [b for b, count in enumerate(self.per_epoch) for _ in range(count)]  # an epoch's buckets
        self._epochs: dict[int, list[tuple[int, int]]] = {}

    def _epoch(self, epoch: int) -> list[tuple[int, int]]:
        """(bucket, its batch number j) of every step of ``epoch``."""
        if epoch not in self._epochs:
            generator = torch.Generator().manual_seed(self.seed * 1_000_037 + epoch + 29)
            order = torch.randperm(len(self.turns), generator=generator).tolist()
            seen = [0] * len(self.plans)
            slots = []
            for b in (self.turns[k] for k in order):
                slots.append((b, seen[b]))
                seen[b] += 1
            self._epochs = {epoch: slots}
        return self._epochs[epoch]

    def bucket(self, step: int) -> int:
        """Index (among the non-empty groups) of the bucket that ``step`` trains on."""
        return self._slot(step)[0]

    def batch(self, step: int) -> list[int]:
        b, start = self._slot(step)
        return self.plans[b].items(start)

    def _slot(self, step: int) -> tuple[int, int]:
        """(bucket, first item of the batch in that bucket's stream) of ``step``."""
        epoch, position = divmod(step, len(self.turns))
        b, j = self._epoch(epoch)[position]
        return b, epoch * self.sizes[b] + j * self.batch_size


class StepPlan(Protocol):
    """What :class:`PlanSampler` reads: the global batch of any step (:class:`BatchPlan`, :class:`BucketPlan`)."""

    def batch(self, step: int) -> list[int]: ...


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

    def __init__(self, plan: StepPlan, start: int, stop: int, world: World, levels: LevelPlan | None = None) -> None:
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
