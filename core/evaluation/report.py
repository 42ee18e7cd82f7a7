"""``neckkit eval``'s outputs: JSON, CSV, the on-screen table and rate-vs-quality plots.

Where the plot puts labels and how it ranges each axis is :mod:`neckkit.evaluation.plot_layout`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neckkit.evaluation.plot_layout import PLUMBING_ONLY, PanelLayout, PlotLayout, place_labels, value_range
from neckkit.evaluation.rate_axis import DEFAULT_RATE_AXIS, rate_axis
from neckkit.files import atomic_path

# Row fields in CSV/table order, and how each is drawn (None: not plotted).
ROW_FIELDS = (
    "point", "path", "codec", "scenario", "rate_lambda", "quality", "level", "neck_variant", "images",
    "bpp", "payload_bpp", "estimated_bpp", "psnr", "ms_ssim", "embedding_mse", "embedding_cosine",
    "top1", "top5", "bleu4", "cider", "meteor", "spice", "vqa_accuracy", "codec_fingerprint", "checkpoint",
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
    "point": "point", "path": "path", "level": "level", "images": "n", "bpp": "file bpp", "payload_bpp": "payload bpp",
    "estimated_bpp": "est. bpp", "psnr": "PSNR",
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


def write_csv(path: Path, rows: Sequence[dict[str, Any]], extra_fields: Sequence[str] = ()) -> Path:
    """One line per (rate point, path); empty cells where a metric does not apply. ``extra_fields``: benchmark
    columns (``benchmark_payload_bpp``, ``<task>/<metric>``...) after :data:`ROW_FIELDS`."""
    return _write_table(path, rows, [*ROW_FIELDS, *extra_fields])


def _write_table(path: Path, entries: Sequence[dict[str, Any]], fields: Sequence[str]) -> Path:
    """A CSV of ``fields``, written atomically; empty cells for missing values."""
    with atomic_path(path) as temporary:
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
            writer.writeheader()
            for entry in entries:
                writer.writerow({key: "" if entry.get(key) is None else entry[key] for key in fields})
    return path


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def plotted_metrics(rows: Sequence[dict[str, Any]], extra: Sequence[str] = ()) -> list[str]:
    """The metrics with at least one value on a compressed path, in :data:`PLOTTED` order, then ``extra``'s."""
    return [name for name in [*PLOTTED, *extra]
            if any(row.get(name) is not None for row in rows if row["path"] != "uncompressed")]


BD_FIELDS = ("test", "anchor", "metric", "method", "rate_axis", "bd_rate", "bd_quality", "reason")


def write_bd_csv(path: Path, entries: Sequence[dict[str, Any]]) -> Path:
    """One line per (test curve, anchor curve, metric, method): BD-rate (%), BD-quality, or the refusal reason."""
    return _write_table(path, entries, BD_FIELDS)


def plot_rate_quality(path: Path, rows: Sequence[dict[str, Any]], rate: str = DEFAULT_RATE_AXIS, title: str = "",
                      bd_entries: Sequence[dict[str, Any]] = (), plumbing_only: bool = False,
                      benchmark: Mapping[str, str] | None = None, benchmark_rate: str | None = None) -> PlotLayout:
    """Rate-vs-quality panels, one per metric: one curve per series (:func:`neckkit.evaluation.bd_rate.curves`),
    uncompressed as a dashed line; neck curves carry their BD-rate (pchip) in the legend.

    ``rate`` is a ``--rate`` axis (or its row field), named in the x label. Each marker is labelled with its rate
    point, labels moved apart where markers are close; a metric whose values do not differ gets a flat axis
    and a "no difference" note. ``plumbing_only`` adds :data:`PLUMBING_ONLY` to the title. ``benchmark``: more
    panels, metric -> y label (lmms-eval scores), drawn against the row field ``benchmark_rate`` (the rate of
    the benchmark's own images).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from neckkit.evaluation.bd_rate import curves, legend_note

    axis_choice = rate_axis(rate)
    field_name = axis_choice.field
    full_title = "\n".join(part for part in (title, PLUMBING_ONLY if plumbing_only else "") if part)
    layout = PlotLayout(full_title, axis_choice.label)
    labels = {**PLOTTED, **(benchmark or {})}
    x_fields = {metric: benchmark_rate or field_name for metric in benchmark or {}}
    metrics = plotted_metrics(rows, list(benchmark or {}))
    columns = min(3, max(1, len(metrics)))
    lines = max(1, math.ceil(len(metrics) / columns))
    figure = Figure(figsize=(4.6 * columns, 3.6 * lines), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    series = curves(rows)
    markers: list[tuple[Any, list[dict[str, Any]], str]] = []  # (axis, rows whose markers are labelled, x field)
    for axis, metric in zip(axes, metrics, strict=False):
        x_field = x_fields.get(metric, field_name)
        drawn: list[dict[str, Any]] = []
        for number, (name, series_rows) in enumerate(series.items()):
            curve = sorted((row for row in series_rows if _finite(row.get(metric)) and _finite(row.get(x_field))),
                           key=lambda row: row[x_field])  # a lossless PSNR (inf) has no place on the axis
            if curve:
                style = dict(PATH_STYLE[curve[0]["path"]])
                style["color"] = f"C{number % 10}"
                note = legend_note(bd_entries, name, metric)
                style["label"] = name + (f"\n{note}" if note else "")
                axis.plot([row[x_field] for row in curve], [row[metric] for row in curve], **style)
                drawn.extend(curve)
        baselines = [row[metric] for row in rows if row["path"] == "uncompressed" and _finite(row.get(metric))]
        for value in baselines:
            axis.axhline(value, **PATH_STYLE["uncompressed"])
        y_range = value_range([row[metric] for row in drawn] + baselines)
        if y_range is not None and y_range.flat:
            axis.set_ylim(y_range.low, y_range.high)
            axis.text(0.5, 0.06, y_range.note, transform=axis.transAxes, ha="center", fontsize=7, color="dimgray")
        axis.ticklabel_format(axis="y", useOffset=False)  # never a "1e-17" offset above the axis
        axis.set_xlabel(axis_choice.label if x_field == field_name else f"{x_field} (the benchmark's images)")
        axis.set_ylabel(labels[metric])
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
        layout.panels.append(PanelLayout(metric, y_range))
        markers.append((axis, drawn, x_field))
    for axis in axes[len(metrics):]:
        axis.set_visible(False)
    if not metrics:
        axes[0].text(0.5, 0.5, "no compressed image was evaluated", ha="center", va="center")
    if full_title:
        figure.suptitle(full_title, color="firebrick" if plumbing_only else "black")
    figure.draw_without_rendering()  # final layout and limits: marker positions in points are known now
    to_points = 72.0 / figure.dpi
    for panel, (axis, drawn, x_field) in zip(layout.panels, markers, strict=True):
        anchors = [(float(x) * to_points, float(y) * to_points)
                   for x, y in (axis.transData.transform((row[x_field], row[panel.metric])) for row in drawn)]
        frame = axis.get_window_extent()
        bounds = (frame.x0 * to_points, frame.y0 * to_points, frame.x1 * to_points, frame.y1 * to_points)
        legend = axis.get_legend()
        avoid = []
        if legend is not None:  # pinned where "best" put it, so labels can keep clear of it
            box = legend.get_window_extent()
            corner = axis.transAxes.inverted().transform((box.x0, box.y0))
            axis.legend(fontsize=8, loc="lower left", bbox_to_anchor=(float(corner[0]), float(corner[1])))
            avoid.append((box.x0 * to_points, box.y0 * to_points, box.x1 * to_points, box.y1 * to_points))
        panel.labels = place_labels(anchors, [str(row["point"]) for row in drawn], bounds=bounds, avoid=avoid)
        for row, label in zip(drawn, panel.labels, strict=True):
            leader = {"arrowstyle": "-", "color": "gray", "lw": 0.5, "shrinkA": 0, "shrinkB": 3} if label.leader else None
            text = axis.annotate(label.text, (row[x_field], row[panel.metric]), textcoords="offset points",
                                 xytext=label.offset, fontsize=label.fontsize, va="bottom", ha="left", arrowprops=leader)
            text.set_in_layout(False)  # labels must not move the axes they were placed on
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    return layout


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], extra: Mapping[str, str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Columns (those with a value somewhere) and string cells for the on-screen table; ``extra``: more
    columns, row field -> header (benchmark scores)."""
    headers = {**TABLE_HEADERS, **(extra or {})}
    columns = [name for name in headers if any(row.get(name) is not None for row in rows)]
    return [headers[name] for name in columns], [[_cell(row.get(name)) for name in columns] for row in rows]
