"""The training config: the paper's sections (see :mod:`neckkit.config.paper`) plus the trainer's own knobs.

``TrainConfig()`` with no arguments is the paper's d1 run (ImageNet, batch 32, 60 epochs of
106,763 images). :data:`QUICK_START` is the small schedule ``neckkit train --tiny`` applies so the
bundled photos train in seconds on a CPU.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from neckkit.config.base import NeckkitConfig
from neckkit.config.paper import DataConfig, LossScheduleConfig, NeckConfig, OptimConfig, ScenarioConfig

Scenario = Literal["d1", "d2", "d3"]
SCENARIOS: tuple[str, ...] = ("d1", "d2", "d3")


MAX_WORKERS = 64  # a config asking for more is a typo; a run also caps it at the machine's cores


class TokenDistillationConfig(NeckkitConfig):
    """Optional token-level distillation (neckkit): MSE of the tokens entering block ``layer``."""

    layer: int | None = Field(None, ge=0, description="encoder block whose input tokens are matched; off when unset")
    weight: float = Field(1.0, ge=0, description="weight of the token term, added to the surrogate loss")


class TrainConfig(NeckkitConfig):
    """Everything ``neckkit train`` reads; saved beside every checkpoint."""

    scenario: Scenario = Field("d1", description="d1: neck only; d2: codec + neck for humans and machines; d3: machines")
    rate_lambda: float = Field(
        ScenarioConfig().lambdas[0], gt=0, description="d2/d3 rate-distortion trade-off (paper presets: scenarios.lambdas)"
    )
    neck: NeckConfig = NeckConfig()
    loss: LossScheduleConfig = LossScheduleConfig()
    optim: OptimConfig = OptimConfig()
    data: DataConfig = DataConfig()
    scenarios: ScenarioConfig = ScenarioConfig()
    token_distillation: TokenDistillationConfig = TokenDistillationConfig()
    seed: int = Field(0, description="seeds the neck's init, the data order and the rate noise (neckkit)")
    val_fraction: float = Field(0.01, ge=0, lt=1, description="held-out share of the data, at least one image (neckkit)")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (neckkit)")
    checkpoint_every: int = Field(1000, ge=1, description="steps between checkpoints and validations (neckkit)")
    log_every: int = Field(10, ge=1, description="steps between metrics lines (neckkit)")
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm; off when unset (the paper does not clip)")
    amp: bool = Field(True, description="mixed precision and half-precision frozen parts, on GPU only (code)")
    cache: bool = Field(True, description="d1: train from cached latents and teacher embeddings (neckkit)")
    num_workers: int = Field(
        2, ge=0, le=MAX_WORKERS, description=f"data-loading processes, at most {MAX_WORKERS}; runs use at most one per core (neckkit)"
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.optim.batch_size > self.optim.images_per_epoch:
            raise ValueError("optim.batch_size is larger than optim.images_per_epoch")
        return self

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.optim.images_per_epoch // self.optim.batch_size)

    @property
    def joint_epochs(self) -> int:
        """Epochs of the codec-training phase (d2/d3 only)."""
        return 0 if self.scenario == "d1" else self.scenarios.phase2_epochs

    @property
    def neck_epochs(self) -> int:
        """Epochs of d1's schedule (the codec frozen): all of d1, the first phase of d2/d3."""
        return 0 if self.scenario != "d1" and self.scenarios.joint_only else self.loss.epochs

    @property
    def epochs(self) -> int:
        return self.neck_epochs + self.joint_epochs

    @property
    def total_steps(self) -> int:
        steps = self.epochs * self.steps_per_epoch
        return min(steps, self.max_steps) if self.max_steps is not None else steps

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def is_joint(self, epoch: int) -> bool:
        """True in the d2/d3 phase that trains the codec with the neck."""
        return self.scenario != "d1" and epoch >= self.neck_epochs

    def lr_at(self, epoch: int) -> float:
        """Step schedule: lr x decay at each milestone (d1 phase), phase2_lr in the joint phase."""
        if self.is_joint(epoch):
            return self.scenarios.phase2_lr
        passed = sum(1 for milestone in self.optim.lr_milestones if epoch >= milestone)
        return self.optim.lr * math.pow(self.optim.lr_decay, passed)


# ``neckkit train --tiny``: a few seconds of training on the bundled photos (neckkit's choice).
QUICK_START: dict[str, object] = {
    # The tiny encoders are 32 wide with 2 heads (head dim 16); the paper's 16 heads would leave the
    # neck a head dim of 2, whose 577x577 attention maps cost more than the whole tiny encoder.
    "neck.num_heads": 2,
    "optim.batch_size": 4,
    "optim.images_per_epoch": 8,
    "optim.lr": 1e-3,
    "optim.lr_milestones": [16],
    "loss.phases": [
        {"until_epoch": 4, "ce_weight": 100.0, "distillation_weight": 0.0},
        {"until_epoch": 8, "ce_weight": 1.0, "distillation_weight": 100.0},
        {"until_epoch": 20, "ce_weight": 0.0, "distillation_weight": 100.0},
    ],
    "scenarios.phase2_epochs": 10,
    "val_fraction": 0.25,
    "checkpoint_every": 10,
    "log_every": 2,
    "num_workers": 0,
}
