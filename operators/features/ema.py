"""Exponential moving average, k = 2/(n+1), seeded with the SMA of the first n values (TA-Lib's
convention, so the stream equals talib.EMA at every bar)."""

from __future__ import annotations

from operators.features.base import FIELDS, NAN, BarColumns, spec_name
from schemas.messages import Bar


class EMA:
    family = "ema"

    def __init__(self, n: int, field: str = "close") -> None:
        if n < 1:
            raise ValueError("EMA period must be >= 1")
        if field not in FIELDS:
            raise ValueError(f"EMA field must be one of {FIELDS}, got {field!r}")
        self.n = n
        self.field = field
        self.name = spec_name("ema", n) if field == "close" else spec_name("ema", n, field)
        self.columns = (self.name,)
        self.warmup = n - 1
        self.k = 2.0 / (n + 1)
        self._count = 0
        self._seed = 0.0
        self.value = NAN

    def update(self, bar: Bar) -> float:
        x = getattr(bar, self.field)
        self._count += 1
        if self._count < self.n:
            self._seed += x
        elif self._count == self.n:
            self.value = (self._seed + x) / self.n
        else:
            self.value = (x - self.value) * self.k + self.value
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        n, k = self.n, self.k
        count, seed, v = self._count, self._seed, self.value
        out: list[float] = []
        for x in cols.field(self.field):  # update's arithmetic, in locals
            count += 1
            if count < n:
                seed += x
            elif count == n:
                v = (seed + x) / n
            else:
                v = (x - v) * k + v
            out.append(v)
        self._count, self._seed, self.value = count, seed, v
        return out
