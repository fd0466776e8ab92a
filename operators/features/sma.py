"""Simple moving average over the last n closes, summed in exact fixed point (no drift, and
`compare` decides crossings exactly even when two averages tie)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from itertools import accumulate, repeat
from operator import attrgetter, mul, sub, truediv

import numpy as np

from operators.features.base import FIELDS, NAN, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar

_isfinite = math.isfinite
_EXACT = 2.0**53  # integers below it are exact in float64


class SMA:
    family = "sma"

    def __init__(self, n: int, field: str = "close") -> None:
        if n < 1:
            raise ValueError("SMA period must be >= 1")
        if field not in FIELDS:
            raise ValueError(f"SMA field must be one of {FIELDS}, got {field!r}")
        self.n = n
        self.field = field
        self.name = spec_name("sma", n) if field == "close" else spec_name("sma", n, field)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[int] = deque()
        self.exact_sum = 0  # sum of the window in units of 1/SCALE
        self._den = n * SCALE
        self.value = NAN

    @property
    def ready(self) -> bool:
        return len(self._window) == self.n

    def update(self, bar: Bar) -> float:
        return self.update_price(getattr(bar, self.field))

    def update_price(self, price: float) -> float:
        if not _isfinite(price):
            raise ValueError(f"not a finite price: {price!r}")
        v = round(price * SCALE)  # exact decimal as int (inlined to_fp: hot path)
        window = self._window
        window.append(v)
        size = len(window)
        if size > self.n:  # the steady state: one in, one out
            s = self.exact_sum + v - window.popleft()
        elif size == self.n:
            s = self.exact_sum + v
        else:
            self.exact_sum += v
            return self.value
        self.exact_sum = s
        self.value = s / self._den  # int/int division rounds correctly
        return self.value

    def update_many(self, bars: Sequence[Bar]) -> list[float]:
        """`[self.update(b) for b in bars]`, the same values and state: the window sums are
        differences of exact integer prefix sums, each divided once (as `update` does).

        In numpy when that is exact: float prices scaled below 2**53 (`rint` is then Python's
        `round`), prefix sums inside int64, and window sums and the divisor below 2**53, where
        float division is the correctly rounded int / int that `update` computes. Otherwise
        (and for a bad price, which raises where `update` would) with Python ints."""
        prices = list(map(attrgetter(self.field), bars))
        n, window = self.n, self._window
        if not prices or set(map(type, prices)) != {float} or self._den >= _EXACT:
            return self._update_many_ints(prices)
        scaled = np.array(prices) * SCALE  # the same products as price * SCALE
        top = float(np.abs(scaled).max()) + 1.0  # NaN (a bad price) fails both tests below
        if not (top * n < _EXACT and top * (len(prices) + n) < 2.0**62):
            return self._update_many_ints(prices)
        seq = np.concatenate([np.array(window, np.int64), np.rint(scaled).astype(np.int64)])
        first = len(window)
        cut = min(max(n - 1 - first, 0), len(prices))  # bars before the window fills
        sums = np.concatenate([[0], np.cumsum(seq)])  # sums[i] = seq[0] + ... + seq[i - 1]
        lo = first + cut + 1
        out = [self.value] * cut
        out += ((sums[lo:] - sums[lo - n : len(seq) + 1 - n]) / float(self._den)).tolist()
        window.clear()  # the last n values of seq (fewer while filling)
        window.extend(seq[max(len(seq) - n, 0) :].tolist())
        self.exact_sum = int(sums[-1] - sums[len(seq) - len(window)])
        if out:
            self.value = out[-1]
        return out

    def _update_many_ints(self, prices: list[float]) -> list[float]:
        if not all(map(math.isfinite, prices)):
            return [self.update_price(p) for p in prices]  # raises at the first bad price
        n, window = self.n, self._window
        seq = [*window, *map(round, map(mul, prices, repeat(SCALE)))]
        first = len(window)
        cut = min(max(n - 1 - first, 0), len(prices))  # bars before the window fills
        sums = [0, *accumulate(seq)]  # sums[i] = seq[0] + ... + seq[i - 1]
        end = len(seq) + 1
        out = [self.value] * cut
        out += map(
            truediv,
            map(sub, sums[first + cut + 1 : end], sums[first + cut + 1 - n :]),
            repeat(self._den),
        )
        window.clear()  # the last n values of seq (fewer while filling)
        window.extend(seq[max(len(seq) - n, 0) :])
        self.exact_sum = sums[-1] - sums[len(seq) - len(window)]
        if out:
            self.value = out[-1]
        return out

    def compare(self, other: SMA) -> int:
        """Exact sign of self.value - other.value (both must be ready)."""
        lhs = self.exact_sum * other.n
        rhs = other.exact_sum * self.n
        return (lhs > rhs) - (lhs < rhs)
