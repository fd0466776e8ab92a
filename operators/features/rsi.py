"""Relative Strength Index with Wilder smoothing, seeded by the simple mean of the first n
gains/losses (TA-Lib's RSI with unstable period 0: first value at the (n+1)-th close)."""

from __future__ import annotations

from operators.features.base import NAN, BarColumns, spec_name
from schemas.messages import Bar


class RSI:
    family = "rsi"

    def __init__(self, n: int = 14) -> None:
        if n < 2:
            raise ValueError("RSI period must be >= 2")
        self.n = n
        self.name = spec_name("rsi", n)
        self.columns = (self.name,)
        self.warmup = n
        self._prev: float | None = None
        self._count = 0  # price changes seen
        self._gain = 0.0
        self._loss = 0.0
        self.value = NAN

    def update(self, bar: Bar) -> float:
        price = bar.close
        prev, self._prev = self._prev, price
        if prev is None:
            return self.value
        diff = price - prev
        gain = diff if diff > 0 else 0.0
        loss = -diff if diff < 0 else 0.0
        n = self.n
        self._count += 1
        if self._count < n:
            self._gain += gain
            self._loss += loss
            return self.value
        if self._count == n:
            self._gain = (self._gain + gain) / n
            self._loss = (self._loss + loss) / n
        else:
            self._gain = (self._gain * (n - 1) + gain) / n
            self._loss = (self._loss * (n - 1) + loss) / n
        total = self._gain + self._loss
        self.value = 100.0 * self._gain / total if total != 0.0 else 0.0
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        n = self.n
        prev, count, g, lo, v = self._prev, self._count, self._gain, self._loss, self.value
        out: list[float] = []
        for price in cols.field("close"):  # update's arithmetic, in locals
            if prev is None:
                prev = price
                out.append(v)
                continue
            diff = price - prev
            prev = price
            gain = diff if diff > 0 else 0.0
            loss = -diff if diff < 0 else 0.0
            count += 1
            if count < n:
                g += gain
                lo += loss
                out.append(v)
                continue
            if count == n:
                g = (g + gain) / n
                lo = (lo + loss) / n
            else:
                g = (g * (n - 1) + gain) / n
                lo = (lo * (n - 1) + loss) / n
            total = g + lo
            v = 100.0 * g / total if total != 0.0 else 0.0
            out.append(v)
        self._prev, self._count, self._gain, self._loss, self.value = prev, count, g, lo, v
        return out
