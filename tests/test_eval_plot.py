"""rate_quality.png's layout, read from what goes into the plot: label places, y ranges, axis names, title."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from neckkit.errors import UsageError
from neckkit.evaluation.plot_layout import PLUMBING_ONLY, PlacedLabel, place_labels, value_range
from neckkit.evaluation.rate_axis import DEFAULT_RATE_AXIS, RATE_AXES, rate_axis
from neckkit.evaluation.report import plot_rate_quality


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _marker(label: PlacedLabel) -> tuple[float, ...]:
    x, y = label.anchor
    return x - 3.5, y - 3.5, x + 3.5, y + 3.5


def test_labels_of_close_markers_do_not_overlap_each_other_or_the_markers() -> None:
    anchors = [(100.0, 100.0), (101.0, 100.5), (102.0, 99.0), (100.5, 101.0)]  # four markers within 2 points
    labels = place_labels(anchors, ["d3-lambda-0.004", "d3-lambda-0.008", "d3-lambda-0.016", "d3-lambda-0.032"])
    for a, b in itertools.combinations(labels, 2):
        assert _overlap(a.box, b.box) == 0, (a, b)
    for label, other in itertools.product(labels, labels):
        if label is not other:
            assert _overlap(label.box, _marker(other)) == 0
    assert not labels[0].leader  # the first finds a free place right beside its marker
    assert any(label.leader for label in labels[1:])  # a label moved away is joined to its marker


def test_labels_stay_inside_the_axes_and_clear_of_the_legend() -> None:
    bounds = (0.0, 0.0, 200.0, 100.0)
    legend = (150.0, 60.0, 200.0, 100.0)
    labels = place_labels([(195.0, 95.0), (5.0, 95.0), (140.0, 55.0)], ["right-edge", "left-edge", "near-legend"],
                          bounds=bounds, avoid=[legend])
    for label in labels:
        x0, y0, x1, y1 = label.box
        assert bounds[0] <= x0 and x1 <= bounds[2] and bounds[1] <= y0 and y1 <= bounds[3], label
        assert _overlap(label.box, legend) == 0, label


@pytest.mark.parametrize("values", [[1e-17, -2e-17, 3e-17, 0.0], [0.999999999, 1.0, 0.9999999995], [7.25, 7.25]])
def test_values_that_differ_by_float_noise_get_a_flat_axis_that_says_so(values: list[float]) -> None:
    axis = value_range(values)
    assert axis is not None and axis.flat and "no difference" in axis.note
    centre = (axis.low + axis.high) / 2
    assert axis.low < min(values) and max(values) < axis.high
    assert axis.high - axis.low >= 0.2 * max(abs(centre), 1.0) * 0.99  # a readable span, not the noise's 1e-17


def test_real_differences_keep_their_own_range() -> None:
    axis = value_range([0.1, 0.2, None, 0.15])
    assert axis is not None and not axis.flat and (axis.low, axis.high) == (0.1, 0.2) and axis.note == ""
    assert value_range([None, float("nan")]) is None


def test_rate_axes_and_their_names() -> None:
    assert DEFAULT_RATE_AXIS == "payload" and rate_axis("payload").field == "payload_bpp"
    assert [rate_axis(name).field for name in ("file", "bpp", "estimated", "estimated_bpp")] == [
        "bpp", "bpp", "estimated_bpp", "estimated_bpp"]
    assert all(axis.description and axis.label for axis in RATE_AXES.values())
    with pytest.raises(UsageError, match="--rate must be file, payload or estimated, got 'bits'"):
        rate_axis("bits")


def test_the_plot_names_its_axis_flattens_noise_and_marks_placeholders(tmp_path: Path) -> None:
    rows = [{"point": "uncompressed", "path": "uncompressed", "embedding_mse": 0.0, "embedding_cosine": 1.0}]
    for i, rate in enumerate([0.100, 0.101, 0.102, 0.30]):  # three markers nearly on top of each other
        common = {"point": f"d3-{i}", "codec": "tic", "scenario": "d3", "codec_fingerprint": str(i),
                  "payload_bpp": rate, "bpp": rate + 0.02}
        rows.append({**common, "path": "neck", "embedding_cosine": 0.90 + 0.01 * i, "embedding_mse": 1e-17 * i})
    layout = plot_rate_quality(tmp_path / "plot.png", rows, "payload", "tic -> clip-l", plumbing_only=True)
    assert layout.title == f"tic -> clip-l\n{PLUMBING_ONLY}"
    assert layout.x_label == RATE_AXES["payload"].label
    panels = {panel.metric: panel for panel in layout.panels}
    assert panels["embedding_mse"].y_range.flat and not panels["embedding_cosine"].y_range.flat
    cosine = panels["embedding_cosine"].labels
    assert [label.text for label in cosine] == ["d3-0", "d3-1", "d3-2", "d3-3"]
    for a, b in itertools.combinations(cosine, 2):
        assert _overlap(a.box, b.box) == 0
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert plot_rate_quality(tmp_path / "plain.png", rows, "payload", "t").title == "t"
