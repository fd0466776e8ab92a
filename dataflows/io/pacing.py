"""Paced replay shared by every source: event time runs `speed` times faster than wall time,
starting at `origin_ns` when the pace is created."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt


def check_speed(speed: float | None) -> None:
    """Sources call this when built, so a bad speed fails before the flow runs."""
    if speed is not None and speed <= 0:
        raise ValueError("speed must be > 0 (or None for as fast as possible)")


class Pace:
    def __init__(self, speed: float, origin_ns: int) -> None:
        check_speed(speed)
        self.speed = speed
        self.origin_ns = origin_ns
        self._wall0 = time.monotonic()

    def now_ns(self) -> float:
        """The event time that is due now."""
        return self.origin_ns + (time.monotonic() - self._wall0) * self.speed * 1e9

    def due(self, ts_ns: npt.NDArray[np.int64]) -> int:
        """How many leading items are due (a prefix: items after a not-yet-due one wait)."""
        late = ts_ns > self.now_ns()
        return int(late.argmax()) if late.any() else len(ts_ns)

    def wake_at(self, ts_ns: int) -> datetime:
        """Wall time to look again for an item at `ts_ns` (at most 1 s away)."""
        wait_s = (ts_ns - self.now_ns()) / 1e9 / self.speed
        return datetime.now(UTC) + timedelta(seconds=min(max(wait_s, 0.001), 1.0))
