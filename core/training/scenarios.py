"""Scenarios d1, d2, d3: which codec parameters train, and the joint phase's loss.

- d1: the codec is frozen; only the neck trains, on the surrogate loss.
- d2: after d1's schedule, codec and neck train on ``R + lambda * s * (gamma * MSE(x, x_hat) + delta * dist)``
  with gamma:delta = 60:1 normalised to sum to 1, so lambda keeps CompressAI's meaning (the paper's
  lambdas 0.004-0.032 sit in CompressAI's MSE range); the decoder stays usable for human viewing.
- d3: after d1's schedule, the codec's encoder side, its entropy model and the neck train on
  ``R + lambda * s * dist``; the synthesis transform is frozen and never runs.

``R`` is the estimated rate in bits per pixel, ``s`` is ``scenarios.distortion_scale`` (CompressAI's
255^2 convention). The phase-2 forms and ``s`` are inferred: the paper does not publish them.
The entropy bottleneck's quantiles follow CompressAI: their own optimiser and auxiliary loss.
:func:`check_codec_scenario` refuses, before training, a codec the scenario cannot train correctly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neckkit.config.train import TrainConfig
from neckkit.errors import NeckkitError
from neckkit.interfaces import Codec

QUANTILES = "quantiles"


def implements_synthesis_modules(codec: object) -> bool:
    """Whether ``codec`` names its synthesis transform (overrides ``Codec.synthesis_modules``), which d3 needs."""
    method = getattr(type(codec), "synthesis_modules", None)
    return callable(method) and method is not Codec.synthesis_modules


def check_codec_scenario(codec: object, scenario: str, label: str) -> None:
    """Refuse, in one line naming the codec (``label``), a built codec that ``scenario`` cannot train.

    d3 needs :meth:`Codec.synthesis_modules`; d2 and d3 train the codec, so its entropy-coder tables must
    be rebuildable from the trained weights (:meth:`Codec.update_entropy_tables`), never saved stale.
    """
    if scenario == "d3" and not implements_synthesis_modules(codec):
        raise NeckkitError(
            f"{label} does not implement Codec.synthesis_modules(), which scenario d3 needs (it freezes the "
            "synthesis transform); train it with d1 or d2"
        )
    if scenario == "d1" or not isinstance(codec, Codec):
        return
    if type(codec).update_entropy_tables is not Codec.update_entropy_tables:
        return  # the codec rebuilds its tables itself
    from neckkit.loading.rebuild_tables import unrebuildable_tables

    unknown = unrebuildable_tables(codec)
    if unknown:
        raise NeckkitError(
            f"{label} holds entropy-coder tables that Codec.update_entropy_tables() cannot rebuild "
            f"({', '.join(unknown)}), so {scenario}, which trains the codec, would save stale tables; "
            "override update_entropy_tables() or train it with d1"
        )


def bottlenecks(codec: Codec) -> list[nn.Module]:
    """The codec's CompressAI entropy bottlenecks (factorised priors with learned quantiles)."""
    from compressai.entropy_models import EntropyBottleneck

    return [module for module in codec.modules() if isinstance(module, EntropyBottleneck)]


def aux_parameters(codec: Codec) -> list[nn.Parameter]:
    """The bottlenecks' quantiles, trained only by the auxiliary loss."""
    return [param for name, param in codec.named_parameters() if name.endswith(QUANTILES)]


def aux_loss(codec: Codec) -> Tensor:
    """Sum of the bottlenecks' auxiliary losses (fits the quantiles used for entropy coding)."""
    losses = [module.loss() for module in bottlenecks(codec)]
    return torch.stack(losses).sum() if losses else torch.zeros(())


def codec_trainable(codec: Codec, scenario: str) -> list[nn.Parameter]:
    """Codec parameters the joint phase trains with the main optimiser (empty for d1)."""
    if scenario == "d1":
        return []
    frozen: set[int] = set()
    if scenario == "d3":
        frozen = {id(param) for module in codec.synthesis_modules() for param in module.parameters()}
    return [
        param
        for name, param in codec.named_parameters()
        if id(param) not in frozen and not name.endswith(QUANTILES)
    ]


def set_codec_training(codec: Codec, config: TrainConfig, joint: bool) -> None:
    """Freeze the codec (d1 and the d1 phase of d2/d3) or unfreeze what the joint phase trains."""
    trainable = {id(param) for param in codec_trainable(codec, config.scenario)} if joint else set()
    aux = {id(param) for param in aux_parameters(codec)} if joint else set()
    for param in codec.parameters():
        param.requires_grad_(id(param) in trainable or id(param) in aux)
    codec.train(joint)


def joint_loss(
    config: TrainConfig, bpp: Tensor, distillation: Tensor, image_mse: Tensor | None
) -> Tensor:
    """The d2/d3 phase-2 objective (see the module docstring)."""
    scale, lmbda = config.scenarios.distortion_scale, config.rate_lambda
    if config.scenario == "d2":
        if image_mse is None:
            raise ValueError("d2 needs the reconstruction's MSE")
        gamma, delta = config.scenarios.d2_gamma, config.scenarios.d2_delta
        gamma, delta = gamma / (gamma + delta), delta / (gamma + delta)
        return bpp + lmbda * scale * (gamma * image_mse + delta * distillation)
    return bpp + lmbda * scale * distillation
