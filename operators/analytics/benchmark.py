"""Buy-and-hold benchmark over the same bars as a strategy.

The initial cash is split equally across the symbols. Each sleeve stays cash until its symbol's
first close, then buys there, paying `fee_rate` of the notional out of the sleeve (notional =
sleeve / (1 + fee_rate)), and holds to the end, marked at the symbol's last close at or before
each evaluation time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from operators.analytics.curve import check_initial, check_times

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def buy_and_hold(
    closes: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    initial: float,
    *,
    fee_rate: float = 0.0,
    at: npt.ArrayLike | None = None,
) -> tuple[I64, F64]:
    """(times, equity) of the equal-weight buy-and-hold portfolio, evaluated on the union of the
    symbols' bar times, or on `at` (strictly increasing) to align with a strategy curve."""
    ini = check_initial(initial)
    if not closes:
        raise ValueError("closes is empty: give at least one symbol's (ts, close)")
    fee = float(fee_rate)
    if not math.isfinite(fee) or not 0.0 <= fee < 1.0:
        raise ValueError(f"fee_rate must be in [0, 1), got {fee_rate}")
    series: list[tuple[I64, F64]] = []
    for sym in sorted(closes):  # sorted: the float sum does not depend on mapping order
        ts_raw, px_raw = closes[sym]
        t = check_times(ts_raw, f"closes[{sym!r}] ts")
        p = np.asarray(px_raw, dtype=np.float64)
        if p.shape != t.shape or len(t) == 0:
            raise ValueError(f"closes[{sym!r}]: {len(t)} times vs {p.shape} closes (need >= 1)")
        if not np.all(np.isfinite(p)) or float(np.min(p)) <= 0.0:
            raise ValueError(f"closes[{sym!r}] must be finite and > 0")
        series.append((t, p))
    if at is None:
        grid = np.unique(np.concatenate([t for t, _ in series])).astype(np.int64)
    else:
        grid = check_times(at, "at")
    sleeve = ini / len(series)
    total = np.zeros(len(grid), dtype=np.float64)
    for t, p in series:
        qty = sleeve / (1.0 + fee) / float(p[0])
        i = np.searchsorted(t, grid, side="right") - 1  # last close at or before each time
        total += np.where(i >= 0, qty * p[np.maximum(i, 0)], sleeve)
    return grid, total
