"""On-Balance Volume, as talib.OBV: the first bar's OBV is its own volume (TA-Lib's convention, not
0), then + volume on an up close, - volume on a down close, unchanged on an equal close. Summed in
exact fixed point so an unbounded stream never drifts."""

from __future__ import annotations

import numpy as np

from operators.features.base import NAN, BarColumns
from operators.fixedpoint import SCALE
from schemas.messages import Bar

_MIN_RUN = 32  # shorter runs: numpy's fixed cost exceeds the loop's
_EXACT = 2.0**53  # ints up to this are exact doubles


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

    def update_many(self, cols: BarColumns) -> list[float]:
        if len(cols) >= _MIN_RUN:
            out = self._update_array(cols.field("close"), cols.field("volume"))
            if out is not None:
                return out
        pc, total, started, v = self._prev_close, self._total, self._started, self.value
        out = []
        append = out.append
        try:  # update's arithmetic, in locals; a raising round() leaves what update would
            for b in cols.bars:
                c = b.close
                if not started:
                    started = True
                    total = round(b.volume * SCALE)
                elif c > pc:
                    total += round(b.volume * SCALE)
                elif c < pc:
                    total -= round(b.volume * SCALE)
                pc = c
                v = total / SCALE
                append(v)
        finally:
            self._prev_close, self._total, self._started, self.value = pc, total, started, v
        return out

    def _update_array(self, closes: list[float], volumes: list[float]) -> list[float] | None:
        """`update_many` in int64 arrays; None, the state untouched, where a volume is not
        finite or a running total could leave int64."""
        scaled = np.asarray(volumes, dtype=np.float64) * SCALE  # the products update rounds
        if not np.isfinite(scaled).all():
            return None
        base = self._total if self._started else 0
        bound = abs(base) + float(np.abs(scaled).sum()) + len(scaled)
        if bound >= 2.0**62:
            return None
        fresh = np.rint(scaled).astype(np.int64)  # half-even, as round() is
        c = np.asarray(closes, dtype=np.float64)
        prev = np.empty_like(c)
        prev[0] = self._prev_close
        prev[1:] = c[:-1]
        step = np.where(c > prev, fresh, np.where(c < prev, -fresh, 0))
        if not self._started:
            step[0] = fresh[0]
        totals = np.cumsum(step)
        totals += base
        if bound <= _EXACT:  # exact doubles: one correctly rounded division, as int / int is
            out: list[float] = (totals.astype(np.float64) / SCALE).tolist()
        else:
            out = [t / SCALE for t in totals.tolist()]
        self._prev_close, self._total, self._started = closes[-1], int(totals[-1]), True
        self.value = out[-1]
        return out
