"""Validation during training: the neck against the paper's *Reconstruction* baseline on held-out images.

At every checkpoint the trainer measures, on the held-out images, the neck's distillation error and
that of the Reconstruction baseline (the decoded image through the whole encoder), the cosine
similarity of the neck's embedding to the teacher's, and the rate; ``objective`` chooses ``best/``.
With a variable-rate codec they are measured at every trained level and averaged
(:func:`held_out_metrics_at_levels`), with each level's distillation and rate beside the means. The
held-out rows come in groups whose crops share one shape (one group for a square encoder, one per crop
bucket for a native-resolution encoder), so that every batch is of one shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neckkit.config.train import TrainConfig
from neckkit.interfaces import at_level
from neckkit.training.losses import distillation_loss
from neckkit.training.neck_path import NeckPath
from neckkit.training.scenarios import set_codec_training

__all__ = ["LossTerms", "ValidationSets", "held_out_metrics", "held_out_metrics_at_levels", "to_device"]

# (path outputs, labels, epoch, joint) -> (total loss, logged values): the trainer's loss of one batch
LossTerms = Callable[[dict[str, Tensor], Tensor, int, bool], tuple[Tensor, dict[str, float]]]
# (rate level, or None for a fixed-rate codec; the held-out rows in groups of one crop shape)
ValidationSets = list[tuple[float | None, list[Dataset]]]


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


@torch.no_grad()
def held_out_metrics(
    path: NeckPath,
    config: TrainConfig,
    groups: Sequence[Dataset],
    collate: Callable[[list[Any]], dict[str, Tensor]],
    joint: bool,
    *,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    losses: LossTerms,
) -> dict[str, float]:
    """Held-out distillation error of the neck and of the Reconstruction baseline, and the rate.

    Means over the readable images of every group of rows (batched group by group: each of one crop
    shape); ``{}`` when there are none. The path is left in training mode for ``joint`` (the encoder
    stays in eval mode).
    """
    path.eval()
    set_codec_training(path.codec, config, joint=False)
    sums: dict[str, float] = {}
    count = 0
    loaders = [DataLoader(rows, batch_size=config.optim.batch_size, collate_fn=collate) for rows in groups]
    for batch in (batch for loader in loaders for batch in loader):
        batch = to_device(batch, device)
        if batch["label"].numel() == 0:
            continue
        with autocast():
            out = path(batch, with_image=config.scenario == "d2")
            if "images" in batch:
                y_hat, _, padding = path.analyze(batch["images"])
            else:
                y_hat, padding = batch["y_hat"], None
            baseline = path.reconstruction(y_hat, padding).float()
        _, logs = losses(out, batch["label"], config.epochs - 1, joint)
        n = int(batch["label"].numel())
        teacher = out["teacher"].float()
        logs["reconstruction_distillation"] = float(distillation_loss(baseline, teacher))
        student = out["student"].float()  # [B, D], or a native-resolution tower's [B, T, D]
        logs["cosine"] = float(torch.nn.functional.cosine_similarity(student.flatten(1), teacher.flatten(1)).mean())
        for key, value in logs.items():
            sums[key] = sums.get(key, 0.0) + value * n
        count += n
    path.train()
    path.encoder.eval()
    set_codec_training(path.codec, config, joint=joint)
    if not count:
        return {}
    metrics = {key: value / count for key, value in sums.items()}
    metrics["objective"] = metrics["loss"] if joint else metrics["distillation"]
    return metrics


def held_out_metrics_at_levels(
    path: NeckPath,
    config: TrainConfig,
    val_sets: ValidationSets,
    collate: Callable[[list[Any]], dict[str, Tensor]],
    joint: bool,
    *,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    losses: LossTerms,
) -> dict[str, float]:
    """:func:`held_out_metrics` of each set with the codec at its level; with levels, the means over the
    levels (every held-out image counts once per level) and ``distillation_at_<level>``, ``bpp_at_<level>``."""
    per_level: list[tuple[float | None, dict[str, float]]] = []
    for level, groups in val_sets:
        with at_level(path.codec, level) if level is not None else contextlib.nullcontext():
            metrics = held_out_metrics(path, config, groups, collate, joint, device=device, autocast=autocast, losses=losses)
        if metrics:
            per_level.append((level, metrics))
    if not per_level or per_level[0][0] is None:  # a fixed-rate codec: one set
        return per_level[0][1] if per_level else {}
    mean = {key: sum(metrics[key] for _, metrics in per_level) / len(per_level) for key in per_level[0][1]}
    for level, metrics in per_level:
        mean[f"distillation_at_{level:g}"], mean[f"bpp_at_{level:g}"] = metrics["distillation"], metrics["bpp"]
    return mean
