"""GARCH(1,1) conditional volatility of one-bar log returns r_t = ln(c_t / c_{t-1}), updated
online with fixed (alpha, beta) and variance targeting.

Convention (no look-ahead): the value reported at bar t is sqrt(h_{t+1}), the one-step-ahead
forecast of the variance of the NEXT return r_{t+1}, made with data up to t's close.

    m_t     = mean(r_{t-n+1}^2, ..., r_t^2)        rolling, over the last n returns
    omega_t = (1 - alpha - beta) * m_t
    h_{n+1} = m_n                                  seed: first value at bar index n
    h_{t+1} = omega_t + alpha * r_t^2 + beta * h_t  for t > n

Per-bar, not annualised. The rolling sum of r^2 is an exact integer in binary fixed point (units of
2**-110), so it cannot drift over a long stream; the recursion itself is contractive (beta < 1).
"""

from __future__ import annotations

import math
from collections import deque
from itertools import chain
from operator import truediv

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from operators.features.parkinson import (
    MIN_RUN,
    last_sum,
    slide,
    window_means,
    window_sums,
)
from schemas.messages import Bar

_K = 110
_TWO_K = float(2**_K)
_INV_TWO_K = 2.0**-_K


class Garch:
    family = "garch"

    def __init__(self, n: int = 1440, alpha: float = 0.05, beta: float = 0.94) -> None:
        if n < 1:
            raise ValueError(f"GARCH variance-target window must be >= 1, got {n}")
        if not alpha > 0.0:
            raise ValueError(f"GARCH alpha must be > 0, got {alpha}")
        if not beta >= 0.0:
            raise ValueError(f"GARCH beta must be >= 0, got {beta}")
        if not alpha + beta < 1.0:
            raise ValueError(f"GARCH needs alpha + beta < 1 (stationary), got {alpha} + {beta}")
        self.n = n
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.name = spec_name("garch", n, self.alpha, self.beta)
        self.columns = (self.name,)
        self.warmup = n
        self._w = 1.0 - self.alpha - self.beta
        self._prev: float | None = None
        self._window: deque[int] = deque()  # fixed-point r^2 of the last n returns
        self._sum = 0
        self._den = n * 2**_K
        self._h = NAN  # forecast variance of the next return
        self.value = NAN

    def update(self, bar: Bar) -> float:
        c = bar.close
        prev, self._prev = self._prev, c
        if prev is None:
            return self.value
        r = math.log(c / prev)
        q = r * r
        window = self._window
        v = round(q * _TWO_K)
        window.append(v)
        s = self._sum + v
        if len(window) > self.n:
            s -= window.popleft()
        self._sum = s
        if len(window) < self.n:
            return self.value
        m = s / self._den
        h = self._h
        # seeded (h not NaN): recurse; else the first forecast is the rolling variance itself
        h = self._w * m + self.alpha * q + self.beta * h if h == h else m
        self._h = h
        self.value = math.sqrt(h)
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        bars = cols.bars
        if len(bars) < MIN_RUN:
            return [self.update(b) for b in bars]
        closes = cols.field("close")
        prev, window, n = self._prev, self._window, self.n
        if prev is None:  # the first close only starts the returns
            pairs = map(truediv, closes[1:], closes)
        else:
            pairs = map(truediv, closes, chain((prev,), closes))
        try:
            rs = list(map(math.log, pairs))
        except (ArithmeticError, ValueError):
            return [self.update(b) for b in bars]  # update raises: it does, in its place
        r = np.array(rs, dtype=np.float64)
        q = r * r
        v = np.rint(q * _TWO_K)  # round(): ties to even, an exact integer
        sums = window_sums(window, self._sum, n, v) if rs else None
        if sums is None:  # out of the kernels' range (or a NaN, where update raises), or no return
            return [self.update(b) for b in bars]
        hi, lo = sums
        full = max(n - len(window) - 1, 0)  # the first return whose window is full
        out = [self.value] * ((prev is None) + min(full, len(rs)))
        if full < len(rs):
            ms = (window_means(hi[full:], lo[full:], n) * _INV_TWO_K).tolist()  # s / den, exactly
            w, alpha, beta, h = self._w, self.alpha, self.beta, self._h
            hs: list[float] = []
            for m, qi in zip(ms, q[full:].tolist(), strict=True):  # update's recursion, in locals
                h = w * m + alpha * qi + beta * h if h == h else m
                hs.append(h)
            self._h = h
            out += np.sqrt(hs).tolist()
            self.value = out[-1]
        self._prev = closes[-1]
        self._window = slide(window, v, n)
        self._sum = last_sum(hi, lo)
        return out
