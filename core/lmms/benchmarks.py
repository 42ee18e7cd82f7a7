"""``neckkit eval --tasks``: lmms-eval benchmarks over every rate point and path of a sweep, in one process.

Each (rate point, path) of the sweep becomes a :class:`~neckkit.lmms.route.Route` sharing the one loaded MLLM,
and lmms-eval's ``simple_evaluate`` runs the tasks through it (:class:`~neckkit.lmms.model.NeckkitLMM`). The
scores land in the sweep's rows as ``<task>/<metric>`` beside ``benchmark_bpp`` / ``benchmark_payload_bpp``:
the mean rate of the benchmark's own images (each counted once, however many questions it has), read from
the per-image rates file the model writes. BD-rates of benchmark metrics are taken on those rates.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neckkit.errors import NeckkitError
from neckkit.lmms.route import Route

__all__ = ["BENCHMARK_RATE_FIELDS", "BenchmarkRun", "benchmark_rate_field", "read_rates", "run_tasks", "task_manager"]

BENCHMARK_RATE_FIELDS = {"bpp": "benchmark_bpp", "payload_bpp": "benchmark_payload_bpp"}
SKIPPED_METRICS = ("alias", "samples")


@dataclass
class BenchmarkRun:
    """One route's benchmark results: scores by ``task/metric``, whether higher is better, the images' rates."""

    label: str
    path: str
    scores: dict[str, float] = field(default_factory=dict)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    rates: dict[str, Any] = field(default_factory=dict)  # benchmark_bpp, benchmark_payload_bpp, benchmark_images...
    results_file: str | None = None
    rates_file: str | None = None
    seconds: float = 0.0  # the whole lmms-eval run (documents, coding, answering, scoring)

    def row_fields(self) -> dict[str, Any]:
        """What goes into the sweep's row for this (point, path)."""
        return {**self.rates, **self.scores}


def benchmark_rate_field(rate_field: str) -> str:
    """The benchmark images' rate field for a ``--rate`` row field (the estimated rate is not measured there:
    payload is used)."""
    return BENCHMARK_RATE_FIELDS.get(rate_field, BENCHMARK_RATE_FIELDS["payload_bpp"])


def task_manager(include_paths: Sequence[Path]) -> Any:
    """lmms-eval's task index with neckkit's local tasks and the user's ``--include-path`` folders.

    lmms-eval logs through loguru, whose default prints DEBUG lines while it indexes its 338 tasks: from here on
    this process shows its warnings and errors only.
    """
    import sys

    from lmms_eval.tasks import TaskManager
    from loguru import logger

    from neckkit.lmms.tasks import TASK_DIR

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    paths = [str(TASK_DIR), *(str(path) for path in include_paths)]
    return TaskManager(verbosity="WARNING", include_path=paths)


def check_tasks(manager: Any, tasks: Sequence[str]) -> None:
    """Refuse task names lmms-eval does not know, in one line with the closest names."""
    import difflib

    known = set(manager.all_tasks)
    missing = [name for name in tasks if name not in known]
    if missing:
        hints = {name: difflib.get_close_matches(name, sorted(known), n=3) for name in missing}
        shown = "; ".join(f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                          for name, close in hints.items())
        raise NeckkitError(f"lmms-eval has no task {shown}; neckkit's offline tasks are neckkit_yesno and "
                           "neckkit_caption, other local tasks need --include-path DIR")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "point"


def run_tasks(route: Route, tasks: Sequence[str], manager: Any, out_dir: Path, *, limit: int | None = None,
              batch_size: int = 8, max_new_tokens: int | None = None) -> BenchmarkRun:
    """The tasks through one route: scores, and the rates file (one row per question) under ``out_dir``."""
    from lmms_eval.evaluator import simple_evaluate

    from neckkit.lmms.model import NeckkitLMM

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = _slug(f"{route.label}__{route.path}")
    rates_file = out_dir / f"{stem}.rates.jsonl"
    rates_file.unlink(missing_ok=True)  # this run's rows only
    started = time.perf_counter()
    model = NeckkitLMM(route=route, rates_file=str(rates_file), batch_size=batch_size, max_new_tokens=max_new_tokens)
    results = simple_evaluate(  # greedy answers need no seeds: leave this process's random states alone
        model=model, tasks=list(tasks), task_manager=manager, limit=limit, log_samples=False, bootstrap_iters=0,
        batch_size=batch_size, verbosity="WARNING", random_seed=None, numpy_random_seed=None, torch_random_seed=None,
        fewshot_random_seed=None)
    if not results or "results" not in results:
        raise NeckkitError(f"lmms-eval gave no results for {route.label} ({route.path})")
    run = BenchmarkRun(route.label, route.path, results_file=str(out_dir / f"{stem}.results.json"),
                       rates_file=str(rates_file))
    for task, metrics in results["results"].items():
        better = results.get("higher_is_better", {}).get(task, {})
        for key, value in metrics.items():
            name, _, filter_name = key.partition(",")
            if name in SKIPPED_METRICS or "_stderr" in name or not isinstance(value, (int, float)):
                continue
            column = f"{task}/{name}" if filter_name in ("", "none") else f"{task}/{name}[{filter_name}]"
            run.scores[column] = float(value)
            run.higher_is_better[column] = bool(better.get(name, True))
    run.rates = read_rates(rates_file)
    run.seconds = round(time.perf_counter() - started, 3)
    summary = {"label": route.label, "path": route.path, "scores": run.scores, "rates": run.rates, "seconds": run.seconds,
               "higher_is_better": run.higher_is_better, "lmms_eval": {
                   key: results.get(key) for key in ("results", "configs", "versions", "n-shot", "higher_is_better")}}
    Path(run.results_file).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")  # type: ignore[arg-type]
    return run


def read_rates(path: Path) -> dict[str, Any]:
    """Mean rates over the benchmark's distinct images (one image asked several questions counts once)."""
    images: dict[str, Mapping[str, Any]] = {}
    failures = questions = 0
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            questions += 1
            if row.get("error"):
                failures += 1
                continue
            images.setdefault(row["image"], row)
    summary: dict[str, Any] = {"benchmark_images": len(images), "benchmark_questions": questions,
                               "benchmark_failures": failures}
    for source, target in BENCHMARK_RATE_FIELDS.items():
        values = [row[source] for row in images.values() if row.get(source) is not None]
        summary[target] = sum(values) / len(values) if values else None
    return summary


def sweep_routes(rows: Sequence[Mapping[str, Any]], points: Sequence[Any], checkpoints: Sequence[Any], mllm_name: str,
                 mllm: Any) -> list[tuple[int, Route, tuple[Any, ...]]]:
    """A route for each row of an evaluation (``uncompressed``, each point's ``reconstruction`` and ``neck``), with
    the key under which two rows read the same thing (points sharing one codec at one rate: one Reconstruction)."""
    from neckkit.serving.answerer import Answerer

    by_label = {point.label: point for point in points}
    by_path = {str(checkpoint.path): checkpoint for checkpoint in checkpoints}
    plain = Answerer(None, mllm_name, mllm)  # the uncompressed and Reconstruction paths: pixels in
    necks: dict[int, Answerer] = {}
    routes = []
    for index, row in enumerate(rows):
        if row["path"] == "uncompressed":
            routes.append((index, Route("uncompressed", plain), ("uncompressed",)))
            continue
        point = by_label[row["point"]]
        if row["path"] == "reconstruction":
            key = ("reconstruction", *point.coding_key)
            routes.append((index, Route("reconstruction", plain, label=point.label, codec_name=point.codec_name,
                                        codec=point.codec, options=point.codec_options, level=point.level), key))
            continue
        if id(point.neck) not in necks:
            checkpoint = by_path[point.info["checkpoint"]]
            necks[id(point.neck)] = Answerer(checkpoint, mllm_name, mllm, codec_name=point.codec_name,
                                             codec=point.codec, neck=point.neck)
        routes.append((index, Route("neck", necks[id(point.neck)], label=point.label, level=point.level),
                       ("neck", point.label)))
    return routes


def run_sweep(rows: list[dict[str, Any]], points: Sequence[Any], checkpoints: Sequence[Any], mllm_name: str, mllm: Any,
              tasks: Sequence[str], manager: Any, out_dir: Path, *, limit: int | None = None, batch_size: int = 8,
              max_new_tokens: int | None = None, announce: Any = None) -> tuple[list[BenchmarkRun], dict[str, bool]]:
    """The tasks on every row's path; each row gains its benchmark fields. Returns the runs and, for each score
    column, whether higher is better. ``announce(text)`` is told which run starts."""
    routes = sweep_routes(rows, points, checkpoints, mllm_name, mllm)
    done: dict[tuple[Any, ...], BenchmarkRun] = {}
    runs, better = [], {}
    try:
        for number, (index, route, key) in enumerate(routes, start=1):
            if key not in done:
                if announce is not None:
                    announce(f"benchmark {number}/{len(routes)}: {', '.join(tasks)} on {route.label} ({route.path})")
                done[key] = run_tasks(route, tasks, manager, out_dir, limit=limit, batch_size=batch_size,
                                      max_new_tokens=max_new_tokens)
                runs.append(done[key])
                better.update(done[key].higher_is_better)
            rows[index].update(done[key].row_fields())
    finally:
        for answerer in {id(route.answerer): route.answerer for _, route, _ in routes}.values():
            answerer.close()
    return runs, better
