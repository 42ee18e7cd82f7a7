"""The config of ``neckkit train-codec``: fine-tuning a variable-rate codec from a fixed-rate checkpoint.

Defaults follow CompressAI's ``examples/train.py`` (Adam lr 1e-4, aux lr 1e-3, batch 16, 256x256 random
crops, gradient norm clipped at 1.0) and QVRF's lambda set (:class:`~neckkit.config.variable_rate.VariableRateConfig`);
the distortion scale is the scenarios' 255^2 (:class:`~neckkit.config.paper.ScenarioConfig`). The schedule
length and the evaluation settings are neckkit's choice. :data:`CODEC_QUICK_START` is what ``--tiny``
applies so the bundled photos train in seconds on a CPU.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from neckkit.config.base import NeckkitConfig
from neckkit.config.paper import ScenarioConfig
from neckkit.config.train import MAX_WORKERS
from neckkit.config.variable_rate import VariableRateConfig, check_lambdas

__all__ = ["CODEC_QUICK_START", "CODEC_RESUMABLE_KEYS", "CodecTrainConfig"]

_SCENARIOS = ScenarioConfig()


class CodecTrainConfig(NeckkitConfig):
    """Everything ``neckkit train-codec`` reads; saved as the run's ``config.yaml``."""

    lambdas: tuple[float, ...] = Field(
        VariableRateConfig().lambdas, min_length=1,
        description="rate-distortion lambda of each level, level 0 (fewest bits) first (QVRF)",
    )
    steps: int = Field(100_000, ge=1, description="training steps (neckkit)")
    batch_size: int = Field(16, ge=1, description="images per step, over all processes (CompressAI)")
    crop: int = Field(256, ge=1, description="side of the random square training crops (CompressAI)")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate of the codec (CompressAI)")
    aux_lr: float = Field(_SCENARIOS.aux_lr, gt=0, description="Adam lr of the entropy bottlenecks' quantiles (CompressAI)")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm; off when unset (CompressAI)")
    distortion_scale: float = Field(
        _SCENARIOS.distortion_scale, gt=0, description="MSE scale in R + lambda * scale * MSE, CompressAI's 255^2"
    )
    seed: int = Field(0, description="seeds the data order, the crops, the level of each step and the rate noise")
    val_fraction: float = Field(0.01, ge=0, lt=1, description="held-out share of --data for the per-level evaluation")
    eval_crop: int | None = Field(None, ge=1, description="centre crop of the evaluation images; whole images when unset")
    checkpoint_every: int = Field(1000, ge=1, description="steps between checkpoints (neckkit)")
    log_every: int = Field(10, ge=1, description="steps between metrics lines (neckkit)")
    num_workers: int = Field(2, ge=0, le=MAX_WORKERS, description="data-loading processes, at most one per core")

    @field_validator("lambdas")
    @classmethod
    def _increasing(cls, lambdas: tuple[float, ...]) -> tuple[float, ...]:
        return check_lambdas(lambdas)


# May differ when resuming: they change neither the weights nor the batches of the steps trained so far.
CODEC_RESUMABLE_KEYS = ("steps", "num_workers", "log_every", "checkpoint_every", "eval_crop")

# ``neckkit train-codec --tiny``: seconds on the bundled photos (neckkit's choice).
CODEC_QUICK_START: dict[str, object] = {
    "steps": 40,
    "batch_size": 4,
    "crop": 64,
    "lr": 1e-3,
    "val_fraction": 0.25,
    "eval_crop": 64,
    "checkpoint_every": 10,
    "log_every": 1,
    "num_workers": 0,
}
