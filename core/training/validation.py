"""Validation during training: the neck against the paper's *Reconstruction* baseline on held-out images.

At every checkpoint the trainer measures, on the held-out images, the neck's distillation error and
that of the Reconstruction baseline (the decoded image through the whole encoder), the cosine
similarity of the neck's embedding to the teacher's, and the rate; ``objective`` chooses ``best/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neckkit.config.train import TrainConfig
from neckkit.training.losses import distillation_loss
from neckkit.training.neck_path import NeckPath
from neckkit.training.scenarios import set_codec_training

__all__ = ["LossTerms", "held_out_metrics", "to_device"]

# (path outputs, labels, epoch, joint) -> (total loss, logged values): the trainer's loss of one batch
LossTerms = Callable[[dict[str, Tensor], Tensor, int, bool], tuple[Tensor, dict[str, float]]]


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


@torch.no_grad()
def held_out_metrics(
    path: NeckPath,
    config: TrainConfig,
    rows: Dataset,
    collate: Callable[[list[Any]], dict[str, Tensor]],
    joint: bool,
    *,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    losses: LossTerms,
) -> dict[str, float]:
    """Held-out distillation error of the neck and of the Reconstruction baseline, and the rate.

    Means over the readable images of ``rows``; ``{}`` when there are none. The path is left in
    training mode for ``joint`` (the encoder stays in eval mode).
    """
    path.eval()
    set_codec_training(path.codec, config, joint=False)
    sums: dict[str, float] = {}
    count = 0
    loader = DataLoader(rows, batch_size=config.optim.batch_size, collate_fn=collate)
    for batch in loader:
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
        logs["cosine"] = float(torch.nn.functional.cosine_similarity(out["student"].float(), teacher).mean())
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
