"""Simple moving average over the last n closes, summed in exact fixed point (no drift, and
`compare` decides crossings exactly even when two averages tie)."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from operators.features.base import BATCH_MIN, FIELDS, NAN, BarColumns, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar


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
        if not math.isfinite(price):
            raise ValueError(f"not a finite price: {price!r}")
        v = round(price * SCALE)  # exact decimal as int (inlined to_fp: hot path)
        window = self._window
        window.append(v)
        self.exact_sum += v
        if len(window) > self.n:
            self.exact_sum -= window.popleft()
            self.value = self.exact_sum / self._den  # int/int division rounds correctly
        elif len(window) == self.n:
            self.value = self.exact_sum / self._den
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        prices = cols.field(self.field)
        run = self.sums_many(prices) if len(prices) >= BATCH_MIN else None
        if run is None:
            return [self.update_price(p) for p in prices]
        return self.values_of(*run)

    @property
    def den(self) -> int:
        return self._den

    def peak(self, prices: list[float]) -> float:
        """An upper bound of |value| in units of 1/SCALE over the window and `prices`."""
        top = max(map(abs, prices), default=0.0) * SCALE + 1.0
        return max(top, float(max(map(abs, self._window), default=0)))

    def fits(self, prices: list[float]) -> bool:
        """Whether `sums_many(prices)` can run: every price finite, every partial sum in int64."""
        if not all(map(math.isfinite, prices)):
            return False
        return self.peak(prices) * (len(self._window) + len(prices)) < 2.0**62

    def sums_many(self, prices: list[float]) -> tuple[np.ndarray, int] | None:
        """The exact window sums (int64, units of 1/SCALE) after each of `prices` and the index
        of the first whose window is full, the state advanced as `update_price` would (but
        `value`: `values_of` or `settle`); None, the state untouched, when not `fits`."""
        window, n = self._window, self.n
        old = len(window)
        first = max(0, n - old - 1)
        if not self.fits(prices):
            return None
        if not prices:
            return np.empty(0, np.int64), first
        fresh = np.rint(np.asarray(prices, dtype=np.float64) * SCALE).astype(np.int64)
        # the products round() sees in update_price, rounded half-even as round() does
        ext = np.concatenate([np.array(window, dtype=np.int64), fresh]) if old else fresh
        csum = np.zeros(len(ext) + 1, np.int64)
        np.cumsum(ext, out=csum[1:])
        end = np.arange(old + 1, len(ext) + 1)
        sums = csum[end] - csum[np.maximum(end - n, 0)]
        self._window = deque(ext[-n:].tolist())
        self.exact_sum = int(sums[-1])
        return sums, first

    def settle(self, sums: np.ndarray, first: int) -> None:
        """Set `value` after a `sums_many` run without building every average."""
        if first < len(sums):
            self.value = int(sums[-1]) / self._den

    def values_of(self, sums: np.ndarray, first: int) -> list[float]:
        """The averages of `sums_many`'s window sums, NaN before `first` (the window fills),
        each the correctly rounded quotient `exact_sum / (n * SCALE)` is; sets `value`."""
        if first >= len(sums):
            return [self.value] * len(sums)
        full = sums[first:]
        out = full.astype(np.float64) / float(self._den)  # exact ints: one rounding
        for i in np.flatnonzero(np.abs(full) > 2**53):  # beyond float's exact ints
            out[i] = int(full[i]) / self._den
        self.value = float(out[-1])
        tail: list[float] = out.tolist()
        return [NAN] * first + tail

    def compare(self, other: SMA) -> int:
        """Exact sign of self.value - other.value (both must be ready)."""
        lhs = self.exact_sum * other.n
        rhs = other.exact_sum * self.n
        return (lhs > rhs) - (lhs < rhs)
