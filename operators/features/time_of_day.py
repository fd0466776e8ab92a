"""Time of day of the bar's open (UTC) on the unit circle: sin and cos of 2*pi * s / 86400, s the
seconds since UTC midnight, taken from ts_event with integer arithmetic (no datetime objects)."""

from __future__ import annotations

import math

from schemas.messages import NS_PER_DAY, Bar

_RAD_PER_NS = 2.0 * math.pi / NS_PER_DAY


class TimeOfDay:
    family = "time_of_day"

    def __init__(self) -> None:
        self.name = "time_of_day"
        self.columns = ("time_of_day_sin", "time_of_day_cos")
        self.warmup = 0

    def update(self, bar: Bar) -> tuple[float, float]:
        a = (bar.ts_event % NS_PER_DAY) * _RAD_PER_NS  # Python's % is >= 0 before 1970 too
        return (math.sin(a), math.cos(a))
