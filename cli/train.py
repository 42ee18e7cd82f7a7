"""``neckkit train``: train a transform-neck for any registered codec and encoder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from neckkit.cli.components import (
    build_component,
    check_component_options,
    component_options,
    stored_options,
)
from neckkit.cli.inputs import check_file, check_folder, check_latent_codec, check_neck
from neckkit.cli.report import announce_placeholders, building, progress_enabled, stage
from neckkit.errors import NeckkitError, UsageError

if TYPE_CHECKING:
    from neckkit.training.run_lock import RunLock

RESUMABLE_KEYS = ("max_steps", "num_workers", "log_every")  # may change when resuming


def config_data(config_file: Path | None, tiny: bool, scenario: str | None, rate_lambda: float | None,
                max_steps: int | None, overrides: list[str] | None) -> dict[str, Any]:
    """The training config as plain data: defaults < ``--tiny``'s quick-start schedule < config file < flags and ``--set``."""
    from neckkit.config.base import NeckkitConfig, _apply_overrides
    from neckkit.config.train import QUICK_START

    data: dict[str, Any] = {}
    if tiny:
        _apply_overrides(data, QUICK_START)
    if config_file is not None:
        for key, value in _flatten(NeckkitConfig.read_file(config_file)).items():
            _apply_overrides(data, {key: value})
    flags = {"scenario": scenario, "rate_lambda": rate_lambda, "max_steps": max_steps}
    _apply_overrides(data, {key: value for key, value in flags.items() if value is not None})
    _apply_overrides(data, overrides or [])
    return data


def resolve_config(config_file: Path | None, tiny: bool, scenario: str | None, rate_lambda: float | None,
                   max_steps: int | None, overrides: list[str] | None, entry_layer: int | None = None) -> Any:
    """Defaults < ``--tiny``'s quick-start schedule < config file < flags and ``--set``; ``entry_layer``
    (the encoder's, see :func:`reconcile_entry_layer`) sets ``neck.entry_layer``."""
    from neckkit.config.base import _apply_overrides
    from neckkit.config.train import TrainConfig

    data = config_data(config_file, tiny, scenario, rate_lambda, max_steps, overrides)
    if entry_layer is not None:
        _apply_overrides(data, {"neck.entry_layer": entry_layer})
    source = f"config file {config_file}" if config_file is not None else "config"
    return TrainConfig.validate_data(data, source=source)


def configured_entry_layer(data: dict[str, Any]) -> Any:
    """``neck.entry_layer`` as the config file or ``--set`` gave it, else ``None``."""
    neck = data.get("neck")
    return neck.get("entry_layer") if isinstance(neck, dict) else None


def reconcile_entry_layer(component: Any, e_options: dict[str, Any], configured: Any) -> tuple[dict[str, Any], Any]:
    """One source of truth for where neck tokens enter: the encoder option ``entry_layer``.

    Returns the encoder options and the entry layer the config must follow (``None``: decided once the
    encoder is built, by its own ``entry_layer``). ``--encoder-opt entry_layer=N`` sets the config's
    ``neck.entry_layer``; a different ``neck.entry_layer`` from ``--set`` or ``--config`` is refused; a
    configured one alone becomes the encoder's option when the encoder declares it.
    """
    from neckkit.host.options import accepted_options

    chosen = e_options.get("entry_layer")
    if chosen is not None and configured is not None and chosen != configured:
        raise NeckkitError(
            f"--encoder-opt entry_layer={chosen} and neck.entry_layer={configured} (from --set or --config) disagree; "
            "the encoder option says where neck tokens enter: pass one of them"
        )
    if chosen is None and configured is not None and "entry_layer" in accepted_options(component.info):
        return {**e_options, "entry_layer": configured}, configured
    return e_options, chosen


def check_scenario(component: Any, scenario: str) -> None:
    """Refuse a scenario the codec did not register (d3 needs ``Codec.synthesis_modules()``).

    A codec registered without ``scenarios`` is checked once built (:func:`check_codec_scenario`).
    """
    from neckkit.host.options import component_label

    supported = component.info.scenarios
    if supported is not None and scenario not in supported:
        if tuple(supported) == ("d1",):  # the codec is never trained here (e.g. a variable-rate codec)
            hint = ("neckkit train does not train this codec; a variable-rate codec trains with neckkit train-codec, "
                    "its neck with --scenario d1")
        else:
            hint = ("d3 needs Codec.synthesis_modules(); its plugin declares it with "
                    "register(..., scenarios=(\"d1\", \"d2\", \"d3\"))")
        raise NeckkitError(f"{component_label(component)} supports scenarios {', '.join(supported)}, not {scenario} "
                           f"({hint})")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}`` (lists and tuples stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a training run's checkpoints (a plain ``train`` into it is refused)."""
    return (folder / "checkpoints").exists() or (folder / "best").exists()


def run_folder_names(base: Path) -> list[Path]:
    """``base``, ``base-2``, ``base-3``...: the default run folders, in the order they are taken."""
    return [base] + [base.with_name(f"{base.name}-{n}") for n in range(2, 10_000)]


def default_run_dir(base: Path, resume: bool) -> Path:
    """``base``, else ``base-2``, ``base-3``...: the first free one, or with ``--resume`` the last used one."""
    candidates = run_folder_names(base)
    for previous, candidate in zip([None, *candidates], candidates, strict=False):
        if not holds_run(candidate):
            return (previous or candidate) if resume else candidate
    raise NeckkitError(f"too many runs beside {base}; pass --out")


def claim_run_folder(out: Path | None, base: Path, resume: bool, lock: bool = True) -> RunLock:
    """The run folder's lock, held: ``--out``, else the default folder (see :func:`default_run_dir`).

    The lock is taken before anything looks inside, so what the folder holds cannot change under the
    checks that follow; leftovers of an interrupted run are cleared once it is held. A new default folder
    is claimed by locking it: a run started at the same moment takes the next number instead of sharing
    it. Not held (only naming the folder): with ``lock=False`` (torchrun ranks other than 0, which never
    write into it), and for ``--resume`` of a folder that does not exist (refused next, nothing created).
    """
    from neckkit.training.run_lock import RunFolderBusy, RunLock

    if out is not None or resume or not lock:
        folder = out or default_run_dir(base, resume)
        if not lock or (resume and not folder.is_dir()):
            return RunLock(folder)
        return _cleared(RunLock(folder).acquire(create=not resume))
    for candidate in run_folder_names(base):
        if holds_run(candidate):
            continue
        try:
            claimed = _cleared(RunLock(candidate).acquire())
        except RunFolderBusy:  # another run is starting in it: take the next number
            continue
        if not holds_run(candidate):
            return claimed
        claimed.release()
    raise NeckkitError(f"too many runs beside {base}; pass --out")


def _cleared(lock: RunLock) -> RunLock:
    """``lock``, once the leftovers of an interrupted run are gone from its folder (released if that fails)."""
    from neckkit.checkpoint_folders import remove_leftovers

    try:
        remove_leftovers(lock.folder)
    except BaseException:
        lock.release()
        raise
    return lock


def check_resumable(run_dir: Path, config: Any, pending: tuple[str, ...] = ()) -> None:
    """Refuse to resume a run with another config (except the keys in RESUMABLE_KEYS).

    Keys in ``pending`` that are still unset here are decided once the components are built (e.g.
    ``neck.levels``, all of a variable-rate codec's levels) and checked again then.
    """
    from neckkit.checkpoint_folders import CONFIG_FILE
    from neckkit.config.train import TrainConfig

    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file():
        raise NeckkitError(f"--resume: {run_dir} holds no {CONFIG_FILE}; it is not a neckkit training run")
    every = {"all_fields": True}  # fields written only when set (neck.levels...) compared too
    saved = _flatten(TrainConfig.load(saved_path).model_dump(mode="json", context=every))
    now = _flatten(config.model_dump(mode="json", context=every))
    for key in sorted(set(saved) | set(now)):
        if key in pending and now.get(key) is None:
            continue
        if key.split(".")[0] not in RESUMABLE_KEYS and saved.get(key) != now.get(key):
            raise NeckkitError(
                f"--resume: {key} is {now.get(key)!r} but the run in {run_dir} used {saved.get(key)!r}; "
                "resume with the same settings or train into another --out"
            )


def level_overrides(conditioning: str | None, levels: str | None) -> list[str]:
    """``--neck-conditioning`` and ``--levels 0,1,2`` as config overrides (``neck.conditioning``, ``neck.levels``)."""
    overrides = [f"neck.conditioning={conditioning}"] if conditioning is not None else []
    if levels is not None:
        try:
            values = [float(part) for part in levels.split(",")]
        except ValueError:
            raise UsageError(f"--levels takes comma-separated rate levels, e.g. 0,1,2,3; got {levels!r}") from None
        overrides.append(f"neck.levels=[{', '.join(repr(value) for value in values)}]")
    return overrides


def finished_step(run_dir: Path, config: Any) -> int | None:
    """The step of the run's latest checkpoint when it already reached the config's last step, else ``None``."""
    from neckkit.checkpoint_folders import checkpoint_step, latest_checkpoint

    latest = latest_checkpoint(run_dir)
    step = checkpoint_step(latest) if latest is not None else None
    return step if step is not None and step >= config.total_steps else None


def restarts(run_dir: Path, as_json: bool, echo: bool = True) -> bool:
    """Whether ``--resume`` must start the run again: it was stopped before completing a step checkpoint.

    Its ``config.yaml`` (already checked against this command's) is all there is to go on, so training
    starts from step 0 with it, replacing the stopped run's metrics; said in one line.
    """
    from neckkit.checkpoint_folders import latest_checkpoint

    if latest_checkpoint(run_dir) is not None:
        return False
    if echo:
        typer.echo(
            f"{run_dir} holds no complete step checkpoint (it stopped before its first); "
            "starting it again from step 0 with its saved config",
            err=as_json,
        )
    return True


def report_finished(run_dir: Path, step: int, config: Any, as_json: bool) -> None:
    """``--resume`` of a finished run: say so (and with ``--json`` print its summary) instead of loading anything."""
    from neckkit.checkpoint_folders import SUMMARY_FILE

    typer.echo(
        f"{run_dir} is finished: its latest checkpoint is step {step} of {config.total_steps}; nothing to resume "
        "(raise --max-steps to train on, or train into another --out)",
        err=as_json,
    )
    if as_json:
        summary_path = run_dir / SUMMARY_FILE
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {"steps": step}
        typer.echo(json.dumps({"run_dir": str(run_dir), **summary}, indent=2))


def train(
    ctx: typer.Context,
    codec: str = typer.Option(..., "--codec", "-c", help="Registered codec name (see neckkit list-plugins)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="Registered visual-encoder name."),
    scenario: str | None = typer.Option(None, "--scenario", "-s", help="d1 (neck only), d2 or d3 (codec too)."),
    data: Path | None = typer.Option(None, "--data", help="Image folder (ImageNet-style, named classes or plain); default: the bundled photos."),
    config_file: Path | None = typer.Option(None, "--config", help="YAML/TOML/JSON training config."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<codec>-<encoder>-<scenario>, numbered -2, -3... when taken)."),
    tiny: bool = typer.Option(False, "--tiny", help="Tiny random-init codec and encoder and a seconds-long schedule."),
    random_init: bool = typer.Option(False, "--random-init", help="Real-size codec and encoder with random weights."),
    codec_weights: Path | None = typer.Option(None, "--codec-weights", help="Codec state dict file."),
    encoder_weights: str | None = typer.Option(None, "--encoder-weights", help="Encoder hub id, folder or file."),
    quality: int | None = typer.Option(None, "--quality", "-q", help="Codec quality with known weights."),
    rate_lambda: float | None = typer.Option(None, "--lambda", help="d2/d3 rate point (paper: 0.004 0.008 0.016 0.032)."),
    neck_conditioning: str | None = typer.Option(
        None, "--neck-conditioning", help="Variable-rate codecs: condition the neck on the rate level, adaln, film or "
        "none (one neck for all levels; the default) (neck.conditioning)."),
    levels: str | None = typer.Option(
        None, "--levels", help="Variable-rate codecs: the rate levels to train at, e.g. 0,1,2,3 (default: all; one "
        "level trains a per-level neck) (neck.levels)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    init: Path | None = typer.Option(None, "--init", help="Start from this checkpoint's neck (and codec): e.g. a d1 run for d2/d3."),
    overrides: list[str] | None = typer.Option(None, "--set", help="Config override key=value, e.g. optim.lr=3e-4."),
    preprocess: str | None = typer.Option(None, "--preprocess", help="neckkit (default) or paper: the authors' PIL crops, unclamped resizes (data.preprocess)."),
    codec_opt: list[str] | None = typer.Option(None, "--codec-opt", help="Other codec option, name=value."),
    encoder_opt: list[str] | None = typer.Option(None, "--encoder-opt", help="Other encoder option, name=value."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Train a transform-neck (scenario d1, d2 or d3); checkpoints, metrics and the summary go to --out."""
    host = ctx.obj.host
    if preprocess is not None:
        overrides = [*(overrides or []), f"data.preprocess={preprocess}"]
    overrides = [*(overrides or []), *level_overrides(neck_conditioning, levels)]
    weights = str(codec_weights) if codec_weights is not None else None
    c_options = component_options(codec_opt, quality=quality, weights=weights, tiny=tiny, random_init=random_init)
    e_options = component_options(encoder_opt, weights=encoder_weights, tiny=tiny, random_init=random_init)
    codec_component, encoder_component = host.components("codec").get(codec), host.components("encoder").get(encoder)
    check_latent_codec(codec_component, "train a neck on a learned codec")
    configured = configured_entry_layer(config_data(config_file, tiny, scenario, rate_lambda, max_steps, overrides))
    e_options, entry_layer = reconcile_entry_layer(encoder_component, e_options, configured)
    check_component_options(host, "codec", codec, c_options)  # before anything loads
    check_component_options(host, "encoder", encoder, e_options)
    check_file(codec_weights, "--codec-weights")
    check_folder(data, "--data")
    if init is not None:
        check_neck(init)
    config = resolve_config(config_file, tiny, scenario, rate_lambda, max_steps, overrides, entry_layer)
    check_scenario(codec_component, config.scenario)
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 owns (and writes) the folder
    base = Path("runs") / f"{codec}-{encoder}-{config.scenario}"
    with claim_run_folder(out, base, resume, lock=main_process) as run_lock:
        run_dir = run_lock.folder
        if resume:
            check_resumable(run_dir, config, pending=("neck.levels",))
            step = finished_step(run_dir, config)
            if step is not None:
                report_finished(run_dir, step, config, as_json)
                return
            resume = not restarts(run_dir, as_json, echo=main_process)
        elif holds_run(run_dir):
            raise NeckkitError(f"{run_dir} already holds a training run; pass --resume to continue it or choose another --out")

        # Spinners on the first process only (under torchrun every process shares the terminal).
        show = not (no_progress or as_json) and main_process
        with stage("loading torch and the trainer", show):
            from neckkit.bitstream.container import codec_fingerprint
            from neckkit.host.options import component_label
            from neckkit.loading.weights import fingerprint
            from neckkit.neck.checkpoint import ComponentRef
            from neckkit.training.data import open_image_set
            from neckkit.training.distributed import close_world, device_for, init_world, launched_world
            from neckkit.training.rate_levels import check_rate_levels, resolve_levels
            from neckkit.training.scenarios import check_codec_scenario
            from neckkit.training.trainer import Trainer, TrainParts

        world = launched_world()
        torch_device = device_for(world, device)
        world = init_world(torch_device)
        try:
            with stage(building("codec", codec, c_options), show):
                codec_name, codec_model = build_component(host, "codec", codec, c_options)
            check_codec_scenario(codec_model, config.scenario, component_label(codec_component))
            check_rate_levels(codec_model, config, component_label(codec_component))  # before the encoder loads
            with stage(building("encoder", encoder, e_options), show):
                encoder_name, encoder_model = build_component(host, "encoder", encoder, e_options)
            if world.is_main:
                announce_placeholders()
            if entry_layer is None and configured is None and encoder_model.entry_layer != config.neck.entry_layer:
                # Neither the encoder option nor the config chose: the encoder's own default decides.
                config = resolve_config(config_file, tiny, scenario, rate_lambda, max_steps, overrides, encoder_model.entry_layer)
            config = resolve_levels(config, codec_model, component_label(codec_component))  # all levels when unset
            if resume:
                check_resumable(run_dir, config)
            init_neck = None
            if init is not None:
                from neckkit.neck.checkpoint import check_pair, load_checkpoint, restore_codec_state

                with stage(f"loading --init {init}", show):
                    start = load_checkpoint(init)
                check_pair(start.meta, codec_name, encoder_name, init)
                restore_codec_state(codec_model, start)  # before the fingerprint: the run's codec is this one
                init_neck = start.neck_state
                if start.meta.encoder.options != stored_options(e_options):
                    typer.echo(
                        f"Notice: {init} was trained with encoder options {start.meta.encoder.options}, "
                        f"this run uses {stored_options(e_options)}",
                        err=True,
                    )
            with stage("fingerprinting the codec and encoder weights", show):
                parts = TrainParts(
                    codec=codec_model,
                    encoder=encoder_model,
                    codec_ref=ComponentRef(name=codec_name, options=stored_options(c_options), fingerprint=codec_fingerprint(codec_model)),
                    encoder_ref=ComponentRef(name=encoder_name, options=stored_options(e_options), fingerprint=fingerprint(encoder_model)),
                )
            with stage(f"listing the images in {data}" if data is not None else "opening the bundled photos", show):
                images = open_image_set(data, config.data)
            echo = (lambda text: typer.echo(text, err=True)) if as_json else typer.echo
            with stage("building the neck and its optimiser", show):
                trainer = Trainer(
                    config, parts, images, run_dir, world, torch_device, echo=echo,
                    progress=show and progress_enabled(), init_neck=init_neck, stage=lambda text: stage(text, show),
                )
            result = trainer.run(resume=resume)
        finally:
            close_world()
    if not world.is_main:
        return
    summary = result.summary
    if as_json:
        typer.echo(json.dumps({"run_dir": str(result.run_dir), **summary}, indent=2))
        return
    first, last = summary.get("first_distillation"), summary.get("last_distillation")
    if first is not None and last is not None:
        typer.echo(f"Distillation loss: first step {first:.6g}, last step {last:.6g} ({last / first:.1%} of the first)")
    best = summary.get("best") or {}
    if best:
        typer.echo(
            f"Best held-out distillation {best['distillation']:.6g} at step {best['step']} "
            f"(Reconstruction baseline {best['reconstruction_distillation']:.6g}, bpp {best['bpp']:.4f})"
        )
    typer.echo(f"{summary['steps_this_run']} steps in {summary['train_seconds']:.1f} s; run saved in {result.run_dir}")


