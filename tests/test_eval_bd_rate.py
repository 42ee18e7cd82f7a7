"""BD-rate against hand-computed values on synthetic curves, and the refusal cases."""

import math
import sys

import pytest

from neckkit.evaluation.bd_rate import METHODS, CurveRefused, bd_quality, bd_rate, bd_table

RATES = [0.1, 0.2, 0.4, 0.8]
QUALITY = [0.70, 0.80, 0.86, 0.90]


@pytest.mark.parametrize("method", METHODS)
def test_shifted_curve_gives_the_rate_factor(method):
    # the same quality at 0.8x the rate, for any interpolation in log-rate: exactly -20 %
    assert bd_rate(RATES, QUALITY, [r * 0.8 for r in RATES], QUALITY, method=method) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(RATES, QUALITY, [r * 1.5 for r in RATES], QUALITY, method=method) == pytest.approx(50.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_lower_is_better_metric_keeps_the_sign(method):
    mse = [0.3, 0.2, 0.14, 0.1]  # falls with rate
    assert bd_rate(RATES, mse, [r * 0.8 for r in RATES], mse, method=method, higher_is_better=False) == pytest.approx(-20.0, abs=1e-9)
    # a test curve with uniformly lower MSE (better) gains +0.01 at equal rate
    gain = bd_quality(RATES, mse, RATES, [m - 0.01 for m in mse], method=method, higher_is_better=False)
    assert gain == pytest.approx(0.01, abs=1e-9)


def test_bd_quality_of_a_constant_offset():
    assert bd_quality(RATES, QUALITY, RATES, [q + 0.02 for q in QUALITY]) == pytest.approx(0.02, abs=1e-9)


def test_refuses_too_few_points():
    with pytest.raises(CurveRefused, match="has 3 point\\(s\\); BD-rate needs at least 4"):
        bd_rate(RATES[:3], QUALITY[:3], RATES, QUALITY, names=("anchor", "short"))


def test_refuses_non_monotonic_curves_in_the_users_values():
    with pytest.raises(CurveRefused, match=r"curve 'anchor': embedding cosine does not rise monotonically as rate rises: "
                                           r"0\.9 at 0\.2 payload bpp, 0\.8 at 0\.4 payload bpp"):
        bd_rate(RATES, [0.7, 0.9, 0.8, 0.95], RATES, QUALITY, metric="embedding cosine", unit="payload bpp")
    with pytest.raises(CurveRefused, match=r"two points at 0\.2 bpp"):
        bd_rate([0.1, 0.2, 0.2, 0.4], QUALITY, RATES, QUALITY)


def test_a_lower_is_better_dip_is_reported_as_the_user_sees_it():
    """Embedding MSE is negated inside; the message shows the MSE itself, and says it should fall."""
    mse = [0.2, 0.12, 0.14, 0.1]  # rises between 0.30 and 0.41 bpp
    with pytest.raises(CurveRefused) as refused:
        bd_rate([0.1, 0.2, 0.4, 0.8], [0.3, 0.2, 0.14, 0.1], [0.2, 0.3, 0.41, 0.6], mse, higher_is_better=False,
                names=("reconstruction/tic", "neck/d3/tic"), metric="embedding MSE", unit="payload bpp")
    assert str(refused.value) == (
        "curve 'neck/d3/tic': embedding MSE does not fall monotonically as rate rises: 0.12 at 0.3 payload bpp, "
        "0.14 at 0.41 payload bpp; BD-rate needs embedding MSE to fall strictly with rate (BD-quality does not)")
    assert "-0.1" not in str(refused.value)


def test_bd_quality_needs_distinct_rates_only():
    """BD-quality reads quality as a function of rate: a dip in quality is no reason to refuse it."""
    dipping = [0.7, 0.9, 0.8, 0.95]
    with pytest.raises(CurveRefused, match="does not rise monotonically"):
        bd_rate(RATES, QUALITY, RATES, dipping)
    gain = bd_quality(RATES, QUALITY, RATES, dipping)
    assert math.isfinite(gain) and gain > 0


def test_curves_without_a_shared_quality_range_are_refused_not_nan():
    """A neck far above Reconstruction: no equal quality to compare rates at (bjontegaard would return NaN)."""
    neck = [0.90, 0.92, 0.94, 0.96]
    reconstruction = [0.60, 0.62, 0.64, 0.66]
    with pytest.raises(CurveRefused, match=r"neck \(0\.9-0\.96\) and reconstruction \(0\.6-0\.66\) share no "
                                           r"embedding cosine range"):
        bd_rate(RATES, reconstruction, RATES, neck, names=("reconstruction", "neck"), metric="embedding cosine")
    assert bd_quality(RATES, reconstruction, RATES, neck) == pytest.approx(0.30)
    with pytest.raises(CurveRefused, match="share no rate range"):
        bd_quality(RATES, QUALITY, [r * 10 for r in RATES], QUALITY)


def _rows(path, codec, scenario, rates, cosine):
    return [{"point": f"{path}{i}", "path": path, "codec": codec, "scenario": scenario, "bpp": r, "embedding_cosine": c}
            for i, (r, c) in enumerate(zip(rates, cosine, strict=True))]


def test_bd_table_against_reconstruction_and_named_anchor():
    rows = (_rows("reconstruction", "tic", None, RATES, QUALITY) + _rows("neck", "tic", "d1", [r * 0.8 for r in RATES], QUALITY)
            + _rows("neck", "tic", "d3", [r * 0.5 for r in RATES[:3]], QUALITY[:3]))
    table = bd_table(rows, "bpp", anchors=["neck/d1/tic", "missing"])
    d1 = [e for e in table if e["test"] == "neck/d1/tic" and e["anchor"] == "reconstruction/tic"]
    assert {e["method"] for e in d1} == set(METHODS)
    assert all(e["bd_rate"] == pytest.approx(-20.0) and e["reason"] is None for e in d1)
    d3 = [e for e in table if e["test"] == "neck/d3/tic"]
    assert {e["anchor"] for e in d3} == {"reconstruction/tic", "neck/d1/tic", "missing"}
    assert all(e["bd_rate"] is None and e["reason"] for e in d3)
    assert any("no curve named 'missing'" in e["reason"] for e in d3)
    assert not any(math.isnan(e["bd_rate"]) for e in table if e["bd_rate"] is not None)


@pytest.mark.parametrize("method", METHODS)
def test_a_quality_offset_on_a_log_linear_curve_gives_the_hand_computed_rate(method):
    """q = 0.5 + 0.1 log10(r); the test curve is 0.02 better: at equal quality log10(r) drops by 0.2."""
    rates = [0.05, 0.1, 0.3, 0.7, 1.2]
    anchor = [0.5 + 0.1 * math.log10(r) for r in rates]
    test = [q + 0.02 for q in anchor]
    expected = 100 * (10 ** -0.2 - 1)  # -36.904 %
    assert bd_rate(rates, anchor, rates, test, method=method) == pytest.approx(expected, abs=1e-6)
    assert bd_quality(rates, anchor, rates, test, method=method) == pytest.approx(0.02, abs=1e-9)


def _point_rows(point, scenario, codec, fingerprint, rate, neck=None, reconstruction=0.6):
    """A rate point's rows: its Reconstruction row and, with ``neck``, its neck row (one bitstream, one rate)."""
    common = {"point": point, "codec": codec, "scenario": scenario, "codec_fingerprint": fingerprint, "payload_bpp": rate}
    rows = [{**common, "path": "reconstruction", "embedding_cosine": reconstruction}]
    if neck is not None:
        rows.append({**common, "path": "neck", "embedding_cosine": neck})
    return rows


def test_curves_group_points_by_codec_identity():
    """d3 necks bring retrained codecs: their Reconstruction points are their own curve, never joined with the
    base codec's ladder; two d1 necks on one base codec (one fingerprint) are one Reconstruction point."""
    from neckkit.evaluation.bd_rate import curves, default_anchors

    rows = [
        *_point_rows("tic q1", None, "tic", "q1", 0.1, reconstruction=0.60),
        *_point_rows("tic q2", None, "tic", "q2", 0.2, reconstruction=0.64),
        *_point_rows("d1-a", "d1", "tic", "q2", 0.2, neck=0.90, reconstruction=0.64),
        *_point_rows("d1-b", "d1", "tic", "q2", 0.2, neck=0.91, reconstruction=0.64),  # same codec as d1-a and q2
        *_point_rows("d3-a", "d3", "tic", "d3a", 0.05, neck=0.88, reconstruction=0.50),
        *_point_rows("d3-b", "d3", "tic", "d3b", 0.15, neck=0.93, reconstruction=0.55),
    ]
    groups = curves(rows)
    assert {name: [r["point"] for r in members] for name, members in groups.items()} == {
        "reconstruction/tic": ["tic q1", "tic q2"],
        "neck/d1/tic": ["d1-a", "d1-b"],
        "reconstruction/d3/tic": ["d3-a", "d3-b"],
        "neck/d3/tic": ["d3-a", "d3-b"],
    }
    assert default_anchors("neck/d1/tic", groups) == ["reconstruction/tic"]
    assert default_anchors("neck/d3/tic", groups) == ["reconstruction/tic", "reconstruction/d3/tic"]
    only_d3 = curves([row for row in rows if row["scenario"] == "d3"])
    assert default_anchors("neck/d3/tic", only_d3) == ["reconstruction/d3/tic"]  # no base curve: not asked for


def test_bd_table_reads_the_chosen_rate_axis_and_names_it():
    """Two neck curves of two codecs (the offline recipe's shape): finite BD-rates on payload_bpp, and the
    neck against its own codecs' Reconstruction gives BD-quality with the BD-rate refusal explained."""
    rows = []
    for i, (rate, cosine) in enumerate(zip([0.044, 0.052, 0.096, 0.295], [0.899, 0.904, 0.924, 0.958], strict=True)):
        rows += _point_rows(f"tic-{i}", "d3", "tic", f"t{i}", rate, neck=cosine, reconstruction=0.68 + 0.001 * i)
    for i, (rate, cosine) in enumerate(zip([0.032, 0.089, 0.154, 0.254], [0.908, 0.937, 0.939, 0.946], strict=True)):
        rows += _point_rows(f"elic-{i}", "d3", "elic", f"e{i}", rate, neck=cosine, reconstruction=0.67 + 0.001 * i)
    for row in rows:
        row["bpp"] = row["payload_bpp"] + 0.02  # the container header: not the axis chosen
    table = bd_table(rows, "payload_bpp", anchors=["neck/d3/tic"], unit="payload bpp")
    assert {e["rate_axis"] for e in table} == {"payload_bpp"}
    elic = [e for e in table if (e["test"], e["anchor"]) == ("neck/d3/elic", "neck/d3/tic")]
    assert {e["method"] for e in elic} == set(METHODS)
    assert all(math.isfinite(e["bd_rate"]) and math.isfinite(e["bd_quality"]) and e["reason"] is None for e in elic)
    primary = next(e for e in elic if e["method"] == "pchip")
    assert primary["bd_rate"] == pytest.approx(
        bd_rate([r["payload_bpp"] for r in rows if r["path"] == "neck" and r["codec"] == "tic"],
                [r["embedding_cosine"] for r in rows if r["path"] == "neck" and r["codec"] == "tic"],
                [r["payload_bpp"] for r in rows if r["path"] == "neck" and r["codec"] == "elic"],
                [r["embedding_cosine"] for r in rows if r["path"] == "neck" and r["codec"] == "elic"]))
    own = [e for e in table if (e["test"], e["anchor"]) == ("neck/d3/tic", "reconstruction/d3/tic")]
    assert all(e["bd_rate"] is None and e["bd_quality"] > 0.2 for e in own)
    assert all(e["reason"].startswith("BD-rate refused: ") and "share no embedding cosine range" in e["reason"] for e in own)


def test_without_the_bjontegaard_package_entries_are_refused_not_a_crash(monkeypatch):
    monkeypatch.setitem(sys.modules, "bjontegaard", None)  # import fails as if not installed
    rows = _rows("reconstruction", "tic", None, RATES, QUALITY) + _rows("neck", "tic", "d1", RATES, QUALITY)
    table = bd_table(rows, "bpp")
    assert table and all(e["bd_rate"] is None and e["bd_quality"] is None for e in table)
    assert all("needs the bjontegaard package: pip install bjontegaard" in e["reason"] for e in table)
