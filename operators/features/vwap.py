"""Deviation of the close from the rolling VWAP of the last n bars: close / VWAP - 1, with
VWAP = sum(typical * volume) / sum(volume) and typical = (h + l + c) / 3; NaN while the window has
no volume. Sums are exact integers of fixed-point values, so the result is the exact ratio
(3*C*sum(V) - sum((H+L+C)*V)) / sum((H+L+C)*V) rounded once."""

from __future__ import annotations

from collections import deque

from operators.features.base import NAN, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar


class VwapDeviation:
    family = "vwap_dev"

    def __init__(self, n: int = 20) -> None:
        if n < 1:
            raise ValueError("VWAP window must be >= 1")
        self.n = n
        self.name = spec_name("vwap_dev", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[tuple[int, int]] = deque()  # ((H+L+C)*V, V) per bar
        self._pv = 0  # sum of (H+L+C)*V in units of 1/SCALE^2
        self._v = 0  # sum of V in units of 1/SCALE
        self.value = NAN

    def update(self, bar: Bar) -> float:
        c = round(bar.close * SCALE)
        v = round(bar.volume * SCALE)
        pv = (round(bar.high * SCALE) + round(bar.low * SCALE) + c) * v
        window = self._window
        window.append((pv, v))
        spv = self._pv + pv
        sv = self._v + v
        if len(window) > self.n:
            old_pv, old_v = window.popleft()
            spv -= old_pv
            sv -= old_v
        self._pv = spv
        self._v = sv
        if len(window) < self.n:
            return NAN
        # int / int is correctly rounded, however large the sums
        self.value = (3 * c * sv - spv) / spv if spv else NAN
        return self.value
