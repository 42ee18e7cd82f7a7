"""Fine-tuning a variable-rate codec (``neckkit train-codec``): the rate-distortion loop over random levels.

Each step draws one rate level ``s`` and trains the whole batch at it on ``R + lambda_s * 255^2 * MSE``
(:mod:`neckkit.training.codec_loss`); the entropy bottlenecks' quantiles train on CompressAI's auxiliary
loss with their own optimiser. Crops come from :mod:`neckkit.training.codec_data`, the run folder from
:mod:`neckkit.training.codec_checkpoints`, the closing per-level evaluation from
:mod:`neckkit.training.codec_levels`. Exact resume: the batch, crops and level of a step and its rate
noise are functions of ``(seed, step)``, and a checkpoint holds both optimisers' states.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from neckkit.checkpoint_folders import CONFIG_FILE, SUMMARY_FILE
from neckkit.config.codec_train import CodecTrainConfig
from neckkit.errors import NeckkitError
from neckkit.files import atomic_path
from neckkit.interfaces.codec import VariableRateCodec, is_variable_rate
from neckkit.training.batches import BatchPlan, split_rows
from neckkit.training.codec_checkpoints import (
    CODEC_FILE,
    LEVELS_FILE,
    CodecCheckpointMeta,
    data_key,
    load_codec_checkpoint,
    restore_rng_states,
    rng_states,
    save_codec_checkpoint,
)
from neckkit.training.codec_data import CropSampler, RandomCrops, crops_batch
from neckkit.training.codec_levels import evaluate_levels, psnr
from neckkit.training.codec_loss import LevelSampler, RateDistortion, codec_aux_loss
from neckkit.training.distributed import World, barrier, mean_across
from neckkit.training.metrics_log import MetricsLog
from neckkit.training.scenarios import QUANTILES, aux_parameters

if TYPE_CHECKING:
    from neckkit.training.trainer import Echo, Stage

__all__ = ["CodecTrainResult", "CodecTrainer", "check_trainable"]



def check_trainable(codec: object, name: str, config: CodecTrainConfig) -> VariableRateCodec:
    """``codec`` if train-codec can fine-tune it with ``config``, else one NeckkitError line saying why not."""
    if not is_variable_rate(codec):
        raise NeckkitError(
            f"codec {name!r} is fixed-rate (one rate per set of weights): train-codec fine-tunes a variable-rate "
            "codec, one with rate levels (see the variable-rate codecs in neckkit list-plugins)"
        )
    assert isinstance(codec, VariableRateCodec)
    if len(config.lambdas) != codec.num_levels:
        raise NeckkitError(
            f"{len(config.lambdas)} lambdas given but codec {name!r} has {codec.num_levels} rate levels: "
            "pass one lambda per level, level 0 (fewest bits) first (--lambdas)"
        )
    if config.crop % codec.pad_multiple:
        raise NeckkitError(
            f"crop {config.crop} is not a multiple of {codec.pad_multiple}, which codec {name!r} needs (--crop)"
        )
    if type(codec).update_entropy_tables is VariableRateCodec.update_entropy_tables:
        from neckkit.loading.rebuild_tables import unrebuildable_tables

        unknown = unrebuildable_tables(codec)
        if unknown:
            raise NeckkitError(
                f"codec {name!r} holds entropy-coder tables that Codec.update_entropy_tables() cannot rebuild "
                f"({', '.join(unknown)}), so its checkpoints would carry stale tables; override update_entropy_tables()"
            )
    return codec


@dataclass
class CodecTrainResult:
    """What a finished run reports (also ``summary.json``); ``levels`` is ``levels.json``'s rows."""

    run_dir: Path
    steps: int
    summary: dict[str, Any] = field(default_factory=dict)
    levels: list[dict[str, Any]] = field(default_factory=list)


def _no_stage(_description: str) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


def _ignore(_text: str) -> None:
    return None


def _atomic_json(path: Path, data: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


class CodecTrainer:
    """Fine-tunes ``codec`` (registered as ``name`` with factory ``options``) on the images ``paths`` into ``run_dir``.

    ``eval_paths``: the images of the closing per-level evaluation (default: the held-out share of ``paths``);
    ``stage(text)``: a context manager showing what a long silent stretch does (the CLI's spinner).
    """

    def __init__(
        self,
        config: CodecTrainConfig,
        codec: VariableRateCodec,
        name: str,
        options: dict[str, Any],
        paths: list[Path],
        run_dir: Path,
        eval_paths: list[Path] | None = None,
        world: World | None = None,
        device: torch.device | None = None,
        echo: Echo = print,
        progress: bool = True,
        stage: Stage | None = None,
    ) -> None:
        self.config, self.name, self.options, self.run_dir = config, name, options, Path(run_dir)
        self.codec = check_trainable(codec, name, config)
        self.world = world or World()
        self.device = device or torch.device("cpu")
        self.echo = echo if self.world.is_main else (lambda _text: None)
        self.progress = progress and self.world.is_main
        self.stage = stage if stage is not None and self.world.is_main else _no_stage
        self.paths = list(paths)
        self.train_rows, val_rows = split_rows(len(self.paths), config.val_fraction, config.seed)
        if not self.train_rows:
            raise NeckkitError("the data hold too few images to train on")
        held_out = [self.paths[i] for i in val_rows or self.train_rows]  # the training images when none is held out
        self.eval_paths = list(eval_paths) if eval_paths is not None else held_out
        self.levels = LevelSampler(self.codec.num_levels, config.seed)
        self.codec.to(self.device).train()
        for param in self.codec.parameters():
            param.requires_grad_(True)
        main = [param for pname, param in self.codec.named_parameters() if not pname.endswith(QUANTILES)]
        self.optimizer = torch.optim.Adam(main, lr=config.lr)
        aux = aux_parameters(self.codec)
        self.aux_optimizer = torch.optim.Adam(aux, lr=config.aux_lr) if aux else None
        self.data_key = data_key(self.paths)

    # -- checkpoints -----------------------------------------------------------------------------
    def _meta(self, step: int) -> CodecCheckpointMeta:
        from neckkit.bitstream.codec_identity import codec_fingerprint

        return CodecCheckpointMeta(
            codec=self.name, options=self.options, fingerprint=codec_fingerprint(self.codec), step=step,
            levels=self.codec.num_levels, lambdas=self.config.lambdas, data=self.data_key,
            config=self.config.model_dump(mode="json"),
        )

    def _save(self, step: int) -> None:
        if not self.world.is_main:
            return
        state = {
            "step": step,
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict() if self.aux_optimizer else None,
            "rng": rng_states(),
            "level_sampler": self.levels.state_dict(),
            "data_order": {"seed": self.config.seed, "batch_size": self.config.batch_size, "rows": self.train_rows},
        }
        save_codec_checkpoint(self.run_dir, self.codec, self._meta(step), state)

    def _restore(self) -> int:
        """Load the run's latest checkpoint into the codec and optimisers; returns its step."""
        from neckkit.neck.checkpoint import load_codec_weights

        meta, state, trainer, folder = load_codec_checkpoint(self.run_dir)
        if meta.codec != self.name:
            raise NeckkitError(f"--resume: {self.run_dir} trains codec {meta.codec!r}, not {self.name!r}")
        if meta.data != self.data_key:
            raise NeckkitError(
                f"--resume: the images differ from those {self.run_dir} trained on, so the run could not continue "
                "exactly; resume with the same --data"
            )
        load_codec_weights(self.codec, state, str(folder / CODEC_FILE))  # its stored tables, as saved
        self.optimizer.load_state_dict(trainer["optimizer"])
        if self.aux_optimizer is not None and trainer.get("aux_optimizer"):
            self.aux_optimizer.load_state_dict(trainer["aux_optimizer"])
        restore_rng_states(trainer["rng"])
        self.echo(f"Resuming {self.run_dir} from step {meta.step}")
        return int(trainer["step"])

    # -- one step --------------------------------------------------------------------------------
    def _step(self, model: nn.Module, images: Tensor, step: int) -> dict[str, float]:
        config = self.config
        level = self.levels.level(step)
        rate_lambda = config.lambdas[level]
        torch.manual_seed(config.seed * 7_919 + step * 104_729 + self.world.rank)  # rate noise, per step
        self.optimizer.zero_grad(set_to_none=True)
        if self.aux_optimizer is not None:
            self.aux_optimizer.zero_grad(set_to_none=True)
        loss, bpp, mse = model(images, level, rate_lambda)
        loss.backward()
        logs = {"level": level, "lambda": rate_lambda}
        if config.grad_clip is not None:
            params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip))
        self.optimizer.step()
        if self.aux_optimizer is not None:
            aux = codec_aux_loss(self.codec)
            aux.backward()
            self.aux_optimizer.step()
            logs["aux_loss"] = float(aux.detach())
        mse_value = float(mse.detach())
        logs.update(loss=float(loss.detach()), bpp=float(bpp.detach()), mse=mse_value, psnr=psnr(mse_value))
        return logs

    def _model(self) -> nn.Module:
        model = RateDistortion(self.codec, self.config.distortion_scale)
        if not self.world.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        from neckkit.loading.codec_weights import CODER_TABLES

        # DDP leaves out the quantiles (the aux loss, the same on every rank, trains them outside its forward)
        # and the coder tables (every rank rebuilds the same ones); levels not drawn leave gains unused.
        ignored = [name for name, _ in model.named_parameters() if name.endswith(QUANTILES)]
        ignored += [name for name, _ in model.named_buffers() if name.endswith(CODER_TABLES)]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)

    # -- the loop --------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> CodecTrainResult:
        """Train (or, with ``resume``, continue) to ``config.steps``, then evaluate every level."""
        from neckkit.training.data import usable_workers
        from neckkit.training.trainer import step_progress_bar

        config, run_dir = self.config, self.run_dir
        start_time = time.perf_counter()
        start = self._restore() if resume else 0
        if self.world.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            config.save(run_dir / CONFIG_FILE)
        total = config.steps
        plan = BatchPlan(self.train_rows, config.batch_size, config.seed)
        crops = RandomCrops(self.paths, config.crop, config.seed)
        loader = DataLoader(
            crops, batch_sampler=CropSampler(plan, start, total, self.world), collate_fn=crops_batch,
            num_workers=usable_workers(config.num_workers),
        )
        log = MetricsLog(run_dir, resume_step=start if resume else None) if self.world.is_main else None
        self.echo(
            f"Training {self.name} ({sum(p.numel() for p in self.codec.parameters()):,} parameters) at "
            f"{self.codec.num_levels} rate levels (lambdas {', '.join(f'{v:g}' for v in config.lambdas)}): steps "
            f"{start}..{total}, {len(self.train_rows)} training and {len(self.eval_paths)} evaluation images, "
            f"device {self.device}"
        )
        model = self._model()
        step, steps_done, first_loss, last_loss = start, 0, None, None
        bar = step_progress_bar(total, start) if self.progress and start < total else None
        tick, saving = time.perf_counter(), 0.0
        try:
            for batch in loader:
                images = batch["images"]
                if images.numel() == 0:
                    raise NeckkitError(f"every image of step {step} was unreadable")
                logs = mean_across(self.world, self._step(model, images.to(self.device), step))
                step += 1
                steps_done += 1
                last_loss = logs["loss"]
                first_loss = last_loss if first_loss is None else first_loss
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        level=int(logs["level"]), loss=f"{logs['loss']:.4g}", bpp=f"{logs['bpp']:.3f}", psnr=f"{logs['psnr']:.2f}"
                    )
                if log is not None and (step % config.log_every == 0 or step == total):
                    log.log(step, "train", {**logs, "level": int(logs["level"])})
                if step % config.checkpoint_every == 0 or step == total:
                    before = time.perf_counter()
                    self._save(step)
                    barrier(self.world)
                    saving += time.perf_counter() - before
        finally:
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
        train_seconds = time.perf_counter() - tick - saving  # checkpoints not counted
        levels: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        if self.world.is_main:
            description = f"evaluating {len(config.lambdas)} levels on {len(self.eval_paths)} images"
            with self.stage(description) as relabel:
                levels = evaluate_levels(
                    self.codec, self.eval_paths, config.lambdas, config.eval_crop, self.device, tick=relabel or _ignore
                )
            images = [str(path) for path in self.eval_paths]
            _atomic_json(run_dir / LEVELS_FILE, {"codec": self.name, "step": step, "images": images, "levels": levels})
            summary = {
                "codec": self.name,
                "steps": step,
                "steps_this_run": steps_done,
                "train_seconds": round(train_seconds, 3),
                "wall_seconds": round(time.perf_counter() - start_time, 3),
                "first_loss": first_loss,
                "last_loss": last_loss,
                "skipped_images": len(crops.skipped),
            }
            _atomic_json(run_dir / SUMMARY_FILE, summary)
        barrier(self.world)
        return CodecTrainResult(run_dir=run_dir, steps=step, summary=summary, levels=levels)
