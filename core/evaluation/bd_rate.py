"""Bjøntegaard deltas between rate-quality curves, with the ``bjontegaard`` package.

Two interpolations are reported: ``pchip`` (piecewise cubic Hermite, the ``bjontegaard`` package's
method used by recent coding-for-VLM papers; the headline number) and ``cubic`` (the classic VCEG-M33
cubic polynomial fit in log-rate that MPEG-style reports, e.g. CompressAI-Vision's, use). Both are
computed and named in the output.

BD-rate is the mean rate difference of the test curve against the anchor at equal quality, in percent
(negative: the test curve needs fewer bits); it reads rate as a function of quality, so each curve's
quality must rise strictly with rate (fall, for a lower-is-better metric such as embedding MSE) and the
two curves must share a quality range. BD-quality is the mean quality difference at equal rate, in the
metric's unit, signed so that positive is better; it reads quality as a function of rate, so it needs
distinct rates and a shared rate range only. Anything else is refused with a reason in the metric's
own values and the rate axis' unit, never a NaN.

Curves (:func:`curves`) are grouped by codec identity: a d2/d3 neck brings its own retrained codec, so its
Reconstruction points form their own curve (``reconstruction/d3/tic``), never joined with the base codec's
(``reconstruction/tic``: plain codec qualities and d1 necks); points that share one codec (same
fingerprint) are one Reconstruction point, not repeated ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from neckkit.evaluation.level_points import PER_LEVEL  # one neck per rate level

METHODS = ("pchip", "cubic")
PRIMARY = "pchip"
MIN_POINTS = 4  # the cubic fit has four coefficients; the paper has four rate points
# metric -> True when higher is better
BD_METRICS = {"embedding_cosine": True, "embedding_mse": False, "top1": True, "cider": True, "vqa_accuracy": True}
METRIC_NAMES = {"embedding_cosine": "embedding cosine", "embedding_mse": "embedding MSE", "top1": "top-1 accuracy",
                "cider": "CIDEr", "vqa_accuracy": "VQA accuracy"}
BASE_SCENARIOS = (None, "d1")  # points whose codec is the base codec (not retrained)


class CurveRefused(ValueError):
    """A curve BD-rate cannot be computed on; the message is the reason."""


def _g(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}"


def _distinct(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with enough digits to tell them apart (4 to 10 significant digits)."""
    for digits in range(4, 11):
        if _g(a, digits) != _g(b, digits):
            break
    return _g(a, digits), _g(b, digits)


def _points(rates: Sequence[float | None], quality: Sequence[float | None], name: str, unit: str) -> tuple[list[float], list[float]]:
    """(rates, quality) sorted by rate, in the user's values; refused when too few or rates repeat."""
    pairs = sorted((float(r), float(q)) for r, q in zip(rates, quality, strict=True) if r is not None and q is not None)
    if len(pairs) < MIN_POINTS:
        raise CurveRefused(f"curve {name!r} has {len(pairs)} point(s); BD-rate needs at least {MIN_POINTS} "
                           "(docs/evaluation.md, 'BD-rate offline', makes four with tiny models)")
    r = [p[0] for p in pairs]
    if any(not math.isfinite(v) or v <= 0 for v in r):
        raise CurveRefused(f"curve {name!r} has a non-positive rate ({', '.join(_g(v) for v in r)} {unit}); "
                           "BD-rate needs positive rates")
    repeated = [a for a, b in zip(r, r[1:], strict=False) if b <= a]
    if repeated:
        raise CurveRefused(f"curve {name!r} has two points at {_g(repeated[0])} {unit}; BD-rate needs distinct rates "
                           "(points that share one codec are one point)")
    return r, [p[1] for p in pairs]


def _check_monotonic(r: list[float], q: list[float], higher_is_better: bool, name: str, metric: str, unit: str) -> None:
    """Refused at the first pair of neighbours (by rate) whose quality does not improve, in the user's values."""
    for i in range(len(r) - 1):
        if (q[i + 1] <= q[i]) if higher_is_better else (q[i + 1] >= q[i]):
            direction = "rise" if higher_is_better else "fall"
            (q0, q1), (r0, r1) = _distinct(q[i], q[i + 1]), _distinct(r[i], r[i + 1])
            raise CurveRefused(
                f"curve {name!r}: {metric} does not {direction} monotonically as rate rises: {q0} at {r0} {unit}, "
                f"{q1} at {r1} {unit}; BD-rate needs {metric} to {direction} strictly with rate (BD-quality does not)"
            )


def _check_overlap(anchor: list[float], test: list[float], names: tuple[str, str], what: str, unit: str) -> None:
    if max(min(anchor), min(test)) >= min(max(anchor), max(test)):
        span = lambda values: f"{_g(min(values))}-{_g(max(values))}{unit}"  # noqa: E731
        raise CurveRefused(f"{names[1]} ({span(test)}) and {names[0]} ({span(anchor)}) share no {what} range; "
                           f"the delta is taken at equal {what}")


def _bd(kind: str, anchor_rates: Sequence[float | None], anchor_quality: Sequence[float | None],
        test_rates: Sequence[float | None], test_quality: Sequence[float | None], method: str, higher_is_better: bool,
        names: tuple[str, str], metric: str, unit: str) -> float:
    """``bjontegaard.bd_rate`` or ``bjontegaard.bd_psnr`` on checked curves; :class:`CurveRefused` otherwise."""
    ra, qa = _points(anchor_rates, anchor_quality, names[0], unit)
    rt, qt = _points(test_rates, test_quality, names[1], unit)
    if kind == "rate":
        _check_monotonic(ra, qa, higher_is_better, names[0], metric, unit)
        _check_monotonic(rt, qt, higher_is_better, names[1], metric, unit)
        _check_overlap(qa, qt, names, metric, "")
    else:
        _check_overlap(ra, rt, names, "rate", f" {unit}")
    try:
        import bjontegaard
    except ImportError as error:  # a dependency, but an environment may lack it: rows and plots do not need it
        raise CurveRefused('needs the bjontegaard package: pip install bjontegaard') from error
    sign = 1.0 if higher_is_better else -1.0  # negated: quality rises with rate, a gain is positive
    function = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
    try:
        value = float(function(ra, [sign * q for q in qa], rt, [sign * q for q in qt], method=method,
                               require_matching_points=False, min_overlap=0))
    except (ValueError, AssertionError) as error:
        raise CurveRefused(f"{names[1]} against {names[0]}: {error or type(error).__name__}") from error
    if not math.isfinite(value):
        raise CurveRefused(f"{names[1]} against {names[0]}: the {method} interpolation gave no finite value")
    return value


def bd_rate(anchor_rates: Sequence[float | None], anchor_quality: Sequence[float | None], test_rates: Sequence[float | None],
            test_quality: Sequence[float | None], method: str = PRIMARY, higher_is_better: bool = True,
            names: tuple[str, str] = ("anchor", "test"), metric: str = "quality", unit: str = "bpp") -> float:
    """BD-rate of test against anchor in percent; :class:`CurveRefused` when a curve cannot be used.

    ``metric`` and ``unit`` name the quality and the rate axis in refusal messages.
    """
    return _bd("rate", anchor_rates, anchor_quality, test_rates, test_quality, method, higher_is_better, names, metric, unit)


def bd_quality(anchor_rates: Sequence[float | None], anchor_quality: Sequence[float | None], test_rates: Sequence[float | None],
               test_quality: Sequence[float | None], method: str = PRIMARY, higher_is_better: bool = True,
               names: tuple[str, str] = ("anchor", "test"), metric: str = "quality", unit: str = "bpp") -> float:
    """Mean quality gain of test over anchor at equal rate (positive: better), in the metric's unit."""
    return _bd("quality", anchor_rates, anchor_quality, test_rates, test_quality, method, higher_is_better, names, metric, unit)


def series_key(row: dict[str, Any]) -> str:
    """The curve a row belongs to: ``neck/<scenario>/<codec>``; ``reconstruction/<codec>`` for the base codec
    (codec qualities, d1 necks) and ``reconstruction/<scenario>/<codec>`` for the codecs d2/d3 retrained.

    A variable-rate codec's neck rows name how the neck serves the levels (``neck_variant``):
    ``neck/d1/adaln/elic-vbr`` (one conditioned neck), ``neck/d1/shared/elic-vbr`` (one unconditioned neck
    over all levels), ``neck/d1/per-level/elic-vbr`` (one neck per level: the anchor of the other two).
    """
    codec, scenario = row.get("codec"), row.get("scenario")
    if row["path"] == "reconstruction":
        return f"reconstruction/{codec}" if scenario in BASE_SCENARIOS else f"reconstruction/{scenario}/{codec}"
    variant = row.get("neck_variant")
    return f"neck/{scenario or '?'}/{variant}/{codec}" if variant else f"neck/{scenario or '?'}/{codec}"


def curves(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Compressed rows grouped by :func:`series_key`; Reconstruction rows of one codec (same
    ``codec_fingerprint``, e.g. two d1 necks on one base codec) count once."""
    out: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    for row in rows:
        if row["path"] == "uncompressed":
            continue
        key = series_key(row)
        fingerprint = row.get("codec_fingerprint")
        if row["path"] == "reconstruction" and fingerprint is not None:
            # A variable-rate codec: one point per level; an image codec (one library fingerprint): per quality.
            point = (key, fingerprint, row.get("level"), row.get("quality"))
            if point in seen:
                continue
            seen.add(point)
        out.setdefault(key, []).append(row)
    return out


def default_anchors(test: str, groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """What a neck curve is compared with unasked: the base codec's Reconstruction curve (the paper's
    baseline; for d2/d3 only when the evaluation has one), for d2/d3 its own codecs' Reconstruction, and for
    a variable-rate codec's conditioned or shared neck the per-level necks' curve when the evaluation has one."""
    parts = test.split("/")
    scenario, codec = parts[1], parts[-1]
    base = f"reconstruction/{codec}"
    per_level = f"neck/{scenario}/{PER_LEVEL}/{codec}"
    levels = [per_level] if len(parts) == 4 and test != per_level and per_level in groups else []
    if scenario in ("d1", "?"):
        return [base, *levels]
    return [name for name in (base, f"reconstruction/{scenario}/{codec}") if name in groups] + levels


def bd_table(rows: Sequence[dict[str, Any]], rate: str = "payload_bpp", anchors: Sequence[str] = (),
             unit: str | None = None, metrics: Mapping[str, bool] | None = None) -> list[dict[str, Any]]:
    """BD-rate and BD-quality of every neck curve against :func:`default_anchors` and each named anchor curve,
    for every metric of ``metrics`` (default :data:`BD_METRICS`; metric -> higher is better) with values, by both
    methods, on the row field ``rate``.

    Each entry: test, anchor, metric, method, rate_axis, bd_rate (percent), bd_quality, and ``reason``
    (``"BD-rate refused: ..."``, ``"BD-quality refused: ..."`` or both), else ``None``.
    """
    unit = unit or rate
    groups = curves(rows)
    results = []
    for test, test_rows in groups.items():
        if not test.startswith("neck/"):
            continue
        targets = [*default_anchors(test, groups), *[a for a in anchors if a != test]]
        for anchor in dict.fromkeys(targets):
            anchor_rows = groups.get(anchor)
            for metric, higher in (BD_METRICS if metrics is None else metrics).items():
                if not any(r.get(metric) is not None for r in test_rows):
                    continue
                for method in METHODS:
                    entry: dict[str, Any] = {"test": test, "anchor": anchor, "metric": metric, "method": method,
                                             "rate_axis": rate, "bd_rate": None, "bd_quality": None, "reason": None}
                    if anchor_rows is None:
                        text = f"no curve named {anchor!r} (curves: {', '.join(groups)})"
                        entry["reason"] = _reason({"bd_rate": text, "bd_quality": text})
                        results.append(entry)
                        continue
                    args = ([r.get(rate) for r in anchor_rows], [r.get(metric) for r in anchor_rows],
                            [r.get(rate) for r in test_rows], [r.get(metric) for r in test_rows])
                    options = {"method": method, "higher_is_better": higher, "names": (anchor, test),
                               "metric": METRIC_NAMES.get(metric, metric), "unit": unit}
                    reasons = {}
                    for field, function in (("bd_rate", bd_rate), ("bd_quality", bd_quality)):
                        try:
                            entry[field] = function(*args, **options)
                        except CurveRefused as error:
                            reasons[field] = str(error)
                    entry["reason"] = _reason(reasons)
                    results.append(entry)
    return results


def _reason(reasons: dict[str, str]) -> str | None:
    """One text for an entry's refusals, saying which delta each concerns."""
    if not reasons:
        return None
    if len(reasons) == 2 and len(set(reasons.values())) == 1:
        return f"BD-rate and BD-quality refused: {reasons['bd_rate']}"
    return "; ".join(f"{'BD-rate' if field == 'bd_rate' else 'BD-quality'} refused: {text}" for field, text in reasons.items())


def legend_note(entries: Sequence[dict[str, Any]], test: str, metric: str) -> str:
    """``BD-rate -12.3% vs reconstruction/elic (pchip)`` for a plot legend, or '' when none."""
    parts = [f"BD-rate {e['bd_rate']:+.1f}% vs {e['anchor']} ({e['method']})" for e in entries
             if e["test"] == test and e["metric"] == metric and e["method"] == PRIMARY and e["bd_rate"] is not None]
    return "; ".join(parts)
