"""SMA(fast) / SMA(slow) - 1 of closes. Both sums are exact fixed-point integers and the ratio
minus one is formed as one integer fraction, (S_f*slow - S_s*fast) / (S_s*fast), so the small
difference of two nearly equal averages is correctly rounded instead of cancelled."""

from __future__ import annotations

from collections import deque

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from operators.features.close_window import EXACT, close_run, int64_run
from operators.fixedpoint import SCALE
from schemas.messages import Bar


class SmaRatio:
    family = "sma_ratio"

    def __init__(self, fast: int = 5, slow: int = 20) -> None:
        if fast < 1:
            raise ValueError("SMA ratio fast period must be >= 1")
        if slow <= fast:
            raise ValueError("SMA ratio slow period must be > fast period")
        self.fast = fast
        self.slow = slow
        self.name = spec_name("sma_ratio", fast, slow)
        self.columns = (self.name,)
        self.warmup = slow - 1
        self._window: deque[int] = deque()  # last `slow` closes in units of 1/SCALE
        self._sum_slow = 0
        self._sum_fast = 0
        self.value = NAN

    def update(self, bar: Bar) -> float:
        v = round(bar.close * SCALE)
        window = self._window
        window.append(v)
        self._sum_slow += v
        self._sum_fast += v
        k = len(window)
        if k > self.fast:
            self._sum_fast -= window[k - 1 - self.fast]
        if k > self.slow:
            self._sum_slow -= window.popleft()
            k -= 1
        if k == self.slow:
            den = self._sum_slow * self.fast
            self.value = (self._sum_fast * self.slow - den) / den if den != 0 else NAN
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        return close_run(self, cols, self.slow)

    def _update_ints(self, fresh: list[int]) -> list[float]:
        """`update`'s arithmetic over closes already in units of 1/SCALE, in locals."""
        fast, slow = self.fast, self.slow
        ext = [*self._window, *fresh]  # update's window after ext[j]: ext[j - slow + 1 : j + 1]
        ss, sf, v = self._sum_slow, self._sum_fast, self.value
        out: list[float] = []
        append = out.append
        i = len(self._window)
        while i < slow and i < len(ext):  # until the window is full
            x = ext[i]
            ss += x
            sf += x
            if i >= fast:
                sf -= ext[i - fast]
            if i == slow - 1:
                den = ss * fast
                v = (sf * slow - den) / den if den != 0 else NAN
            append(v)
            i += 1
        for j in range(i, len(ext)):
            x = ext[j]
            ss += x
            sf += x
            sf -= ext[j - fast]
            ss -= ext[j - slow]
            den = ss * fast
            v = (sf * slow - den) / den if den != 0 else NAN
            append(v)
        if fresh:
            self._window = deque(ext[-slow:])
        self._sum_slow, self._sum_fast, self.value = ss, sf, v
        return out

    def _update_array(self, closes: list[float], fill: int) -> list[float] | None:
        """`update_many` with the full-window steps in int64 arrays; None, the state untouched,
        where a close is not finite or a product could leave int64."""
        fast, slow = self.fast, self.slow
        run = int64_run(self, closes, fill, max(slow + len(closes), 2 * fast * slow))
        if run is None:
            return None
        head, ext, csum, peak = run
        end = csum[slow + 1 :]
        ss = end - csum[1 : len(ext) - slow + 1]
        sf = end - csum[slow + 1 - fast : len(ext) + 1 - fast]
        den = ss * fast
        num = sf * slow
        if peak * (2 * fast * slow) <= EXACT:  # exact doubles: one rounding, as int / int
            with np.errstate(divide="ignore", invalid="ignore"):
                q = (num - den).astype(np.float64) / den.astype(np.float64)
            q[den == 0] = NAN
            out: list[float] = q.tolist()
        else:
            pairs = zip(num.tolist(), den.tolist(), strict=True)
            out = [(a - d) / d if d != 0 else NAN for a, d in pairs]
        self._window = deque(ext[-slow:].tolist())
        self._sum_slow, self._sum_fast = int(ss[-1]), int(sf[-1])
        self.value = out[-1]
        return head + out
