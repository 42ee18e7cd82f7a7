"""BD-rate against hand-computed values on synthetic curves, and the refusal cases."""

import math

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


def test_refuses_non_monotonic_curves():
    with pytest.raises(CurveRefused, match="is not monotonic"):
        bd_rate(RATES, [0.7, 0.9, 0.8, 0.95], RATES, QUALITY)
    with pytest.raises(CurveRefused, match="repeated or non-positive rates"):
        bd_rate([0.1, 0.2, 0.2, 0.4], QUALITY, RATES, QUALITY)


def _rows(path, codec, scenario, rates, cosine):
    return [{"point": f"{path}{i}", "path": path, "codec": codec, "scenario": scenario, "bpp": r, "embedding_cosine": c}
            for i, (r, c) in enumerate(zip(rates, cosine, strict=True))]


def test_bd_table_against_reconstruction_and_named_anchor():
    rows = (_rows("reconstruction", "tic", None, RATES, QUALITY) + _rows("neck", "tic", "d1", [r * 0.8 for r in RATES], QUALITY)
            + _rows("neck", "tic", "d3", [r * 0.5 for r in RATES[:3]], QUALITY[:3]))
    table = bd_table(rows, anchors=["neck/d1/tic", "missing"])
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
