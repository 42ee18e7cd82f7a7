"""The transform-neck trainer, generic over codec and encoder plugins: the training loop.

:class:`Trainer` builds the neck, the optimisers and the training rows (the d1 feature cache or the
images), then runs the steps of every stage (neck only, then joint for d2/d3). With a variable-rate
codec every step codes at one of ``neck.levels`` (:mod:`neckkit.training.rate_levels`). With a
native-resolution encoder the crops come in buckets of one shape each (:mod:`neckkit.training.buckets`):
every batch, held-out ones too, is of one bucket, and the d1 cache has a folder per bucket. The run folder and
exact resume are :mod:`neckkit.training.checkpointing`'s, the held-out metrics at every checkpoint
:mod:`neckkit.training.validation`'s; their names (``TrainParts``, ``CONFIG_FILE``, ...) stay
importable from here.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from neckkit.config.train import TrainConfig
from neckkit.errors import NeckkitError
from neckkit.files import atomic_path
from neckkit.loading.weights import seeded_init, state_dict_mismatches
from neckkit.neck.conditioning import is_conditioning_key
from neckkit.neck.transform import TransformNeck
from neckkit.training.batches import BatchPlan, BucketPlan, LevelPlan, PlanSampler, StepPlan, split_rows
from neckkit.training.buckets import Shape, bucket_shapes, rows_by_bucket, with_buckets
from neckkit.training.checkpointing import (
    BEST_DIR,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    KEEP_CHECKPOINTS,
    SUMMARY_FILE,
    RunCheckpoints,
    TrainParts,
)
from neckkit.training.data import ImageSet, collate_readable, usable_workers
from neckkit.training.distributed import World, barrier, mean_across
from neckkit.training.losses import SurrogateLoss, distillation_loss
from neckkit.training.metrics_log import MetricsLog
from neckkit.training.neck_path import NeckPath
from neckkit.training.rate_levels import resolve_levels
from neckkit.training.scenarios import (
    aux_loss,
    aux_parameters,
    check_codec_scenario,
    codec_trainable,
    joint_loss,
    set_codec_training,
)
from neckkit.training.validation import ValidationSets, held_out_metrics_at_levels, to_device

__all__ = [
    "BEST_DIR", "CHECKPOINTS_DIR", "CONFIG_FILE", "KEEP_CHECKPOINTS", "SUMMARY_FILE",
    "Echo", "Stage", "TrainParts", "TrainResult", "Trainer",
]

Echo = Callable[[str], None]
Stage = Callable[[str], contextlib.AbstractContextManager[Any]]  # labels a silent stretch, e.g. as a spinner


def _no_stage(_description: str) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


@dataclass
class TrainResult:
    """What a finished run reports (also written to ``summary.json``)."""

    run_dir: Path
    steps: int
    summary: dict[str, Any] = field(default_factory=dict)


def _collate_images(items: list[Any]) -> dict[str, Tensor]:
    images, labels, skipped = collate_readable(items)
    return {"images": images, "label": labels, "skipped": torch.tensor(skipped)}


def _value(tensor: Tensor) -> float:
    return float(tensor.detach())


def _atomic_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2), encoding="utf-8")


class Trainer:
    """Trains a neck between ``parts.codec`` and ``parts.encoder`` on ``data`` into ``run_dir``."""

    def __init__(
        self,
        config: TrainConfig,
        parts: TrainParts,
        data: ImageSet,
        run_dir: Path,
        world: World | None = None,
        device: torch.device | None = None,
        echo: Echo = print,
        progress: bool = True,
        init_neck: dict[str, Tensor] | None = None,
        stage: Stage = _no_stage,
    ) -> None:
        config = resolve_levels(config, parts.codec, f"codec {parts.codec_ref.name!r}")  # before the neck: its config
        self.config, self.parts, self.data, self.run_dir = config, parts, data, Path(run_dir)
        self.world = world or World()
        self.device = device or torch.device("cpu")
        self.echo = echo if self.world.is_main else (lambda _text: None)
        self.progress = progress and self.world.is_main
        self.stage = stage if self.world.is_main else _no_stage  # what a long set-up step is doing (the CLI's spinner)
        check_codec_scenario(parts.codec, config.scenario, f"codec {parts.codec_ref.name!r}")
        entry = config.neck.entry_layer
        encoder = parts.encoder
        if not 0 <= entry <= encoder.num_layers:
            raise NeckkitError(f"neck.entry_layer must be in 0..{encoder.num_layers} for this encoder, got {entry}")
        token_layer = config.token_distillation.layer
        if token_layer is not None and not entry <= token_layer <= encoder.num_layers:
            raise NeckkitError(f"token_distillation.layer must be in {entry}..{encoder.num_layers}, got {token_layer}")
        if encoder.native_resolution and config.data.preprocess == "paper":
            raise NeckkitError(
                f"encoder {parts.encoder_ref.name!r} reads images at native resolution and trains on neckkit's "
                "bucket crops; --preprocess paper makes the authors' square crops: drop it"
            )
        with seeded_init(config.seed):
            neck = TransformNeck.for_pair(parts.codec, encoder, config.neck)
        if init_neck is not None:  # --init: start from a trained neck (e.g. d1's for d2/d3)
            # An unconditioned neck may start a conditioned one: its zero-initialised modulation stays as it is.
            own = {key: value for key, value in neck.state_dict().items()
                   if key in init_neck or not is_conditioning_key(key)}
            problems = state_dict_mismatches(own, init_neck, reference="this run's neck has")
            if problems:
                raise NeckkitError(f"--init: the checkpoint's neck does not fit this run's neck: {'; '.join(problems)}")
            neck.load_state_dict(init_neck, strict=False)
        encoder.eval().requires_grad_(False)
        self.path = NeckPath(parts.codec, neck, encoder, entry, token_layer).to(self.device)
        self.use_amp = config.amp and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        if self.use_amp:
            encoder.to(self.amp_dtype)  # frozen: half precision
        self.loss = SurrogateLoss(config.loss)
        self.classifier: Tensor | None = None
        self.optimizer = torch.optim.Adam(
            [
                {"params": list(neck.parameters()), "name": "neck"},
                {"params": codec_trainable(parts.codec, config.scenario), "name": "codec"},
            ],
            lr=config.optim.lr,
        )
        aux = aux_parameters(parts.codec) if config.scenario != "d1" else []
        self.aux_optimizer = torch.optim.Adam(aux, lr=config.scenarios.aux_lr) if aux else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.best: dict[str, Any] = {}
        self.cache_info: dict[str, Any] = {}
        self.row_shapes: list[Shape] | None = None  # crop (H, W) of each training row: native resolution only
        self.checkpoints = RunCheckpoints(self.run_dir, config, parts, self.world)

    # -- set-up ----------------------------------------------------------------------------------
    @property
    def neck(self) -> TransformNeck:
        return self.path.neck

    @property
    def levels(self) -> tuple[float, ...] | None:
        """The rate levels the run trains at (None: a fixed-rate codec)."""
        return self.config.neck.levels

    def _rows(self) -> tuple[Dataset, Callable[[list[Any]], dict[str, Tensor]]]:
        """The indexable training rows (the d1 feature cache, or the images themselves), at every level."""
        rows, collate = self._image_rows()
        if self.levels is None:
            return rows, collate
        from neckkit.training.feature_cache import BucketCaches, FeatureCache
        from neckkit.training.rate_levels import CachedLevel, LevelledCollate, LevelledRows

        cached = isinstance(rows, FeatureCache | BucketCaches)
        per_level = [CachedLevel(rows, k) if cached else rows for k in range(len(self.levels))]
        return LevelledRows(per_level, self.levels), LevelledCollate(collate)

    def _image_rows(self) -> tuple[Dataset, Callable[[list[Any]], dict[str, Tensor]]]:
        """One row per image: the d1 feature cache (every level of each crop), or the images themselves.

        With a native-resolution encoder the images are bucket crops and the cache is one per bucket;
        ``row_shapes`` then says each row's bucket.
        """
        data = self._bucketed() if self.parts.encoder.native_resolution else self.data
        if self.config.scenario != "d1" or not self.config.cache:
            self.row_shapes = data.crop_shapes
            return data, _collate_images
        return self._cached_rows(data), default_collate

    def _bucketed(self) -> ImageSet:
        """The images as bucket crops (:func:`~neckkit.training.buckets.with_buckets`), unreadable ones said."""
        data = self.data
        shapes, before = bucket_shapes(self.parts.encoder, self.config.data), len(data.skipped)
        with self.stage(f"reading the sizes of {len(data.paths)} images for the crop buckets"):
            bucketed = with_buckets(data, shapes)
        unreadable = data.skipped[before:]
        if not len(bucketed):
            raise NeckkitError(f"none of the {len(data)} images is readable, e.g. {unreadable[0]}")
        if unreadable:
            self.echo(f"Skipped {len(unreadable)} unreadable files, e.g. {unreadable[0]}")
        return bucketed

    def _cached_rows(self, data: ImageSet) -> Dataset:
        """The d1 feature cache of ``data``: one :class:`FeatureCache`, or with buckets one per bucket read as
        one :class:`BucketCaches` (rows bucket by bucket, as ``data``'s)."""
        from neckkit.training.feature_cache import BucketCaches, FeatureCache, data_fingerprint, default_cache_root

        config = self.config
        if data.crop_shapes is None:
            subsets: list[tuple[Shape | None, ImageSet]] = [(None, data)]
        else:
            grouped = rows_by_bucket(range(len(data)), data.crop_shapes)
            subsets = [(shape, data.subset(indices)) for shape, indices in grouped.items()]
        with self.stage(f"fingerprinting {len(data.paths)} images for the feature cache"):
            keys = [self.cache_key(data_fingerprint(part.paths, part.config), shape) for shape, part in subsets]
        set_codec_training(self.parts.codec, config, joint=False)

        def compute(images: Tensor) -> dict[str, Tensor]:
            with self._autocast():
                fields = self.path.cache_fields(images.to(self.device), self.levels)
            return {name: value.float().cpu() if value.is_floating_point() else value.cpu() for name, value in fields.items()}

        def build() -> list[FeatureCache]:
            return [
                FeatureCache.open_or_build(
                    default_cache_root(), key, part, compute, batch_size=config.optim.batch_size, progress=self.progress
                )
                for key, (_, part) in zip(keys, subsets, strict=True)
            ]

        if self.world.is_main:
            caches = build()
        barrier(self.world)
        if not self.world.is_main:
            caches = build()
        for (shape, _), cache in zip(subsets, caches, strict=True):
            of = f" of crop bucket {shape[1]}x{shape[0]}" if shape is not None else ""
            if cache.built:
                self.echo(f"Cached latents and teacher embeddings of {len(cache)} images{of} in {cache.build_seconds:.1f} s: {cache.root}")
            else:
                self.echo(f"Reusing the feature cache{of} at {cache.root} ({len(cache)} images)")
            if cache.skipped:
                self.echo(f"Skipped {len(cache.skipped)} unreadable files{of}, e.g. {cache.skipped[0]}")
        if data.crop_shapes is None:
            cache = caches[0]
            self.cache_info = {"cache_dir": str(cache.root), "cache_built": cache.built, "cache_build_seconds": cache.build_seconds}
            return cache
        rows = BucketCaches({shape: cache for (shape, _), cache in zip(subsets, caches, strict=True)})
        self.row_shapes = rows.row_shapes
        self.cache_info = {
            "cache_dirs": [str(cache.root) for cache in caches],
            "cache_built": any(cache.built for cache in caches),
            "cache_build_seconds": sum(cache.build_seconds for cache in caches),
        }
        return rows

    def cache_key(self, data_key: str, bucket: Shape | None = None) -> dict[str, Any]:
        """The d1 cache key of images fingerprinted ``data_key``: everything the cached features depend on.

        ``bucket``: the crop (H, W) of a native-resolution encoder's bucket, whose cache also stores
        ``image_size``; without it the key is the one square encoders always had (their caches stay valid).
        """
        config = self.config
        stored = ["y_hat", "bits"] if self.levels is None else ["y_hat_l<k>", "bits_l<k>"]
        stored += ["teacher", "pixels", *(["image_size"] if bucket is not None else []), "teacher_tokens"]
        key: dict[str, Any] = {
            "data": data_key,
            "codec": self.parts.codec_ref.name,
            "codec_fingerprint": self.parts.codec_ref.fingerprint,
            "encoder": self.parts.encoder_ref.name,
            "encoder_fingerprint": self.parts.encoder_ref.fingerprint,
            "token_layer": config.token_distillation.layer,
            "dtype": str(self.amp_dtype) if self.use_amp else "float32",
            "fields": f"{','.join(stored)} v1",
        }
        if self.levels is not None:  # a fixed-rate codec's key is as before: its caches stay valid
            key["levels"] = list(self.levels)
        if bucket is not None:
            key["bucket"] = [int(bucket[0]), int(bucket[1])]
        return key

    def _labels_and_classifier(self) -> None:
        """Turn on the CE term when the data are labelled and the encoder has a text tower."""
        data, encoder = self.data, self.parts.encoder
        if not data.labelled:
            self.echo("Notice: the images are unlabelled, so the neck trains on distillation alone")
            return
        if not encoder.has_text_tower:
            self.echo(f"Notice: encoder {self.parts.encoder_ref.name!r} has no text tower, so the neck trains on distillation alone")
            return
        from neckkit.training.zero_shot import openai_templates

        assert data.class_names is not None
        with self.stage(f"building the zero-shot classifier of {len(data.class_names)} classes"):
            classifier = encoder.text_classifier(data.class_names, openai_templates())
        self.classifier = classifier.to(self.device)

    # -- checkpoints (neckkit.training.checkpointing) ---------------------------------------------
    def _save(self, step: int, metrics: dict[str, float]) -> None:
        self.checkpoints.save(step, metrics, self.neck, self.optimizer, self.aux_optimizer, self.scaler, self.best)

    def _save_best(self, step: int, metrics: dict[str, float]) -> None:
        self.checkpoints.save_best(step, metrics, self.neck)

    def _restore(self) -> int:
        """Load the latest checkpoint of the run; returns the step to continue from."""
        with self.stage(f"restoring the latest checkpoint of {self.run_dir}"):
            step, self.best = self.checkpoints.restore(self.neck, self.optimizer, self.aux_optimizer, self.scaler)
        self.echo(f"Resuming {self.run_dir} from step {step}")
        return step

    # -- one step --------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.use_amp:
            return torch.autocast("cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def _losses(self, out: dict[str, Tensor], labels: Tensor, epoch: int, joint: bool) -> tuple[Tensor, dict[str, float]]:
        student, teacher = out["student"].float(), out["teacher"].float()
        bpp = out["bits"].float().sum() / (out["bits"].numel() * out["pixels"].float())
        logs = {"bpp": _value(bpp)}
        if joint:
            distillation = distillation_loss(student, teacher)
            total = joint_loss(self.config, bpp, distillation, out.get("image_mse"))
            if "image_mse" in out:
                logs["image_mse"] = _value(out["image_mse"])
        else:
            with_ce = self.classifier is not None
            terms = self.loss(epoch, student, teacher, self.classifier if with_ce else None, labels if with_ce else None)
            total, distillation = terms.total, terms.distillation
            if terms.cross_entropy is not None:
                logs["cross_entropy"] = _value(terms.cross_entropy)
        if "token_mse" in out:
            total = total + self.config.token_distillation.weight * out["token_mse"].float()
            logs["token_mse"] = _value(out["token_mse"])
        logs.update(loss=_value(total), distillation=_value(distillation))
        return total, logs

    def _step(self, model: torch.nn.Module, batch: dict[str, Tensor], step: int, joint: bool) -> dict[str, float]:
        config = self.config
        epoch = config.epoch_of(step)
        torch.manual_seed(config.seed * 7_919 + step * 104_729 + self.world.rank)  # rate noise, per step
        lr = config.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        if self.aux_optimizer is not None:
            self.aux_optimizer.zero_grad(set_to_none=True)
        if batch["label"].numel() == 0:
            raise NeckkitError(f"every image of step {step} was unreadable")
        with self._autocast():
            out = model(batch, with_image=joint and config.scenario == "d2")
        total, logs = self._losses(out, batch["label"], epoch, joint)
        self.scaler.scale(total).backward()
        if config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if joint and self.aux_optimizer is not None:
            aux = aux_loss(self.parts.codec)
            aux.backward()
            self.aux_optimizer.step()
            logs["aux_loss"] = _value(aux)
        logs["lr"] = lr
        return logs

    # -- validation (neckkit.training.validation) ------------------------------------------------
    def validate(self, val_sets: ValidationSets, collate: Callable[[list[Any]], dict[str, Tensor]], joint: bool) -> dict[str, float]:
        """Held-out distillation error of the neck and of the Reconstruction baseline, and the rate (at every level)."""
        return held_out_metrics_at_levels(
            self.path, self.config, val_sets, collate, joint, device=self.device, autocast=self._autocast, losses=self._losses
        )

    def _validation_sets(self, rows: Dataset, val_rows: list[int]) -> ValidationSets:
        """The held-out rows, at each trained level (one set, level None, for a fixed-rate codec), in groups of
        one crop shape (one group for a square encoder, one per bucket for a native-resolution encoder)."""
        groups = self._by_bucket(val_rows)
        if self.levels is None:
            return [(None, [Subset(rows, group) for group in groups])]
        return [(level, [Subset(rows, rows.rows_at(k, group)) for group in groups])  # type: ignore[attr-defined]
                for k, level in enumerate(self.levels)]

    def _by_bucket(self, rows: list[int]) -> list[list[int]]:
        """``rows`` in groups of one crop shape: all of them for square crops, else one group per bucket."""
        if self.row_shapes is None:
            return [rows]
        return list(rows_by_bucket(rows, self.row_shapes).values())

    def _bucket_sizes(self) -> dict[Shape, int]:
        """Rows of each crop bucket (images, at one level), buckets in order."""
        return dict(Counter(self.row_shapes or ()))

    def _plan(self, train_rows: list[int]) -> StepPlan:
        """The batches of every step: :class:`BatchPlan`, or with buckets a :class:`BucketPlan` (one bucket a batch)."""
        batch_size, seed = self.config.optim.batch_size, self.config.seed
        if self.row_shapes is None:
            return BatchPlan(train_rows, batch_size, seed)
        return BucketPlan(self._by_bucket(train_rows), batch_size, seed)

    # -- the loop --------------------------------------------------------------------------------
    def _model(self, joint: bool) -> torch.nn.Module:
        set_codec_training(self.parts.codec, self.config, joint=joint)
        self.parts.encoder.eval()
        if not self.world.distributed:
            return self.path
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.path, device_ids=device_ids, find_unused_parameters=joint)

    def run(self, resume: bool = False) -> TrainResult:
        """Train (or, with ``resume``, continue) under the config's preprocessing pipeline."""
        from neckkit.interfaces.preprocess import preprocessing

        with preprocessing(self.config.data.preprocess):
            return self._run(resume)

    def _run(self, resume: bool) -> TrainResult:
        config, run_dir = self.config, self.run_dir
        start_time = time.perf_counter()
        start = self._restore() if resume else 0
        if self.world.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            config.save(run_dir / CONFIG_FILE)
        self._labels_and_classifier()
        rows, collate = self._rows()
        images = getattr(rows, "rows_per_level", len(rows))  # type: ignore[arg-type]  # rows of one level
        train_rows, val_rows = split_rows(images, config.val_fraction, config.seed)
        if not train_rows:
            raise NeckkitError("the data hold too few readable images to train on")
        plan = self._plan(train_rows)
        level_plan = LevelPlan(len(self.levels), images, config.seed) if self.levels is not None else None
        total = config.total_steps
        log = MetricsLog(run_dir, resume_step=start if resume else None) if self.world.is_main else None
        val_sets = self._validation_sets(rows, val_rows)
        self.echo(
            f"Training {config.scenario} neck ({sum(p.numel() for p in self.neck.parameters()):,} parameters) "
            f"for {self.parts.codec_ref.name} -> {self.parts.encoder_ref.name}: steps {start}..{total}, "
            f"{len(train_rows)} training and {len(val_rows)} held-out images, device {self.device}"
            + (f", rate levels {', '.join(f'{level:g}' for level in self.levels)} (conditioning "
               f"{config.neck.conditioning})" if self.levels is not None else "")
            + (f", crop buckets {', '.join(f'{w}x{h} ({n})' for (h, w), n in self._bucket_sizes().items())}"
               if self.row_shapes is not None else "")
        )
        first_distillation = last_distillation = None
        step, steps_done, train_seconds, images_seen = start, 0, 0.0, 0
        bar = step_progress_bar(total, start) if self.progress else None
        try:
            while step < total:
                joint = config.is_joint(config.epoch_of(step))
                stage_end = total if joint or config.scenario == "d1" else min(total, config.neck_epochs * config.steps_per_epoch)
                model = self._model(joint)
                loader = DataLoader(
                    rows,
                    batch_sampler=PlanSampler(plan, step, stage_end, self.world, level_plan),
                    collate_fn=collate,
                    num_workers=usable_workers(config.num_workers),
                    persistent_workers=False,
                )
                tick = time.perf_counter()
                for batch in loader:
                    logs = self._step(model, to_device(batch, self.device), step, joint)
                    step += 1
                    steps_done += 1
                    images_seen += config.optim.batch_size
                    elapsed = time.perf_counter() - tick
                    logs = mean_across(self.world, logs)
                    last_distillation = logs["distillation"]
                    if first_distillation is None:
                        first_distillation = last_distillation
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{logs['loss']:.4g}", dist=f"{logs['distillation']:.4g}", img_s=f"{images_seen / max(train_seconds + elapsed, 1e-9):.1f}")
                    if log is not None and (step % config.log_every == 0 or step == total):
                        log.log(step, "train", {"epoch": config.epoch_of(step - 1), **logs})
                    if step % config.checkpoint_every == 0 or step == total:
                        train_seconds += time.perf_counter() - tick
                        if bar is not None:
                            bar.set_description("validating and saving")
                        self._checkpoint(step, val_sets, collate, joint, log)
                        if bar is not None:
                            bar.set_description("")
                        tick = time.perf_counter()
                train_seconds += time.perf_counter() - tick
        finally:
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
        summary = {
            "steps": step,
            "steps_this_run": steps_done,
            "train_seconds": round(train_seconds, 3),
            "steps_per_second": round(steps_done / train_seconds, 4) if train_seconds else None,
            "wall_seconds": round(time.perf_counter() - start_time, 3),
            "first_distillation": first_distillation,
            "last_distillation": last_distillation,
            "best": self.best,
            "skipped_images": len(self.data.skipped),
            **({"levels": list(self.levels), "conditioning": config.neck.conditioning} if self.levels is not None else {}),
            **({"buckets": {f"{w}x{h}": n for (h, w), n in self._bucket_sizes().items()}} if self.row_shapes is not None else {}),
            **self.cache_info,
        }
        if self.world.is_main:
            _atomic_json(run_dir / SUMMARY_FILE, summary)
        barrier(self.world)
        return TrainResult(run_dir=run_dir, steps=step, summary=summary)

    def _checkpoint(self, step: int, val_sets: ValidationSets, collate: Any, joint: bool, log: MetricsLog | None) -> None:
        metrics: dict[str, float] = {}
        if self.world.is_main and any(len(rows) for _, groups in val_sets for rows in groups):  # type: ignore[arg-type]
            metrics = self.validate(val_sets, collate, joint)
            if log is not None and metrics:
                log.log(step, "val", metrics)
            final_stage = joint or self.config.scenario == "d1"
            if metrics and final_stage and metrics["objective"] < self.best.get("objective", float("inf")):
                self.best = {"step": step, **metrics}
                self._save_best(step, metrics)
        self._save(step, metrics)
        barrier(self.world)


def step_progress_bar(total: int, start: int) -> Any:
    """A tqdm bar over training steps ``start .. total`` (neck and codec training)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, leave=True)
