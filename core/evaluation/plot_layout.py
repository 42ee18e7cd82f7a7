"""Where rate_quality.png puts things: each panel's y range and each marker's label, as plain data.

Close markers (a rate sweep's points a few points apart) get labels moved around them until none covers
another label, another marker, the legend or the panel's edge; a metric whose values differ by float noise
gets a flat axis and a "no difference" note instead of an axis that ranks the noise. :func:`place_labels`
and :func:`value_range` work in points and values, so tests read the layout, not pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

# A metric whose values differ by less than this is drawn flat and called "no difference": below it the
# differences are float noise (e.g. 1e-17), and an autoscaled axis would rank the noise.
FLAT_ABSOLUTE = 1e-9
FLAT_RELATIVE = 1e-6  # of the values' magnitude
LABEL_FONT = 7.0  # points
PLUMBING_ONLY = "tiny/random-init components: plumbing only, not a quality result"

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in points


@dataclass(frozen=True)
class ValueRange:
    """A panel's y range: the values' own (autoscaled), or a flat one around them when they do not differ."""

    low: float
    high: float
    flat: bool
    note: str = ""


def value_range(values: Sequence[float | None]) -> ValueRange | None:
    """The y range of a panel's values; flat (the value +- 10 %) with a "no difference" note when their spread is
    below max(:data:`FLAT_ABSOLUTE`, :data:`FLAT_RELATIVE` x magnitude). ``None`` when nothing is finite."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    spread, tolerance = high - low, max(FLAT_ABSOLUTE, FLAT_RELATIVE * max(abs(low), abs(high)))
    if spread > tolerance:
        return ValueRange(low, high, flat=False)
    centre = (low + high) / 2 if abs(low + high) / 2 > FLAT_ABSOLUTE else 0.0
    half = 0.1 * abs(centre) if centre else 0.1
    note = f"no difference: every value is {centre:.6g} (spread {spread:.1g}, below {tolerance:.1g})"
    return ValueRange(centre - half, centre + half, flat=True, note=note)


@dataclass(frozen=True)
class PlacedLabel:
    """A marker's label: the marker at ``anchor`` and the text's lower-left corner ``offset`` from it, in points;
    ``leader`` when it sits away from its marker and a thin line joins them."""

    text: str
    anchor: tuple[float, float]
    offset: tuple[float, float]
    fontsize: float = LABEL_FONT
    leader: bool = False

    @property
    def box(self) -> Box:
        """(x0, y0, x1, y1) in points: the text's approximate extent."""
        x0, y0 = self.anchor[0] + self.offset[0], self.anchor[1] + self.offset[1]
        width, height = _text_size(self.text, self.fontsize)
        return x0, y0, x0 + width, y0 + height


def _text_size(text: str, fontsize: float) -> tuple[float, float]:
    return 0.62 * fontsize * max(1, len(text)), 1.25 * fontsize  # DejaVu Sans averages ~0.6 em per character


def _overlap(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _outside(box: Box, bounds: Box | None) -> float:
    if bounds is None:
        return 0.0
    area = (box[2] - box[0]) * (box[3] - box[1])
    return area - _overlap(box, bounds)


def _offsets(width: float, height: float) -> list[tuple[float, float, bool]]:
    """Places for a label around its marker, nearest first: (dx, dy) of its lower-left corner, and whether a
    leader line is needed to tell which marker it belongs to."""
    places = []
    for ring, gap in enumerate((3.0, 9.0, 16.0, 25.0, 36.0, 50.0)):
        places += [(gap, gap / 2, ring > 0), (gap, -gap / 2 - height, ring > 0), (-gap - width, gap / 2, ring > 0),
                   (-gap - width, -gap / 2 - height, ring > 0), (-width / 2, gap + 1.0, ring > 0),
                   (-width / 2, -gap - 1.0 - height, ring > 0)]
    return places


def place_labels(anchors: Sequence[tuple[float, float]], texts: Sequence[str], fontsize: float = LABEL_FONT,
                 bounds: Box | None = None, avoid: Sequence[Box] = ()) -> list[PlacedLabel]:
    """Labels for markers at ``anchors`` (points), each at the nearest place around its marker that covers no other
    label, no other marker, no box of ``avoid`` (a legend) and nothing outside ``bounds`` (the axes), all in
    points; where every place is taken, the least covered one. Labels away from their marker get a leader line."""
    markers = [(x - 3.5, y - 3.5, x + 3.5, y + 3.5) for x, y in anchors]
    placed: list[PlacedLabel] = []
    for index, (anchor, text) in enumerate(zip(anchors, texts, strict=True)):
        width, height = _text_size(text, fontsize)
        obstacles = [label.box for label in placed] + [box for i, box in enumerate(markers) if i != index] + list(avoid)
        candidates = [PlacedLabel(text, (float(anchor[0]), float(anchor[1])), (dx, dy), fontsize, leader)
                      for dx, dy, leader in _offsets(width, height)]
        best, best_cost = candidates[0], math.inf
        for label in candidates:
            cost = sum(_overlap(label.box, other) for other in obstacles) + 4.0 * _outside(label.box, bounds)
            if cost < best_cost:
                best, best_cost = label, cost
            if cost == 0:
                break
        placed.append(best)
    return placed


@dataclass
class PanelLayout:
    """What one panel shows: its metric, y range (flat or not, with the note) and where its labels went."""

    metric: str
    y_range: ValueRange | None
    labels: list[PlacedLabel] = field(default_factory=list)


@dataclass
class PlotLayout:
    """What :func:`plot_rate_quality` drew, for tests and callers: title, x label and the panels."""

    title: str
    x_label: str
    panels: list[PanelLayout] = field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        return [panel.metric for panel in self.panels]
