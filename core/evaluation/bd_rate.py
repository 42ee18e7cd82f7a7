"""Bjøntegaard deltas between rate-quality curves, with the ``bjontegaard`` package.

Two interpolations are reported: ``pchip`` (piecewise cubic Hermite, the ``bjontegaard`` package's
method used by recent coding-for-VLM papers; the headline number) and ``cubic`` (the classic VCEG-M33
cubic polynomial fit in log-rate that MPEG-style reports, e.g. CompressAI-Vision's, use). Both are
computed and named in the output.

BD-rate is the mean rate difference of the test curve against the anchor at equal quality, in percent
(negative: the test curve needs fewer bits). BD-quality is the mean quality difference at equal rate,
in the metric's unit, signed so that positive is better (for a lower-is-better metric such as embedding
MSE the sign is flipped, and the BD-rate is computed on the negated metric so quality still increases
with rate). A curve with fewer than :data:`MIN_POINTS` points or rates that are not strictly increasing
along its quality is refused with a reason instead of a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

METHODS = ("pchip", "cubic")
PRIMARY = "pchip"
MIN_POINTS = 4
# metric -> True when higher is better
BD_METRICS = {"embedding_cosine": True, "embedding_mse": False, "top1": True, "cider": True, "vqa_accuracy": True}


class CurveRefused(ValueError):
    """A curve BD-rate cannot be computed on; the message is the reason."""


def _points(rates: Sequence[float], quality: Sequence[float], higher_is_better: bool, name: str) -> tuple[list[float], list[float]]:
    pairs = [(float(r), float(q)) for r, q in zip(rates, quality, strict=True) if r is not None and q is not None]
    if len(pairs) < MIN_POINTS:
        raise CurveRefused(f"curve {name!r} has {len(pairs)} point(s); BD-rate needs at least {MIN_POINTS}")
    pairs.sort()
    r = [p[0] for p in pairs]
    q = [p[1] if higher_is_better else -p[1] for p in pairs]
    if any(b <= a for a, b in zip(r, r[1:], strict=False)) or any(r_ <= 0 for r_ in r):
        raise CurveRefused(f"curve {name!r} has repeated or non-positive rates {r}; BD-rate needs distinct positive rates")
    if any(b <= a for a, b in zip(q, q[1:], strict=False)):
        raise CurveRefused(
            f"curve {name!r} is not monotonic: its rate does not increase with quality ({_fmt(r)} vs {_fmt(q)}); "
            "BD-rate needs quality rising strictly with rate"
        )
    return r, q


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def _bd(kind: str, anchor_rates: Sequence[float], anchor_quality: Sequence[float], test_rates: Sequence[float],
        test_quality: Sequence[float], method: str, higher_is_better: bool, names: tuple[str, str]) -> float:
    """``bjontegaard.bd_rate`` or ``bjontegaard.bd_psnr`` on checked curves; :class:`CurveRefused` otherwise."""
    import bjontegaard

    ra, qa = _points(anchor_rates, anchor_quality, higher_is_better, names[0])
    rt, qt = _points(test_rates, test_quality, higher_is_better, names[1])
    function = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
    try:
        return float(function(ra, qa, rt, qt, method=method, require_matching_points=False, min_overlap=0))
    except ValueError as error:
        raise CurveRefused(f"{names[1]} against {names[0]}: {error}") from error


def bd_rate(anchor_rates: Sequence[float], anchor_quality: Sequence[float], test_rates: Sequence[float],
            test_quality: Sequence[float], method: str = PRIMARY, higher_is_better: bool = True,
            names: tuple[str, str] = ("anchor", "test")) -> float:
    """BD-rate of test against anchor in percent; :class:`CurveRefused` when a curve cannot be used."""
    return _bd("rate", anchor_rates, anchor_quality, test_rates, test_quality, method, higher_is_better, names)


def bd_quality(anchor_rates: Sequence[float], anchor_quality: Sequence[float], test_rates: Sequence[float],
               test_quality: Sequence[float], method: str = PRIMARY, higher_is_better: bool = True,
               names: tuple[str, str] = ("anchor", "test")) -> float:
    """Mean quality gain of test over anchor at equal rate (positive: better), in the metric's unit."""
    return _bd("quality", anchor_rates, anchor_quality, test_rates, test_quality, method, higher_is_better, names)


def series_key(row: dict[str, Any]) -> str:
    """The curve a row belongs to: one per (path, scenario, codec)."""
    if row["path"] == "reconstruction":
        return f"reconstruction/{row.get('codec')}"
    return f"neck/{row.get('scenario') or '?'}/{row.get('codec')}"


def curves(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Compressed rows grouped by :func:`series_key`."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["path"] != "uncompressed":
            out.setdefault(series_key(row), []).append(row)
    return out


def bd_table(rows: Sequence[dict[str, Any]], rate: str = "bpp", anchors: Sequence[str] = ()) -> list[dict[str, Any]]:
    """BD-rate and BD-quality of every neck curve against the same codec's Reconstruction curve and each
    named anchor curve, for every metric of :data:`BD_METRICS` with values, by both methods.

    Each entry: test, anchor, metric, method, bd_rate (percent) / bd_quality, or ``reason`` when refused.
    """
    groups = curves(rows)
    results = []
    for test, test_rows in groups.items():
        if not test.startswith("neck/"):
            continue
        codec = test_rows[0].get("codec")
        targets = [f"reconstruction/{codec}", *[a for a in anchors if a != test]]
        for anchor in dict.fromkeys(targets):
            anchor_rows = groups.get(anchor)
            for metric, higher in BD_METRICS.items():
                if not any(r.get(metric) is not None for r in test_rows):
                    continue
                for method in METHODS:
                    entry: dict[str, Any] = {"test": test, "anchor": anchor, "metric": metric, "method": method,
                                             "bd_rate": None, "bd_quality": None, "reason": None}
                    if anchor_rows is None:
                        entry["reason"] = f"no curve named {anchor!r} (curves: {', '.join(groups)})"
                    else:
                        args = ([r[rate] for r in anchor_rows], [r.get(metric) for r in anchor_rows],
                                [r[rate] for r in test_rows], [r.get(metric) for r in test_rows])
                        try:
                            entry["bd_rate"] = bd_rate(*args, method=method, higher_is_better=higher, names=(anchor, test))
                            gain = bd_quality(*args, method=method, higher_is_better=higher, names=(anchor, test))
                            entry["bd_quality"] = gain
                        except CurveRefused as error:
                            entry["reason"] = str(error)
                    results.append(entry)
    return results


def legend_note(entries: Sequence[dict[str, Any]], test: str, metric: str) -> str:
    """``BD-rate -12.3% vs reconstruction/elic (pchip)`` for a plot legend, or '' when none."""
    parts = [f"BD-rate {e['bd_rate']:+.1f}% vs {e['anchor']} ({e['method']})" for e in entries
             if e["test"] == test and e["metric"] == metric and e["method"] == PRIMARY and e["bd_rate"] is not None]
    return "; ".join(parts)
