"""Relative Strength Index with Wilder smoothing, seeded by the simple mean of the first n
gains/losses (TA-Lib's RSI with unstable period 0: first value at the (n+1)-th close)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from operators.features.base import NAN, spec_name
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

    def update_many(self, bars: Sequence[Bar]) -> list[float]:
        """`[self.update(b) for b in bars]`, the same values and state, in local loops: the
        warm-up as `update` does it, then the steady state with the branches folded
        ((x * m + 0.0) / n is x * m / n for the sums here, which are never negative)."""
        n, m = self.n, self.n - 1
        prev, count, g, lo, value = self._prev, self._count, self._gain, self._loss, self.value
        prices = list(map(attrgetter("close"), bars))
        out: list[float] = []
        append = out.append
        i = 0
        while i < len(prices) and (prev is None or count < n):
            price = prices[i]
            i += 1
            if prev is None:
                prev = price
                append(value)
                continue
            diff = price - prev
            prev = price
            gain = diff if diff > 0 else 0.0
            loss = -diff if diff < 0 else 0.0
            count += 1
            if count < n:
                g += gain
                lo += loss
            else:
                g = (g + gain) / n
                lo = (lo + loss) / n
                total = g + lo
                value = 100.0 * g / total if total != 0.0 else 0.0
            append(value)
        for price in prices[i:]:
            diff = price - prev
            prev = price
            if diff > 0:
                g = (g * m + diff) / n
                lo = lo * m / n
            elif diff < 0:
                g = g * m / n
                lo = (lo * m - diff) / n
            else:
                g = g * m / n
                lo = lo * m / n
            total = g + lo
            append(100.0 * g / total if total != 0.0 else 0.0)
        count += len(prices) - i
        if out:
            value = out[-1]
        self._prev, self._count, self._gain, self._loss, self.value = prev, count, g, lo, value
        return out
