"""The paper's numbers, in one place (Kao et al., ICLR 2025; see docs/paper.md).

Each config section's defaults are the paper's settings, so a config built with no
arguments reproduces the paper; every field says where its value comes from:
(paper) the paper or poster, (code) the authors' released code, (inferred) our reading.
Later configs (training, codecs, evaluation) compose these sections rather than
repeating literals.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from neckkit.config.base import NeckkitConfig


def _without_defaults(data: dict[str, Any], info: SerializationInfo, config: Any,
                      defaults: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the fields of ``defaults`` when all of them hold their defaults, so a config that does not
    use them is written as before they existed; ``context={"all_fields": True}`` keeps every field."""
    if (info.context or {}).get("all_fields"):
        return data
    if all(getattr(config, name) == value for name, value in defaults.items()):
        for name in defaults:
            data.pop(name, None)
    return data


class NeckConfig(NeckkitConfig):
    """Transform-neck shape (code): Linear(latent -> width), class token, positions, LN, blocks."""

    num_blocks: int = Field(1, ge=1, description="transformer blocks in the neck (code)")
    num_heads: int = Field(16, ge=1, description="attention heads, as CLIP ViT-L/14 (code)")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width / width, 1024 -> 4096 (code)")
    activation: str = Field("quick_gelu", description="MLP activation of OpenAI CLIP blocks (code)")
    entry_layer: int = Field(2, ge=0, description="encoder block the neck's tokens enter (paper ablation)")
    conditioning: Literal["none", "adaln", "film"] = Field(
        "none", description="rate conditioning of the blocks on the codec's level: adaLN-Zero, FiLM or none (neckkit)"
    )
    levels: tuple[float, ...] | None = Field(
        None, description="rate levels of a variable-rate codec the neck trains on; unset: all of them, or a "
        "fixed-rate codec (neckkit)"
    )
    level_features: int = Field(256, ge=2, description="sinusoidal features of the level embedding (DiT's 256)")

    @field_validator("levels")
    @classmethod
    def _distinct_levels(cls, levels: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if levels is None:
            return None
        if not levels or min(levels) < 0 or len(set(levels)) != len(levels):
            raise ValueError("levels must be distinct rate levels >= 0, at least one")
        return tuple(sorted(levels))

    @model_serializer(mode="wrap")
    def _omit_rate_defaults(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        """A fixed-rate, unconditioned neck is written as before these fields existed (older readers load it);
        ``context={"all_fields": True}`` writes every field (to compare two configs)."""
        return _without_defaults(handler(self), info, self, {"conditioning": "none", "levels": None, "level_features": 256})


class LossPhase(NeckkitConfig):
    """One phase of the surrogate-loss schedule: weights until ``until_epoch`` (exclusive)."""

    until_epoch: int = Field(ge=1)
    ce_weight: float = Field(ge=0)
    distillation_weight: float = Field(ge=0)


class LossScheduleConfig(NeckkitConfig):
    """Paper Eq. 4 with E1=20, E2=40 and alpha:beta = 1:100 (paper, code)."""

    phases: tuple[LossPhase, ...] = Field(
        (
            LossPhase(until_epoch=20, ce_weight=100.0, distillation_weight=0.0),
            LossPhase(until_epoch=40, ce_weight=1.0, distillation_weight=100.0),
            LossPhase(until_epoch=60, ce_weight=0.0, distillation_weight=100.0),
        ),
        description="CE and distillation weights per epoch range (paper Eq. 4)",
    )

    @model_validator(mode="after")
    def _increasing(self) -> LossScheduleConfig:
        ends = [phase.until_epoch for phase in self.phases]
        if not ends or ends != sorted(set(ends)):
            raise ValueError("phases need strictly increasing until_epoch values")
        return self

    @property
    def epochs(self) -> int:
        return self.phases[-1].until_epoch

    def phase_at(self, epoch: int) -> LossPhase:
        """The phase that applies during ``epoch`` (0-based); the last one beyond the end."""
        for phase in self.phases:
            if epoch < phase.until_epoch:
                return phase
        return self.phases[-1]


class OptimConfig(NeckkitConfig):
    """Optimiser and schedule (code): Adam, lr 1e-4, x0.1 at epoch 20, batch 32."""

    lr: float = Field(1e-4, gt=0, description="Adam learning rate (code)")
    lr_decay: float = Field(0.1, gt=0, le=1, description="factor applied at each milestone (code)")
    lr_milestones: tuple[int, ...] = Field((20,), description="epochs where lr is multiplied by lr_decay (code)")
    batch_size: int = Field(32, ge=1, description="images per step (code)")
    images_per_epoch: int = Field(
        106_763, ge=1, description="an epoch is one of 12 fixed chunks of ImageNet-1k train (code)"
    )


BUCKET_RATIOS = (1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3)  # width / height: 1:1, 4:3, 3:4, 3:2, 2:3 (neckkit)
BUCKET_MULTIPLE = 32  # Qwen3-VL's patch 16 x merge 2 (neckkit)


class DataConfig(NeckkitConfig):
    """Training crops (code): Resize(256) then CenterCrop(256), no augmentation.

    A native-resolution encoder (Qwen-VL) trains on bucket crops instead (:mod:`neckkit.training.buckets`):
    each image is cropped to the bucket of its aspect ratio, about ``crop**2`` pixels.
    """

    resize: int = Field(256, ge=1, description="short side after resizing (code)")
    crop: int = Field(256, ge=1, description="side of the centre crop; a bucket's area is about crop**2 (code)")
    preprocess: Literal["neckkit", "paper"] = Field(
        "neckkit", description="neckkit: tensor bicubic crops, clamped resizes; paper: the authors' PIL crops "
        "(bilinear to train, bicubic to evaluate), unclamped encoder resize (code)")
    bucket_ratios: tuple[float, ...] = Field(
        BUCKET_RATIOS, description="native-resolution encoders: aspect ratios (width / height) of the crop buckets "
        "(neckkit)")
    bucket_multiple: int = Field(
        BUCKET_MULTIPLE, ge=1, description="native-resolution encoders: pixel multiple of a bucket's sides when the encoder "
        "states none of its own (Qwen3-VL: patch 16 x merge 2) (neckkit)")

    @field_validator("bucket_ratios")
    @classmethod
    def _positive_ratios(cls, ratios: tuple[float, ...]) -> tuple[float, ...]:
        if not ratios or min(ratios) <= 0:
            raise ValueError("bucket_ratios must be at least one aspect ratio (width / height) > 0")
        return ratios

    @model_serializer(mode="wrap")
    def _omit_bucket_defaults(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        """The default buckets are written as before these fields existed (square encoders never read them);
        ``context={"all_fields": True}`` writes every field (to compare two configs)."""
        return _without_defaults(handler(self), info, self, {"bucket_ratios": BUCKET_RATIOS,
                                                             "bucket_multiple": BUCKET_MULTIPLE})


class ScenarioConfig(NeckkitConfig):
    """Scenarios d1/d2/d3 (paper); the d2/d3 phase-2 loss forms are (inferred)."""

    lambdas: tuple[float, ...] = Field(
        (0.004, 0.008, 0.016, 0.032), description="rate-point lambdas, one neck each (paper)"
    )
    d2_gamma: float = Field(60.0, ge=0, description="d2 weight of MSE(x, x_hat), gamma:delta = 60:1 (paper)")
    d2_delta: float = Field(1.0, ge=0, description="d2 weight of the distillation loss (paper)")
    phase2_epochs: int = Field(20, ge=0, description="d2/d3 epochs of joint training after d1's schedule (inferred)")
    phase2_lr: float = Field(1e-4, gt=0, description="d2/d3 learning rate of the joint phase (inferred)")
    distortion_scale: float = Field(
        255.0**2, gt=0, description="scale of the distortion terms, CompressAI's MSE convention (inferred)"
    )
    aux_lr: float = Field(1e-3, gt=0, description="Adam lr of the entropy bottleneck's quantiles (CompressAI)")
    joint_only: bool = Field(
        False, description="d2/d3: skip d1's schedule and train jointly from step 0, e.g. from a d1 neck (neckkit)"
    )


class ElicConfig(NeckkitConfig):
    """ELIC (He et al., CVPR 2022) as the paper uses it."""

    N: int = Field(192, ge=1, description="channels of the transforms (paper)")
    M: int = Field(320, ge=1, description="latent channels (paper)")
    groups: tuple[int, ...] = Field((16, 16, 32, 64, 192), description="uneven channel groups (paper)")


class TicConfig(NeckkitConfig):
    """TIC hyperprior variant ``TIC_hp`` (Lu et al., DCC 2022; TransTIC)."""

    N: int = Field(128, ge=1, description="channels of the transforms (code)")
    M: int = Field(192, ge=1, description="latent channels (code)")
    depths: tuple[int, ...] = Field((2, 4, 6, 2, 2, 2), description="Swin blocks per stage, analysis then hyper (code)")
    num_heads: tuple[int, ...] = Field((8, 8, 8, 16, 16, 16), description="heads per stage (code)")
    window_size: int = Field(8, ge=1, description="Swin window in the main transforms (code)")
    hyper_window_size: int = Field(4, ge=1, description="Swin window in the hyper transforms (code)")
    mlp_ratio: float = Field(2.0, gt=0, description="Swin MLP ratio (code)")
    lambdas: tuple[float, ...] = Field(
        (0.0018, 0.0035, 0.0067, 0.013), description="base-codec lambdas of qualities 1-4 (code)"
    )


class PaperFigures(NeckkitConfig):
    """Reported figures that benchmarks and tests compare against (paper, and counted by us)."""

    model_config = ConfigDict(frozen=True)

    neck_params: int = 13_191_168  # ELIC + CLIP ViT-L/14, exact count (paper: 13.19 M)
    neck_kmac_per_pixel: float = 52.795  # (paper)
    replaced_params: float = 25.78e6  # patch embedding + first two CLIP blocks (paper)
    replaced_kmac_per_pixel: float = 70.24  # (paper)
    post_processing_kmac_per_pixel: float = 1018.0  # decoder + enhancement + 2 blocks (paper, summed)
    estimated_bpp_range: tuple[float, float] = (0.05, 0.2)  # rates evaluated (paper)


PAPER_FIGURES = PaperFigures()
