"""Independent, vectorised numpy implementation of examples/sma_cross.toml, written separately
from operators/ to check the streaming flow (shares no code with it)."""

from __future__ import annotations

import numpy as np


def sma_cross_backtest(
    opens: np.ndarray,
    closes: np.ndarray,
    fast: int = 10,
    slow: int = 50,
    fee: float = 0.001,
    cash0: float = 1_000_000.0,
) -> dict[str, np.ndarray | float]:
    n = len(closes)
    c = np.round(closes * 1e8).astype(np.int64)  # exact fixed point: ties decided exactly
    cs = np.concatenate(([0], np.cumsum(c)))
    idx = np.arange(slow - 1, n)  # bars where both averages exist
    fsum = cs[idx + 1] - cs[idx + 1 - fast]
    ssum = cs[idx + 1] - cs[idx + 1 - slow]
    d = np.sign(fsum * slow - ssum * fast)  # sign(SMA_fast - SMA_slow), exact in int64
    prev, cur, t = d[:-1], d[1:], idx[1:]
    up = (cur > 0) & (prev <= 0)
    down = (cur < 0) & (prev >= 0)
    ev_t = t[up | down]
    ev = np.where(up[up | down], 1, -1)
    # Long-only state machine: an event acts only if it changes the state; start flat.
    keep = np.concatenate(([True], ev[1:] != ev[:-1]))
    ev_t, ev = ev_t[keep], ev[keep]
    if len(ev) and ev[0] == -1:
        ev_t, ev = ev_t[1:], ev[1:]
    fill_bar = ev_t + 1
    ok = fill_bar < n  # a decision on the last bar is never filled
    fill_bar, ev = fill_bar[ok], ev[ok]
    px = opens[fill_bar]
    buys, sells = px[ev == 1], px[ev == -1]
    k = len(sells)  # completed round trips
    growth = sells * (1 - fee) / (buys[:k] * (1 + fee))
    cash_before_buy = cash0 * np.concatenate(([1.0], np.cumprod(growth)))[: len(buys)]
    qty = cash_before_buy / (buys * (1 + fee))
    if len(buys) > k:  # still long at the end: mark at the last close, no exit fee
        final = qty[-1] * closes[-1]
    else:
        final = cash_before_buy[-1] * growth[-1] if k else cash0
    fill_qty = np.empty(len(px))
    fill_qty[ev == 1] = qty
    fill_qty[ev == -1] = qty[:k]
    return {
        "fill_bar": fill_bar,
        "side": ev,
        "price": px,
        "qty": fill_qty,
        "final_equity": float(final),
    }
