"""On-Balance Volume, as talib.OBV: the first bar's OBV is its own volume (TA-Lib's convention, not
0), then + volume on an up close, - volume on a down close, unchanged on an equal close. Summed in
exact fixed point so an unbounded stream never drifts."""

from __future__ import annotations

from operators.features.base import NAN
from operators.fixedpoint import SCALE
from schemas.messages import Bar


class OBV:
    family = "obv"

    def __init__(self) -> None:
        self.name = "obv"
        self.columns = (self.name,)
        self.warmup = 0
        self._prev_close = NAN
        self._total = 0  # OBV in units of 1/SCALE
        self._started = False
        self.value = NAN

    def update(self, bar: Bar) -> float:
        c = bar.close
        if not self._started:
            self._started = True
            self._total = round(bar.volume * SCALE)
        elif c > self._prev_close:
            self._total += round(bar.volume * SCALE)
        elif c < self._prev_close:
            self._total -= round(bar.volume * SCALE)
        self._prev_close = c
        self.value = self._total / SCALE
        return self.value
