"""Day of the week of the bar's open (UTC, Monday = 0) on the unit circle: sin and cos of
2*pi * dow / 7. 1970-01-01 (day 0 of the epoch) was a Thursday, so dow = (days + 3) % 7."""

from __future__ import annotations

import math

from schemas.messages import NS_PER_DAY, Bar

_CIRCLE = tuple(
    (math.sin(2.0 * math.pi * d / 7), math.cos(2.0 * math.pi * d / 7)) for d in range(7)
)


class DayOfWeek:
    family = "day_of_week"

    def __init__(self) -> None:
        self.name = "day_of_week"
        self.columns = ("day_of_week_sin", "day_of_week_cos")
        self.warmup = 0

    def update(self, bar: Bar) -> tuple[float, float]:
        return _CIRCLE[(bar.ts_event // NS_PER_DAY + 3) % 7]
