"""``neckkit eval``: rate vs. task quality of necks against the uncompressed and Reconstruction baselines.

Rate points are trained necks (``--neck``, repeatable: each brings its codec) and plain codec
qualities (``--codec NAME --quality Q``, repeatable: Reconstruction only). Writes ``eval.json``,
``eval.csv`` and ``rate_quality.png`` into ``--out``; docs/evaluation.md defines every metric.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from neckkit.cli.components import (
    build_component,
    check_component_options,
    component_options,
    stored_options,
)
from neckkit.cli.inputs import check_component, check_file, check_folder, check_neck
from neckkit.cli.report import announce_placeholders, print_table, progress
from neckkit.errors import NeckkitError, UsageError

RESULT_FILES = ("eval.json", "eval.csv", "bd_rate.csv", "rate_quality.png")


def point_label(checkpoint_path: Path) -> str:
    """A short name for a neck checkpoint: its run folder, plus the step folder when not ``best``."""
    from neckkit.neck.checkpoint import BEST_DIR, CHECKPOINTS_DIR

    if checkpoint_path.name == BEST_DIR:
        return checkpoint_path.parent.name
    if checkpoint_path.parent.name == CHECKPOINTS_DIR:
        return f"{checkpoint_path.parent.parent.name}/{checkpoint_path.name}"
    return checkpoint_path.name


def unique(label: str, taken: set[str]) -> str:
    """``label``, or ``label#2``, ``label#3``... when already taken."""
    candidate, number = label, 2
    while candidate in taken:
        candidate, number = f"{label}#{number}", number + 1
    taken.add(candidate)
    return candidate


def output_dir(out: Path | None, base: str, overwrite: bool) -> Path:
    """``--out``, refused if it already holds results (unless ``--overwrite``); else a free ``evals/<base>[-N]``."""
    if out is not None:
        if not overwrite and any((out / name).exists() for name in RESULT_FILES):
            raise NeckkitError(f"{out} already holds evaluation results; pass --overwrite or choose another --out")
        return out
    for number in range(1, 10_000):
        candidate = Path("evals") / (base if number == 1 else f"{base}-{number}")
        if not any((candidate / name).exists() for name in RESULT_FILES):
            return candidate
    raise NeckkitError("too many evaluations in evals/; pass --out")


def neck_points(host: Any, necks: list[Path], codec_weights: str | None, encoder_weights: str | None, taken: set[str],
                levels: list[float] | None = None) -> tuple[list[Any], list[Any], Any]:
    """Rate points for neck checkpoints (one per rate level of a variable-rate codec), their checkpoints, and the
    one encoder they share."""
    from neckkit.evaluation.level_points import neck_levels, neck_variant
    from neckkit.evaluation.sweep import RatePoint
    from neckkit.neck.checkpoint import build_neck, load_checkpoint
    from neckkit.serving.machine_path import codec_for_checkpoint, encoder_for_checkpoint

    points, checkpoints, encoder = [], [], None
    codecs: dict[tuple[Any, ...], tuple[str, Any]] = {}  # one codec per distinct (codec, options, weights, tables)
    for neck in necks:
        checkpoint = load_checkpoint(neck)
        ref = checkpoint.meta.encoder
        if checkpoints and (ref.name, ref.fingerprint) != (checkpoints[0].meta.encoder.name, checkpoints[0].meta.encoder.fingerprint):
            first = checkpoints[0].meta.encoder
            raise NeckkitError(
                f"one evaluation compares necks of one encoder: {checkpoints[0].path} was trained for {first.name!r} "
                f"(weights {first.fingerprint}), {checkpoint.path} for {ref.name!r} (weights {ref.fingerprint})"
            )
        if encoder is None:
            encoder = encoder_for_checkpoint(host, checkpoint, encoder_weights)[1]
        meta = checkpoint.meta
        key = (meta.codec.name, meta.codec.fingerprint, json.dumps(meta.codec.options, sort_keys=True, default=str),
               codec_weights, meta.codec_tables)
        if key not in codecs:
            codecs[key] = codec_for_checkpoint(host, checkpoint, codec_weights)
        codec_name, codec = codecs[key]
        info = {"scenario": meta.scenario, "rate_lambda": meta.rate_lambda, "quality": meta.codec.options.get("quality"),
                "checkpoint": str(checkpoint.path), "step": meta.step}
        neck_model = build_neck(checkpoint).eval()
        label = point_label(checkpoint.path)
        variant = neck_variant(neck_model)
        if variant is not None:
            info.update(neck_variant=variant, neck_levels=list(neck_model.levels or ()))
        for level in neck_levels(neck_model, codec, levels, str(checkpoint.path)):
            shown = label if level is None else f"{label} L{level:g}"
            points.append(RatePoint(unique(shown, taken), codec_name, codec, dict(meta.codec.options), neck_model,
                                    meta.entry_layer, dict(info), level=level))
        checkpoints.append(checkpoint)
    return points, checkpoints, encoder


def annotation_tasks(images: Any, indices: list[int], keys: list[str], captions: Path | None, questions: Path | None) -> Any:
    """Zero-shot labels (class sub-folders), reference captions and questions, keyed like the images."""
    from neckkit.evaluation.annotations import load_captions, load_questions, match_keys
    from neckkit.evaluation.sweep import Tasks

    tasks = Tasks()
    if images.labelled:
        tasks.class_names = images.class_names
        tasks.labels = {key: images.labels[i] for key, i in zip(keys, indices, strict=True)}
    if captions is not None:
        references = load_captions(captions)
        names = match_keys(references, keys, f"captions file {captions}")
        tasks.captions = {key: references[name] for name, key in names.items()}
    if questions is not None:
        listed = load_questions(questions)
        mapping = match_keys({q.image for q in listed}, keys, f"questions file {questions}")
        for question in listed:
            tasks.questions.setdefault(mapping[question.image], []).append(question)
    return tasks


def load_mllm(host: Any, name: str, weights: str | None, extra: list[str] | None, tiny: bool,
              checkpoints: list[Any], encoder_name: str) -> tuple[str, Any]:
    """The MLLM, refused unless it reads the encoder the necks (or --encoder) were made for."""
    from neckkit.serving.machine_path import check_mllm

    mllm_name, model = build_component(host, "mllm", name, component_options(extra, weights=weights, tiny=tiny))
    model.eval()
    for checkpoint in checkpoints:
        check_mllm(checkpoint, mllm_name, model)
    if not checkpoints and model.encoder != encoder_name:
        raise NeckkitError(f"MLLM {mllm_name!r} reads encoder {model.encoder!r}, not --encoder {encoder_name}")
    return mllm_name, model


def read_image(images: Any, index: int, full_size: bool) -> Any:
    """Image ``index`` as [1, 3, H, W] in [0, 1]: the training crop, or the whole image; NeckkitError if unreadable."""
    from neckkit.bitstream.images import load_image

    if full_size:
        return load_image(images.paths[index])
    item = images[index]
    if item is None:
        raise NeckkitError(images.skipped[-1])
    return item[0].unsqueeze(0)  # [1, 3, crop, crop]


def target_points(host: Any, codec: str, options: dict[str, Any], targets: list[float], images: Any,
                  indices: list[int], full_size: bool, points: list[Any], taken: set[str]) -> list[dict[str, Any]]:
    """Rate points of image codec ``codec`` at the qualities nearest each target bpp (``--target-bpp``).

    Adds one point per distinct quality to ``points``; returns what each target got (eval.json ``rate_targets``)
    and says on stderr which targets are out of the codec's reach.
    """
    from neckkit.evaluation.sweep import RatePoint
    from neckkit.evaluation.target_rate import qualities_for_targets

    name, model = build_component(host, "codec", codec, options)
    crops = []
    for index in indices:
        try:
            crops.append(read_image(images, index, full_size))
        except NeckkitError:
            continue  # counted as a read failure by the evaluation itself
    chosen = qualities_for_targets(model, crops, targets, name)
    for quality in dict.fromkeys(target.quality for target in chosen):
        built_name, built = build_component(host, "codec", codec, {**options, "quality": quality})
        points.append(RatePoint(unique(f"{built_name} q{quality}", taken), built_name, built,
                                stored_options({**options, "quality": quality}), info={"quality": quality}))
    for target in chosen:
        if target.note is not None:
            typer.echo(f"Notice: --target-bpp {target.target:g}: {target.note}", err=True)
    return [target.as_dict() for target in chosen]


def bd_lines(entries: list[dict[str, Any]], method: str, unit: str) -> list[str]:
    """What the screen says about BD deltas: one line per comparison with a number, then each refusal once."""
    lines, refused = [], {}
    for entry in entries:
        if entry["method"] != method:
            continue
        head = f"{entry['test']} vs {entry['anchor']}, {entry['metric']} ({method}, {unit})"
        if entry["bd_rate"] is not None:
            quality = "" if entry["bd_quality"] is None else f" (BD-quality {entry['bd_quality']:+.4g})"
            lines.append(f"BD-rate {head}: {entry['bd_rate']:+.2f}%{quality}")
        elif entry["bd_quality"] is not None:
            lines.append(f"BD-quality {head}: {entry['bd_quality']:+.4g} (no BD-rate, see below)")
        if entry["reason"] is not None:
            refused.setdefault(entry["reason"], None)
    return lines + list(refused)


BENCHMARK_COLUMNS = ("benchmark_images", "benchmark_bpp", "benchmark_payload_bpp")


def benchmark_sweep(result: dict[str, Any], rows: list[dict[str, Any]], points: list[Any], checkpoints: list[Any],
                    mllm_name: str | None, mllm: Any, task_names: list[str], manager: Any, out_dir: Path,
                    include_path: list[Path], task_limit: int | None, batch_size: int, max_new_tokens: int,
                    anchors: list[str], axis: Any, quiet: bool) -> dict[str, bool]:
    """lmms-eval's tasks on every row's path: scores into the rows, BD-rates on the benchmark images' rates into
    ``result``; returns the score columns (-> higher is better)."""
    from neckkit.evaluation.bd_rate import bd_table
    from neckkit.lmms.benchmarks import benchmark_rate_field, run_sweep

    started = time.perf_counter()
    announce = None if quiet else (lambda text: typer.echo(text, err=True))
    runs, better = run_sweep(rows, points, checkpoints, mllm_name or "", mllm, task_names, manager, out_dir,
                             limit=task_limit, batch_size=batch_size, max_new_tokens=max_new_tokens, announce=announce)
    rate_field = benchmark_rate_field(axis.field)
    result["bd_rates"] += bd_table(rows, rate_field, anchors, unit=f"{axis.unit} (benchmark images)", metrics=better)
    result["benchmarks"] = {
        "tasks": task_names, "include_paths": [str(path) for path in include_path], "task_limit": task_limit,
        "rate_field": rate_field, "columns": better,
        "note": "scores from lmms-eval; rates are the mean over the benchmark's distinct images after the MLLM's "
                "own resize and crop (lmms/*.rates.jsonl, one row per question)",
        "runs": [{"label": run.label, "path": run.path, "scores": run.scores, **run.rates, "seconds": run.seconds,
                  "results_file": Path(run.results_file or "").name, "rates_file": Path(run.rates_file or "").name}
                 for run in runs],
        "seconds": round(time.perf_counter() - started, 3),
    }
    result["seconds_by_stage"]["benchmarks"] = result["benchmarks"]["seconds"]
    result["seconds"] = round(result["seconds"] + result["benchmarks"]["seconds"], 3)
    return better


def evaluate(
    ctx: typer.Context,
    neck: list[Path] | None = typer.Option(None, "--neck", help="Neck checkpoint or training run (repeat for a rate sweep)."),
    codec: str | None = typer.Option(None, "--codec", "-c", help="Codec for Reconstruction-only rate points."),
    quality: list[int] | None = typer.Option(None, "--quality", "-q", help="Codec quality of a Reconstruction-only point (repeat)."),
    encoder: str | None = typer.Option(None, "--encoder", "-e", help="Encoder when no --neck names one."),
    data: Path | None = typer.Option(None, "--data", help="Image folder (class sub-folders: labelled). Default: the bundled photos."),
    captions: Path | None = typer.Option(None, "--captions", help="Reference captions JSON (needs --mllm)."),
    questions: Path | None = typer.Option(None, "--questions", help="Questions JSON with human answers (needs --mllm)."),
    mllm: str | None = typer.Option(None, "--mllm", "-m", help="MLLM that captions / answers on every path."),
    mllm_weights: str | None = typer.Option(None, "--mllm-weights", help="MLLM hub id or local folder."),
    mllm_opt: list[str] | None = typer.Option(None, "--mllm-opt", help="Other MLLM option, e.g. dtype=bfloat16."),
    caption_prompt: str | None = typer.Option(None, "--caption-prompt", help="Prompt that asks the MLLM for a caption."),
    max_new_tokens: int = typer.Option(30, "--max-new-tokens", help="Longest caption or answer, in tokens."),
    caption_tokenizer: str = typer.Option("auto", "--caption-tokenizer", help="auto | ptb (Java) | simple."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Result folder (default: evals/<name>, numbered)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results already in --out."),
    tiny: bool = typer.Option(False, "--tiny", help="Tiny random-init codec/encoder/MLLM built here (not from a neck)."),
    random_init: bool = typer.Option(False, "--random-init", help="Real-size random weights for components built here."),
    codec_weights: Path | None = typer.Option(None, "--codec-weights", help="Codec weights (the necks' codec, or --codec's)."),
    encoder_weights: Path | None = typer.Option(None, "--encoder-weights", help="Encoder weights the necks were trained with."),
    codec_opt: list[str] | None = typer.Option(None, "--codec-opt", help="Other option of --codec, name=value."),
    full_size: bool = typer.Option(False, "--full-size", help="Compress whole images instead of the 256x256 centre crops."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate the first N images only."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images of one size per batch through codec, neck, encoder, MLLM."),
    preprocess: str = typer.Option("neckkit", "--preprocess", help="neckkit, or paper: the authors' PIL bicubic crops and unclamped resizes."),
    level: list[float] | None = typer.Option(
        None, "--level", "-l", help="Rate level of variable-rate codecs to evaluate (repeat; default: every level "
        "each neck was trained on, every level of --codec); a per-level neck keeps its own level."),
    target_bpp: list[str] | None = typer.Option(
        None, "--target-bpp", help="With an image --codec (jpeg, avif, ...): the qualities whose payload bpp on these "
        "images lands nearest each target (repeat or comma-separate, e.g. 0.05,0.1,0.2,0.4), instead of --quality."),
    anchor: list[str] | None = typer.Option(None, "--anchor", help="Curve to compute BD-rates against too, e.g. neck/d1/tic (repeat)."),
    rate: str = typer.Option("payload", "--rate", help="Rate axis of plots and BD-rates: payload (entropy-coded "
                             "bytes), file (the whole .nk file) or estimated (likelihoods, the paper's)."),
    tasks_option: list[str] | None = typer.Option(
        None, "--tasks", help="lmms-eval tasks answered by --mllm on every rate point and path (repeat or "
        "comma-separate), e.g. neckkit_yesno,neckkit_caption (offline) or mme,pope; needs neckkit[lmms]."),
    include_path: list[Path] | None = typer.Option(None, "--include-path", help="Folder of more lmms-eval task YAMLs."),
    task_limit: int | None = typer.Option(None, "--task-limit", min=1, help="First N documents of each task only."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows, failures and files as JSON."),
) -> None:
    """Rate vs. task quality for necks and codec qualities, with the uncompressed and Reconstruction baselines."""
    from neckkit.evaluation.rate_axis import rate_axis

    axis = rate_axis(rate)  # UsageError for anything but file, payload, estimated (or their row fields)
    if caption_tokenizer not in ("auto", "ptb", "simple"):
        raise UsageError(f"--caption-tokenizer must be auto, ptb or simple, got {caption_tokenizer!r}")
    if (captions or questions) and mllm is None:
        raise UsageError("--captions and --questions are answered by an MLLM: pass --mllm NAME")
    task_names = [name.strip() for item in tasks_option or [] for name in item.split(",") if name.strip()]
    if (task_names or include_path or task_limit) and mllm is None:
        raise UsageError("--tasks are answered by an MLLM on every path: pass --mllm NAME")
    if (include_path or task_limit) and not task_names:
        raise UsageError("--include-path and --task-limit go with --tasks NAME")
    if task_names:
        from neckkit.lmms import require_lmms_eval

        require_lmms_eval()  # one line naming the extra, before anything loads
    if quality and codec is None:
        raise UsageError("--quality needs --codec NAME")
    targets: list[float] = []
    if target_bpp:
        from neckkit.evaluation.target_rate import parse_targets

        if codec is None or quality:
            raise UsageError("--target-bpp chooses the qualities of --codec NAME: pass --codec, and no --quality")
        if not ctx.obj.host.components("codec").get(codec).info.image_codec:
            raise UsageError(f"--target-bpp picks qualities of an image codec (jpeg, webp, avif, heif, jxl, vtm); "
                             f"{codec!r} is a learned codec: pass its --quality or --level values")
        targets = parse_targets(target_bpp)
    if not neck and codec is None:
        raise UsageError("nothing to evaluate: pass --neck CKPT (repeatable) and/or --codec NAME --quality Q")
    host, taken = ctx.obj.host, set()
    c_weights = str(codec_weights) if codec_weights is not None else None
    e_weights = str(encoder_weights) if encoder_weights is not None else None
    quality_points: list[tuple[int | None, dict[str, Any]]] = []
    if codec is not None:  # checked before anything loads: e.g. --tiny with --quality is refused here
        for q in quality or [None]:
            options = component_options(codec_opt, quality=q, weights=None if neck else c_weights, tiny=tiny,
                                        random_init=random_init)
            check_component_options(host, "codec", codec, options)
            quality_points.append((q, options))
    if not neck and encoder is None:
        raise UsageError("pass --encoder NAME: with no --neck there is no encoder to read the images")
    for checkpoint_path in neck or []:
        check_neck(checkpoint_path)
    if encoder is not None:
        check_component(host, "encoder", encoder)
    if mllm is not None:
        check_component(host, "mllm", mllm)
    for path, flag in ((codec_weights, "--codec-weights"), (captions, "--captions"), (questions, "--questions")):
        check_file(path, flag)
    check_folder(data, "--data")
    for folder in include_path or []:
        check_folder(folder, "--include-path")
    manager = None
    if task_names:
        from neckkit.lmms.benchmarks import check_tasks, task_manager

        manager = task_manager(list(include_path or []))
        check_tasks(manager, task_names)

    import torch

    from neckkit.config.paper import DataConfig
    from neckkit.evaluation.bd_rate import METHODS, PRIMARY, bd_table
    from neckkit.evaluation.report import json_safe, plot_rate_quality, table, write_bd_csv, write_csv, write_json
    from neckkit.evaluation.sweep import DEFAULT_CAPTION_PROMPT, Evaluator, RatePoint
    from neckkit.host.placeholders import built_placeholders, placeholder_flag
    from neckkit.interfaces.preprocess import PREPROCESS_MODES, preprocessing
    from neckkit.training.data import open_image_set
    from neckkit.training.distributed import World, device_for

    started = time.perf_counter()
    if preprocess not in PREPROCESS_MODES:
        raise UsageError(f"--preprocess must be one of {', '.join(PREPROCESS_MODES)}, got {preprocess!r}")
    points, checkpoints, encoder_model = neck_points(host, list(neck or []), c_weights, e_weights, taken, level)
    encoder_name = checkpoints[0].meta.encoder.name if checkpoints else encoder
    if encoder_model is None:
        e_options = component_options(None, weights=e_weights, tiny=tiny, random_init=random_init)
        encoder_name, encoder_model = build_component(host, "encoder", encoder, e_options)
    elif encoder is not None and encoder != encoder_name:
        raise NeckkitError(f"--encoder {encoder} is not the encoder the necks were trained for, {encoder_name!r}")
    if codec is not None:
        from neckkit.evaluation.level_points import codec_levels
        from neckkit.interfaces.image_codec import is_image_codec

        for q, options in ([] if targets else quality_points):
            name, model = build_component(host, "codec", codec, options)
            model = model if is_image_codec(model) else model.eval()  # an image codec is no nn.Module
            base = f"{name} q{q}" if q is not None else name
            for at in codec_levels(model, level, f"--codec {codec}"):
                label = unique(base if at is None else f"{base} L{at:g}", taken)
                points.append(RatePoint(label, name, model, stored_options(options), info={"quality": q}, level=at))

    data_config = DataConfig(preprocess=preprocess)
    images = open_image_set(data, data_config, split="eval")
    root = data if data is not None else Path(images.paths[0]).parent
    indices = list(range(len(images)))[:limit]
    keys = [Path(images.paths[i]).relative_to(root).as_posix() for i in indices]
    rate_targets: list[dict[str, Any]] = []
    if targets:  # the qualities that land nearest each target bpp, on the images evaluated below
        rate_targets = target_points(host, codec, quality_points[0][1], targets, images, indices, full_size, points, taken)
    tasks = annotation_tasks(images, indices, keys, captions, questions)
    tasks.generation = {"max_new_tokens": max_new_tokens}
    mllm_name = None
    if mllm is not None:
        mllm_name, tasks.mllm = load_mllm(host, mllm, mllm_weights, mllm_opt, tiny, checkpoints, encoder_name)
        tasks.caption_prompt = caption_prompt if caption_prompt is not None else DEFAULT_CAPTION_PROMPT

    announce_placeholders()  # every component is built: say so now if any has random weights
    target = output_dir(out, points[0].label if points else "eval", overwrite)
    torch_device = device_for(World(), device)
    for point in points:
        if hasattr(point.codec, "to"):  # an image codec (JPEG, AVIF...) runs in its library, on the CPU
            point.codec.to(torch_device)
        if point.neck is not None:
            point.neck.to(torch_device)
    encoder_model.eval().to(torch_device)
    if tasks.mllm is not None:
        tasks.mllm.to(torch_device)
    evaluator = Evaluator(points, encoder_model, tasks, torch_device)
    for notice in evaluator.notices:
        typer.echo(f"Notice: {notice}", err=True)
    read_failures = []
    batch_keys: list[str] = []
    batch_images: list[Any] = []  # [1, 3, H, W] each, one size

    def flush() -> None:
        if batch_keys:
            evaluator.evaluate_batch(list(batch_keys), torch.cat(batch_images))
            batch_keys.clear()
            batch_images.clear()

    loop_started = time.perf_counter()
    with preprocessing(preprocess):
        for index, key in progress(list(zip(indices, keys, strict=True)), "evaluating", enabled=not (no_progress or as_json)):
            try:
                image = read_image(images, index, full_size)
            except NeckkitError as error:
                read_failures.append({"image": key, "point": "read", "error": str(error)})
                continue
            if batch_images and (image.shape != batch_images[0].shape or len(batch_images) >= batch_size):
                flush()
            batch_keys.append(key)
            batch_images.append(image)
        flush()
    stages = {"load": round(loop_started - started, 3), "evaluate": round(time.perf_counter() - loop_started, 3)}

    scoring_started = time.perf_counter()
    rows, scoring = evaluator.rows({"tokenizer": caption_tokenizer})
    stages["score"] = round(time.perf_counter() - scoring_started, 3)
    failures = read_failures + evaluator.failures
    evaluated = sum(1 for record in evaluator.records if record["path"] == "uncompressed")
    title = f"{', '.join(sorted({p.codec_name for p in points}))} -> {encoder_name}, {evaluated} images"
    result: dict[str, Any] = {
        "data": str(data) if data is not None else "bundled photos",
        "images": len(indices),
        "evaluated": evaluated,
        "crop": None if full_size else data_config.crop,
        "preprocess": preprocess,
        "encoder": encoder_name,
        "mllm": mllm_name,
        "rate_axis": axis.field,
        "rate_axis_description": axis.description,
        **placeholder_flag(built_placeholders()),
        "points": [{"label": p.label, "codec": p.codec_name, "fingerprint": p.fingerprint, "paths": list(p.paths),
                    "level": p.level, **p.info} for p in points],
        "caption_scoring": scoring,
        "notices": evaluator.notices,
        "rows": rows,
        "bd_method": {"primary": PRIMARY, "methods": list(METHODS),
                      "note": "pchip: bjontegaard package (Hermite); cubic: VCEG-M33 cubic polynomial fit (MPEG-style)"},
        "bd_rates": bd_table(rows, axis.field, list(anchor or []), unit=axis.unit),
        "rate_targets": rate_targets,
        "failures": failures,
        "records": evaluator.records,
        "batch_size": batch_size,
        "seconds": round(time.perf_counter() - started, 3),
        "seconds_by_stage": stages,
    }
    if evaluated == 0:
        raise NeckkitError(f"no image could be evaluated ({len(failures)} failures; first: {failures[0]['error'] if failures else 'none'})")
    from neckkit.files import staged_files

    benchmark_columns: dict[str, bool] = {}
    with staged_files(target) as staging:  # the files (and lmms/) replace an old set together, at the end
        if task_names:
            benchmark_columns = benchmark_sweep(result, rows, points, checkpoints, mllm_name, tasks.mllm, task_names,
                                                manager, staging / "lmms", list(include_path or []), task_limit,
                                                batch_size, max_new_tokens, list(anchor or []), axis, quiet=as_json)
        write_json(staging / "eval.json", result)
        write_csv(staging / "eval.csv", rows, [*BENCHMARK_COLUMNS, *benchmark_columns] if task_names else [])
        write_bd_csv(staging / "bd_rate.csv", result["bd_rates"])
        plot_rate_quality(staging / "rate_quality.png", rows, axis.name, title, result["bd_rates"],
                          plumbing_only=result["plumbing_only"], benchmark={name: name for name in benchmark_columns},
                          benchmark_rate=result["benchmarks"]["rate_field"] if task_names else None)
    files = {"json": str(target / "eval.json"), "csv": str(target / "eval.csv"), "bd_csv": str(target / "bd_rate.csv"),
             "plot": str(target / "rate_quality.png")}
    if task_names:
        files["lmms"] = str(target / "lmms")
    if as_json:
        summary = {key: value for key, value in result.items() if key != "records"} | {"files": files}
        typer.echo(json.dumps(json_safe(summary), indent=2))
    else:
        columns, cells = table(rows, {name: name for name in benchmark_columns})
        print_table(columns, cells, title=title)
        for line in bd_lines(result["bd_rates"], PRIMARY, axis.unit):
            typer.echo(line)
        extra = ", lmms/ (lmms-eval results and per-image rates)" if task_names else ""
        typer.echo(f"Results in {target}: eval.json, eval.csv, bd_rate.csv, rate_quality.png{extra} "
                   f"({result['seconds']:.1f} s)")
    for failure in failures:
        typer.echo(f"Warning: {failure['image']} at {failure['point']}: {failure['error']}", err=True)
    if failures:
        typer.echo(f"{len(failures)} failure(s) counted in eval.json; the other images were evaluated", err=True)
