"""High-low range of the bar relative to its close: (h - l) / c (NaN for a zero close)."""

from __future__ import annotations

from operators.features.base import NAN
from schemas.messages import Bar


class HLRange:
    family = "hl_range"

    def __init__(self) -> None:
        self.name = "hl_range"
        self.columns = (self.name,)
        self.warmup = 0
        self.value = NAN

    def update(self, bar: Bar) -> float:
        c = bar.close
        self.value = (bar.high - bar.low) / c if c != 0.0 else NAN
        return self.value
