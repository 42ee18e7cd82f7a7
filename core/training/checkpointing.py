"""Checkpointing a training run, and resuming it exactly.

A run folder holds ``config.yaml`` (the resolved :class:`TrainConfig`), ``metrics.jsonl``,
``checkpoints/step-XXXXXXXX/`` (every ``checkpoint_every`` steps and at the end; the last
:data:`KEEP_CHECKPOINTS` are kept), ``best/`` (lowest validation objective) and ``summary.json``.
Step checkpoints also hold the trainer state (optimiser states, loss scaler, best so far), so resuming
from the latest one continues exactly: with the batch of every step and the rate noise functions of
``(seed, step)``, a resumed CPU run ends with the same weights as an uninterrupted one. Only the main
process writes; the checkpoint format itself is :mod:`neckkit.neck.checkpoint`'s.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neckkit.checkpoint_folders import CONFIG_FILE, SUMMARY_FILE
from neckkit.config.train import TrainConfig
from neckkit.errors import NeckkitError, describe_error
from neckkit.interfaces import Codec, VisualEncoder
from neckkit.neck.checkpoint import (
    BEST_DIR,
    CHECKPOINTS_DIR,
    CheckpointMeta,
    ComponentRef,
    NeckShape,
    checkpoint_dir_name,
    latest_checkpoint,
    load_checkpoint,
    load_trainer_state,
    restore_codec_state,
    save_checkpoint,
)
from neckkit.neck.transform import TransformNeck
from neckkit.training.distributed import World

__all__ = ["BEST_DIR", "CHECKPOINTS_DIR", "CONFIG_FILE", "KEEP_CHECKPOINTS", "SUMMARY_FILE", "RunCheckpoints", "TrainParts"]

KEEP_CHECKPOINTS = 3  # step checkpoints kept besides best/


@dataclass
class TrainParts:
    """The built components and how to rebuild them (recorded in every checkpoint)."""

    codec: Codec
    encoder: VisualEncoder
    codec_ref: ComponentRef
    encoder_ref: ComponentRef


def rebuild_entropy_tables(codec: Codec, name: str = "the codec") -> None:
    """Rebuild a trained codec's CDF tables from its current weights (:meth:`Codec.update_entropy_tables`).

    Called before every save of a codec that trains (d2, d3): the saved tables are then a function of
    the saved weights alone, so a resumed run (which loads them as stored) and an uninterrupted one hold
    the same tables at every later point and end byte-identical in every tensor. A codec that cannot
    rebuild them stops the run with one line: stale tables are never saved.
    """
    try:
        with torch.no_grad():
            codec.update_entropy_tables()
    except NeckkitError:
        raise
    except Exception as error:  # a plugin's rebuild that fails: say whose, in one line
        raise NeckkitError(
            f"{name} could not rebuild its entropy-coder tables ({describe_error(error)}); "
            "refusing to save a checkpoint with stale tables"
        ) from error


class RunCheckpoints:
    """The checkpoints of one run folder: step checkpoints and ``best/`` written, the latest read back."""

    def __init__(self, run_dir: Path, config: TrainConfig, parts: TrainParts, world: World) -> None:
        self.run_dir, self.config, self.parts, self.world = Path(run_dir), config, parts, world

    def meta(self, neck: TransformNeck, step: int, metrics: dict[str, float]) -> CheckpointMeta:
        codec_ref = self.parts.codec_ref
        if self.config.scenario != "d1":  # the codec trains too: record the weights the neck now reads
            from neckkit.bitstream.codec_identity import codec_fingerprint

            codec_ref = codec_ref.model_copy(update={"fingerprint": codec_fingerprint(self.parts.codec)})
        from neckkit.loading.codec_weights import entropy_tables

        return CheckpointMeta(
            codec=codec_ref,
            codec_tables=entropy_tables(self.parts.codec),
            encoder=self.parts.encoder_ref,
            entry_layer=self.config.neck.entry_layer,
            neck=NeckShape.of_neck(neck),
            scenario=self.config.scenario,
            rate_lambda=self.config.rate_lambda if self.config.scenario != "d1" else None,
            step=step,
            epoch=self.config.epoch_of(step),
            metrics=metrics,
            config=self.config.model_dump(mode="json"),
        )

    def states(self, neck: TransformNeck) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        """The neck's weights and, where the codec trains (d2, d3), the codec's, on the CPU."""
        neck_state = {k: v.detach().cpu() for k, v in neck.state_dict().items()}
        codec_state = None
        if self.config.scenario != "d1":
            rebuild_entropy_tables(self.parts.codec, f"codec {self.parts.codec_ref.name!r}")  # tables of the saved weights
            codec_state = {k: v.detach().cpu() for k, v in self.parts.codec.state_dict().items()}
        return neck_state, codec_state

    def save(
        self,
        step: int,
        metrics: dict[str, float],
        neck: TransformNeck,
        optimizer: torch.optim.Optimizer,
        aux_optimizer: torch.optim.Optimizer | None,
        scaler: torch.amp.GradScaler,
        best: dict[str, Any],
    ) -> None:
        """Write the step checkpoint of ``step`` with everything :meth:`restore` needs; prune old ones."""
        if not self.world.is_main:
            return
        neck_state, codec_state = self.states(neck)
        trainer_state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "aux_optimizer": aux_optimizer.state_dict() if aux_optimizer else None,
            "scaler": scaler.state_dict(),
            "best": dict(best),
        }
        folder = self.run_dir / CHECKPOINTS_DIR
        save_checkpoint(folder / checkpoint_dir_name(step), self.meta(neck, step, metrics), neck_state, codec_state, trainer_state)
        steps = sorted(p for p in folder.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
        for old in steps[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)

    def save_best(self, step: int, metrics: dict[str, float], neck: TransformNeck) -> None:
        if self.world.is_main:
            neck_state, codec_state = self.states(neck)
            save_checkpoint(self.run_dir / BEST_DIR, self.meta(neck, step, metrics), neck_state, codec_state)

    def restore(
        self,
        neck: TransformNeck,
        optimizer: torch.optim.Optimizer,
        aux_optimizer: torch.optim.Optimizer | None,
        scaler: torch.amp.GradScaler,
    ) -> tuple[int, dict[str, Any]]:
        """Load the latest checkpoint of the run into these; returns the step to continue from and the best so far."""
        latest = latest_checkpoint(self.run_dir)
        if latest is None:
            raise NeckkitError(f"--resume: {self.run_dir} holds no checkpoint to resume from")
        checkpoint = load_checkpoint(latest)
        neck.load_state_dict(checkpoint.neck_state)
        restore_codec_state(self.parts.codec, checkpoint)
        state = load_trainer_state(latest)
        if state is None:
            raise NeckkitError(f"--resume: {latest} has no trainer state (trainer.pt)")
        optimizer.load_state_dict(state["optimizer"])
        if aux_optimizer is not None and state.get("aux_optimizer"):
            aux_optimizer.load_state_dict(state["aux_optimizer"])
        scaler.load_state_dict(state["scaler"])
        return int(state["step"]), dict(state.get("best") or {})
