"""Exact fixed-point conversion for prices and sizes.

Exchange prices and quantities are decimals with at most 8 places. Scaling by 1e8 and rounding
recovers the exact decimal as an int, so sums and comparisons built on it are exact,
order-independent and cannot depend on float rounding (SMA ties are real in market data).
"""

from __future__ import annotations

import math

SCALE = 100_000_000


def to_fp(x: float) -> int:
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {x!r}")
    return round(x * SCALE)
