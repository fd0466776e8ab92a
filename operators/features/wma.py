"""Linearly weighted moving average of the last n closes (weights 1..n, newest heaviest), kept as
exact fixed-point integer sums so the O(1) running update never drifts. Equals talib.WMA."""

from __future__ import annotations

from collections import deque

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from operators.features.close_window import EXACT, close_run, int64_run
from operators.fixedpoint import SCALE
from schemas.messages import Bar


class WMA:
    family = "wma"

    def __init__(self, n: int = 20) -> None:
        if n < 2:
            raise ValueError("WMA period must be >= 2")
        self.n = n
        self.name = spec_name("wma", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[int] = deque()
        self._sum = 0  # plain sum of the window, units of 1/SCALE
        self._wsum = 0  # weighted sum (oldest weight 1 ... newest weight n)
        self._den = SCALE * n * (n + 1) // 2
        self.value = NAN

    def update(self, bar: Bar) -> float:
        v = round(bar.close * SCALE)
        window = self._window
        n = self.n
        if len(window) == n:
            # every kept value loses one unit of weight, the new one enters with weight n
            self._wsum += n * v - self._sum
            self._sum += v - window.popleft()
            window.append(v)
            self.value = self._wsum / self._den  # int/int: correctly rounded
            return self.value
        window.append(v)
        self._sum += v
        self._wsum += len(window) * v
        if len(window) == n:
            self.value = self._wsum / self._den
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        return close_run(self, cols, self.n)

    def _update_ints(self, fresh: list[int]) -> list[float]:
        """`update`'s arithmetic over closes already in units of 1/SCALE, in locals."""
        n, den = self.n, self._den
        ext = [*self._window, *fresh]  # ext[j - n] is the value update's popleft() drops
        s, ws, v = self._sum, self._wsum, self.value
        out: list[float] = []
        append = out.append
        i = len(self._window)
        while i < n and i < len(ext):  # until the window is full
            x = ext[i]
            i += 1
            s += x
            ws += i * x
            if i == n:
                v = ws / den
            append(v)
        for j in range(i, len(ext)):
            x = ext[j]
            ws += n * x - s
            s += x - ext[j - n]
            v = ws / den
            append(v)
        if fresh:
            self._window = deque(ext[-n:])
        self._sum, self._wsum, self.value = s, ws, v
        return out

    def _update_array(self, closes: list[float], fill: int) -> list[float] | None:
        """`update_many` with the full-window steps in int64 arrays; None, the state untouched,
        where a close is not finite or a sum could leave int64."""
        n, den = self.n, self._den
        run = int64_run(self, closes, fill, max(n + len(closes), n * (n + 1)))
        if run is None:
            return None
        head, ext, csum, peak = run
        j = np.arange(n, len(ext))
        # update's step: wsum += n * v - (the window's sum before v), so wsum is a running sum
        ws = np.cumsum(n * ext[n:] - (csum[j] - csum[j - n]))
        ws += self._wsum
        if peak * (n * (n + 1) // 2) <= EXACT and den <= EXACT:  # one rounding, as int / int
            out: list[float] = (ws.astype(np.float64) / den).tolist()
        else:
            out = [w / den for w in ws.tolist()]
        self._window = deque(ext[-n:].tolist())
        self._sum = int(csum[-1] - csum[-1 - n])
        self._wsum = int(ws[-1])
        self.value = out[-1]
        return head + out
