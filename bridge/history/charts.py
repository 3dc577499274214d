"""Pure geometry of the overview's small bar charts: runs per day, split into passed, failed and other
(running, cancelled). The template draws the rectangles as inline SVG with presentation attributes only (the
console's security policy allows no script and no inline style), so there is nothing to build or load."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

WIDTH, HEIGHT, GAP, LABEL = 210, 60, 4, 12  # px: the chart, between bars, the day labels under it


@dataclass(frozen=True)
class DayRuns:
    day: date
    passed: int = 0
    failed: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.other


@dataclass(frozen=True)
class Segment:
    y: float
    height: float
    part: str        # passed | failed | other: the template's fill for it


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    segments: tuple[Segment, ...]
    label: str       # the day under the bar
    title: str       # the tooltip: the day and its counts


@dataclass(frozen=True)
class Chart:
    width: int
    height: int      # the bars' area; the labels are drawn below it
    bars: tuple[Bar, ...]
    peak: int        # runs on the busiest day (the scale)


def daily_bars(days: list[DayRuns], *, width: int = WIDTH, height: int = HEIGHT) -> Chart:
    """One bar per day, left to right, stacked passed (bottom), failed, other; heights scale to the busiest
    day, and a day without runs has no segments."""
    peak = max((d.total for d in days), default=0)
    slot = width / max(len(days), 1)
    bars = []
    for n, day in enumerate(days):
        segments, top = [], float(height)
        for part, count in (("passed", day.passed), ("failed", day.failed), ("other", day.other)):
            if count and peak:
                h = height * count / peak
                top -= h
                segments.append(Segment(round(top, 2), round(h, 2), part))
        bars.append(Bar(round(n * slot + GAP / 2, 2), round(slot - GAP, 2), tuple(segments), f"{day.day:%a}",
                        f"{day.day:%Y-%m-%d}: {day.passed} passed, {day.failed} failed, {day.other} other"))
    return Chart(width, height, tuple(bars), peak)
