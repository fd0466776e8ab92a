"""Simple moving average over the last n closes, summed in exact fixed point (no drift, and
`compare` decides crossings exactly even when two averages tie)."""

from __future__ import annotations

import math
from collections import deque

from operators.features.base import FIELDS, NAN, spec_name
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

    def compare(self, other: SMA) -> int:
        """Exact sign of self.value - other.value (both must be ready)."""
        lhs = self.exact_sum * other.n
        rhs = other.exact_sum * self.n
        return (lhs > rhs) - (lhs < rhs)
