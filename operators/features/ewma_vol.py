"""EWMA volatility (RiskMetrics style, zero mean) of one-bar log returns r_t = ln(c_t / c_{t-1}).

alpha = 2 / (n + 1). The variance is seeded with the mean of the first n squared returns (so the
first value is at bar index n, the bar of the n-th return), then var += alpha * (r**2 - var);
the output is sqrt(var): per-bar, not annualised. The recursion is contractive, so plain floats do
not drift.
"""

from __future__ import annotations

import math

from operators.features.base import NAN, spec_name
from schemas.messages import Bar


class EwmaVol:
    family = "ewma_vol"

    def __init__(self, n: int = 20) -> None:
        if n < 1:
            raise ValueError(f"EWMA volatility period must be >= 1, got {n}")
        self.n = n
        self.name = spec_name("ewma_vol", n)
        self.columns = (self.name,)
        self.warmup = n
        self.alpha = 2.0 / (n + 1)
        self._prev: float | None = None
        self._count = 0  # returns seen, while seeding
        self._seed = 0.0
        self._var = NAN
        self.value = NAN

    def update(self, bar: Bar) -> float:
        c = bar.close
        prev, self._prev = self._prev, c
        if prev is None:
            return self.value
        r = math.log(c / prev)
        q = r * r
        var = self._var
        if var == var:  # seeded (not NaN)
            var += self.alpha * (q - var)
        else:
            self._count += 1
            self._seed += q
            if self._count < self.n:
                return self.value
            var = self._seed / self.n
        self._var = var
        self.value = math.sqrt(var)
        return self.value
