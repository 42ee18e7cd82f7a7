"""``neckkit train-codec``: fine-tune a variable-rate codec from a fixed-rate checkpoint (QVRF-style)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from neckkit.cli.components import build_component, check_component_options, component_options, stored_options
from neckkit.cli.inputs import check_file, check_folder, check_latent_codec
from neckkit.cli.report import announce_placeholders, building, print_table, progress_enabled, stage
from neckkit.errors import NeckkitError, UsageError


def parse_lambdas(text: str) -> list[float]:
    """``"0.0018,0.0035"`` -> ``[0.0018, 0.0035]``; anything else is one line."""
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise UsageError(f"--lambdas {text!r} must be numbers separated by commas, e.g. 0.0018,0.0035,0.0067") from None


def config_overrides(flags: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """The flags that were given, then ``--set key=value`` items, as one override mapping."""
    from neckkit.config.base import parse_override

    data = {key: value for key, value in flags.items() if value is not None}
    for item in overrides or []:
        path, value = parse_override(item)
        data[".".join(path)] = value
    return data


def resolve_config(run_dir: Path, resume: bool, tiny: bool, config_file: Path | None, given: dict[str, Any]) -> Any:
    """The run's config: defaults < ``--tiny``'s quick start < ``--config`` < flags and ``--set``.

    With ``--resume`` the run's saved ``config.yaml`` is the base instead of the defaults and the quick
    start; what the command gives on top may change only :data:`CODEC_RESUMABLE_KEYS` (else one line).
    """
    from neckkit.checkpoint_folders import CONFIG_FILE
    from neckkit.config.base import _apply_overrides
    from neckkit.config.codec_train import CODEC_QUICK_START, CODEC_RESUMABLE_KEYS, CodecTrainConfig

    data: dict[str, Any] = {}
    saved = None
    if resume:
        if not (run_dir / CONFIG_FILE).is_file():
            raise NeckkitError(f"--resume: {run_dir} holds no {CONFIG_FILE}; it is not a neckkit train-codec run")
        saved = CodecTrainConfig.load(run_dir / CONFIG_FILE)
        data = saved.model_dump(mode="json")
    elif tiny:
        _apply_overrides(data, CODEC_QUICK_START)
    if config_file is not None:
        _apply_overrides(data, CodecTrainConfig.read_file(config_file))
    _apply_overrides(data, given)
    config = CodecTrainConfig.validate_data(data, source=f"config file {config_file}" if config_file else "config")
    if saved is not None:
        before, now = saved.model_dump(mode="json"), config.model_dump(mode="json")
        for key in sorted(before):
            if key not in CODEC_RESUMABLE_KEYS and before[key] != now[key]:
                raise NeckkitError(
                    f"--resume: {key} is {now[key]!r} but the run in {run_dir} used {before[key]!r}; "
                    "resume with the same settings or train into another --out"
                )
    return config


def quick_start_crop(config: Any, pad_multiple: int) -> Any:
    """``--tiny``'s crops rounded up to the codec's ``pad_multiple`` (tiny TIC takes 128 x 128, not 64 x 64)."""
    if config.crop % pad_multiple == 0:
        return config
    crop = -(-config.crop // pad_multiple) * pad_multiple
    return config.with_overrides({"crop": crop, "eval_crop": max(crop, config.eval_crop or 0)})


def _latest_step(run_dir: Path) -> tuple[Path | None, int | None]:
    from neckkit.checkpoint_folders import checkpoint_step, latest_checkpoint

    latest = latest_checkpoint(run_dir)
    return latest, checkpoint_step(latest) if latest is not None else None


def compress_hint(name: str, options: dict[str, Any], weights: Path) -> str:
    """The ``neckkit compress`` command line that codes with the trained weights (the codec's options kept)."""
    flags = ["--tiny"] if options.get("tiny") else []
    flags += [f"--codec-opt {key}={value}" for key, value in options.items() if key not in ("tiny", "random_init", "weights")]
    return " ".join(["neckkit compress IMAGE --codec", name, *flags, "--codec-weights", str(weights), "--level N -o OUT.nk"])


def _report(result: Any, name: str, options: dict[str, Any], as_json: bool) -> None:
    summary, levels = result.summary, result.levels
    if as_json:
        typer.echo(json.dumps({"run_dir": str(result.run_dir), **summary, "levels": levels}, indent=2))
        return
    print_table(
        ["level", "lambda", "bpp", "estimated bpp", "PSNR dB"],
        [[str(r["level"]), f"{r['lambda']:g}", f"{r['bpp']:.4f}", f"{r['estimated_bpp']:.4f}", f"{r['psnr']:.2f}"] for r in levels],
        title=f"{name} on {levels[0]['images'] if levels else 0} evaluation images",
    )
    first, last = summary.get("first_loss"), summary.get("last_loss")
    if first is not None and last is not None:
        typer.echo(f"RD loss: first step {first:.6g}, last step {last:.6g}")
    from neckkit.training.codec_checkpoints import CODEC_FILE

    weights = result.run_dir / CODEC_FILE
    typer.echo(
        f"{summary['steps_this_run']} steps in {summary['train_seconds']:.1f} s; codec weights in {weights} "
        f"({compress_hint(name, options, weights)})"
    )


def train_codec(
    ctx: typer.Context,
    codec: str = typer.Option(..., "--codec", "-c", help="A registered variable-rate codec (see neckkit list-plugins)."),
    weights: Path | None = typer.Option(None, "--weights", "--codec-weights", help="Fixed-rate checkpoint to start from (or a variable-rate one)."),
    data: Path | None = typer.Option(None, "--data", help="Folder of training images; default: the bundled photos."),
    eval_data: Path | None = typer.Option(None, "--eval-data", help="Folder of evaluation images (e.g. Kodak); default: the held-out share of --data."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<codec>-codec, numbered -2, -3... when taken)."),
    lambdas: str | None = typer.Option(None, "--lambdas", help="One lambda per rate level, level 0 first, comma-separated (default: QVRF's eight)."),
    steps: int | None = typer.Option(None, "--steps", help="Training steps."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step."),
    crop: int | None = typer.Option(None, "--crop", help="Side of the random square training crops."),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate."),
    seed: int | None = typer.Option(None, "--seed", help="Seeds data order, crops, levels and rate noise."),
    tiny: bool = typer.Option(False, "--tiny", help="Tiny codec (random init unless --weights) and a seconds-long schedule."),
    random_init: bool = typer.Option(False, "--random-init", help="Real-size codec with random weights."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    config_file: Path | None = typer.Option(None, "--config", help="YAML/TOML/JSON train-codec config."),
    overrides: list[str] | None = typer.Option(None, "--set", help="Config override key=value, e.g. grad_clip=0.5."),
    codec_opt: list[str] | None = typer.Option(None, "--codec-opt", help="Other codec option, name=value."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary and the per-level results as JSON."),
) -> None:
    """Fine-tune a variable-rate codec on R + lambda_s * 255^2 * MSE at a random level s per batch; writes codec.pth."""
    from neckkit.cli.train import claim_run_folder, holds_run, restarts

    host = ctx.obj.host
    options = component_options(codec_opt, weights=str(weights) if weights else None, tiny=tiny, random_init=random_init)
    check_latent_codec(host.components("codec").get(codec), "train-codec trains learned codecs")
    check_component_options(host, "codec", codec, options)  # before anything loads
    check_file(weights, "--weights")
    check_folder(data, "--data")
    check_folder(eval_data, "--eval-data")
    flags = {"lambdas": parse_lambdas(lambdas) if lambdas is not None else None, "steps": steps,
             "batch_size": batch_size, "crop": crop, "lr": lr, "seed": seed}
    given = config_overrides(flags, overrides)
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 owns (and writes) the folder
    show = not (no_progress or as_json) and main_process
    echo = (lambda text: typer.echo(text, err=True)) if as_json else typer.echo
    if not resume:  # a bad setting is one line before any folder is claimed (resume: checked against the run's)
        resolve_config(Path(), False, tiny, config_file, given)
    with claim_run_folder(out, Path("runs") / f"{codec}-codec", resume, lock=main_process) as run_lock:
        run_dir = run_lock.folder
        if main_process:
            from neckkit.training.codec_checkpoints import remove_codec_leftovers

            remove_codec_leftovers(run_dir)
        if not resume and holds_run(run_dir):
            raise NeckkitError(f"{run_dir} already holds a training run; pass --resume to continue it or choose another --out")
        config = resolve_config(run_dir, resume, tiny, config_file, given)
        latest, done = _latest_step(run_dir) if resume else (None, None)
        if done is not None and done >= config.steps:
            echo(f"{run_dir} is finished: its latest checkpoint is step {done} of {config.steps}; nothing to resume "
                 "(raise --steps to train on, or train into another --out)")
            return
        if resume:
            resume = not restarts(run_dir, as_json, echo=main_process)

        with stage("loading torch and the trainer", show):
            from neckkit.training.codec_training import CodecTrainer, check_trainable
            from neckkit.training.data import open_image_set
            from neckkit.training.distributed import close_world, device_for, init_world, launched_world

        world = launched_world()
        torch_device = device_for(world, device)
        world = init_world(torch_device)
        try:
            # Resuming a run started from a file no longer needs it: the checkpoint's codec.pth has the weights.
            from neckkit.training.codec_checkpoints import CODEC_FILE

            start_from = str(latest / CODEC_FILE) if resume and latest is not None and weights is None else None
            with stage(building("codec", codec, options), show):
                name, model = build_component(host, "codec", codec, options, weights=start_from)
            if tiny and not resume and config_file is None and "crop" not in given:
                config = quick_start_crop(config, model.pad_multiple)
            check_trainable(model, name, config)
            if world.is_main:
                announce_placeholders()
            with stage(f"listing the images in {data}" if data is not None else "opening the bundled photos", show):
                paths = open_image_set(data).paths
                eval_paths = open_image_set(eval_data).paths if eval_data is not None else None
            trainer = CodecTrainer(
                config, model, name, stored_options(options), paths, run_dir, eval_paths=eval_paths, world=world,
                device=torch_device, echo=echo, progress=show and progress_enabled(), stage=lambda text: stage(text, show),
            )
            result = trainer.run(resume=resume)
        finally:
            close_world()
    if world.is_main:
        _report(result, name, options, as_json)
