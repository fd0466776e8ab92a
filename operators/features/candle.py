"""Candle shape as fractions of the bar's range: body (c - o) / (h - l) (signed), upper wick
(h - max(o, c)) / (h - l) and lower wick (min(o, c) - l) / (h - l); all 0.0 for a flat bar."""

from __future__ import annotations

from operators.features.base import BarColumns
from schemas.messages import Bar

_FLAT = (0.0, 0.0, 0.0)


class Candle:
    family = "candle"

    def __init__(self) -> None:
        self.name = "candle"
        self.columns = ("candle_body", "candle_upper_wick", "candle_lower_wick")
        self.warmup = 0

    def update(self, bar: Bar) -> tuple[float, float, float]:
        h = bar.high
        lo = bar.low
        rng = h - lo
        if rng == 0.0:
            return _FLAT
        o = bar.open
        c = bar.close
        if c >= o:
            return ((c - o) / rng, (h - c) / rng, (o - lo) / rng)
        return ((c - o) / rng, (h - o) / rng, (c - lo) / rng)

    def update_many(self, cols: BarColumns) -> list[tuple[float, float, float]]:
        out: list[tuple[float, float, float]] = []
        append = out.append
        for b in cols.bars:  # update's arithmetic, inlined (attribute reads beat field lists)
            h = b.high
            lo = b.low
            rng = h - lo
            if rng == 0.0:
                append(_FLAT)
                continue
            o = b.open
            c = b.close
            if c >= o:
                append(((c - o) / rng, (h - c) / rng, (o - lo) / rng))
            else:
                append(((c - o) / rng, (h - o) / rng, (c - lo) / rng))
        return out
