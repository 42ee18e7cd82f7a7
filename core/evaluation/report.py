"""``neckkit eval``'s outputs: JSON, CSV, the on-screen table and rate-vs-quality plots."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neckkit.files import atomic_path

# Row fields in CSV/table order, and how each is drawn (None: not plotted).
ROW_FIELDS = (
    "point", "path", "codec", "scenario", "rate_lambda", "quality", "images",
    "bpp", "payload_bpp", "estimated_bpp", "psnr", "ms_ssim", "embedding_mse", "embedding_cosine",
    "top1", "top5", "bleu4", "cider", "meteor", "spice", "vqa_accuracy", "checkpoint",
)
PLOTTED = {
    "embedding_cosine": "embedding cosine (higher is better)",
    "embedding_mse": "embedding MSE (lower is better)",
    "top1": "zero-shot top-1 accuracy",
    "top5": "zero-shot top-5 accuracy",
    "bleu4": "BLEU-4",
    "cider": "CIDEr",
    "meteor": "METEOR",
    "spice": "SPICE",
    "vqa_accuracy": "VQA accuracy",
    "psnr": "PSNR of the decoded image (dB)",
    "ms_ssim": "MS-SSIM of the decoded image",
}
PATH_STYLE = {
    "reconstruction": {"marker": "o", "linestyle": "-", "color": "tab:blue", "label": "Reconstruction"},
    "neck": {"marker": "s", "linestyle": "-", "color": "tab:orange", "label": "transform-neck"},
    "uncompressed": {"linestyle": "--", "color": "black", "label": "uncompressed"},
}
TABLE_HEADERS = {
    "point": "point", "path": "path", "images": "n", "bpp": "bpp", "estimated_bpp": "est. bpp", "psnr": "PSNR",
    "ms_ssim": "MS-SSIM", "embedding_mse": "emb. MSE", "embedding_cosine": "cosine", "top1": "top-1", "top5": "top-5",
    "bleu4": "BLEU-4", "cider": "CIDEr", "meteor": "METEOR", "spice": "SPICE", "vqa_accuracy": "VQA",
}


def json_safe(value: Any) -> Any:
    """JSON cannot hold inf/NaN (a lossless PSNR): they are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path, result: dict[str, Any]) -> Path:
    """The whole result (settings, rows, per-image records, failures), written atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """One line per (rate point, path); empty cells where a metric does not apply."""
    return _write_table(path, rows, ROW_FIELDS)


def _write_table(path: Path, entries: Sequence[dict[str, Any]], fields: Sequence[str]) -> Path:
    """A CSV of ``fields``, written atomically; empty cells for missing values."""
    with atomic_path(path) as temporary:
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
            writer.writeheader()
            for entry in entries:
                writer.writerow({key: "" if entry.get(key) is None else entry[key] for key in fields})
    return path


def plotted_metrics(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The metrics with at least one value on a compressed path, in :data:`PLOTTED` order."""
    return [name for name in PLOTTED if any(row.get(name) is not None for row in rows if row["path"] != "uncompressed")]


BD_FIELDS = ("test", "anchor", "metric", "method", "bd_rate", "bd_quality", "reason")


def write_bd_csv(path: Path, entries: Sequence[dict[str, Any]]) -> Path:
    """One line per (test curve, anchor curve, metric, method): BD-rate (%), BD-quality, or the refusal reason."""
    return _write_table(path, entries, BD_FIELDS)


def plot_rate_quality(path: Path, rows: Sequence[dict[str, Any]], rate: str = "bpp", title: str = "",
                      bd_entries: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Rate-vs-quality panels, one per metric: one curve per (path, scenario, codec) series, uncompressed
    as a dashed line; neck curves carry their BD-rate (pchip) in the legend.

    Each marker is labelled with its rate point. Returns the metrics drawn.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from neckkit.evaluation.bd_rate import curves, legend_note

    metrics = plotted_metrics(rows)
    columns = min(3, max(1, len(metrics)))
    lines = max(1, math.ceil(len(metrics) / columns))
    figure = Figure(figsize=(4.6 * columns, 3.6 * lines), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for axis, metric in zip(axes, metrics, strict=False):
        for number, (series, series_rows) in enumerate(curves(rows).items()):
            curve = sorted(
                (row for row in series_rows if row.get(metric) is not None and row.get(rate) is not None),
                key=lambda row: row[rate],
            )
            if curve:
                style = dict(PATH_STYLE[curve[0]["path"]])
                style["color"] = f"C{number % 10}"
                note = legend_note(bd_entries, series, metric)
                style["label"] = series + (f"\n{note}" if note else "")
                axis.plot([row[rate] for row in curve], [row[metric] for row in curve], **style)
                for row in curve:
                    axis.annotate(row["point"], (row[rate], row[metric]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for row in rows:
            if row["path"] == "uncompressed" and row.get(metric) is not None:
                axis.axhline(row[metric], **PATH_STYLE["uncompressed"])
        axis.set_xlabel("estimated bits per pixel" if rate == "estimated_bpp" else "bits per pixel (.nk file)")
        axis.set_ylabel(PLOTTED[metric])
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    for axis in axes[len(metrics):]:
        axis.set_visible(False)
    if not metrics:
        axes[0].text(0.5, 0.5, "no compressed image was evaluated", ha="center", va="center")
    if title:
        figure.suptitle(title)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    return metrics


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def table(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Columns (those with a value somewhere) and string cells for the on-screen table."""
    columns = [name for name in TABLE_HEADERS if any(row.get(name) is not None for row in rows)]
    return [TABLE_HEADERS[name] for name in columns], [[_cell(row.get(name)) for name in columns] for row in rows]
