"""Backtest statistics from an equity curve and a list of fills (pure numpy, no pandas)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.messages import EquityPoint, Fill

NS_PER_YEAR = 365 * 24 * 3600 * 1_000_000_000


@dataclass(frozen=True)
class Summary:
    initial_equity: float
    final_equity: float
    total_return: float
    sharpe: float
    max_drawdown: float
    win_rate: float | None
    profit_factor: float | None
    n_trades: int  # fills
    n_round_trips: int
    fees: float
    n_bars: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def combine_equity(
    points: Sequence[EquityPoint], initial: dict[str, float]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Total equity over all accounts at every distinct timestamp (see `combine_equity_arrays`)."""
    return combine_equity_arrays(
        np.array([p.ts_event for p in points], dtype=np.int64),
        np.array([p.account for p in points], dtype=object),
        np.array([p.equity for p in points], dtype=np.float64),
        initial,
    )


def combine_equity_arrays(
    ts: npt.NDArray[np.int64],
    accounts: npt.NDArray[Any],
    equity: npt.NDArray[np.float64],
    initial: dict[str, float],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Vectorised: per account, forward-fill its equity over the union of timestamps (its
    initial cash before its first point; the last point wins on a repeated timestamp), then sum
    the accounts in sorted-name order, so the result does not depend on input order."""
    if len(ts) == 0:
        return np.array([], dtype=np.int64), np.array([], dtype=np.float64)
    order = np.lexsort((np.arange(len(ts)), accounts.astype(str), ts))
    ts, accounts, equity = ts[order], accounts[order], equity[order]
    uts, slot = np.unique(ts, return_inverse=True)
    names = sorted(set(initial) | {str(a) for a in np.unique(accounts.astype(str))})
    total = np.zeros(len(uts), dtype=np.float64)
    rows = np.arange(len(uts))
    for name in names:
        mine = accounts == name
        col = np.full(len(uts), np.nan)
        col[slot[mine]] = equity[mine]
        have = ~np.isnan(col)
        last = np.maximum.accumulate(np.where(have, rows, -1))
        filled = np.where(last >= 0, col[np.maximum(last, 0)], initial.get(name, 0.0))
        total = total + filled
    return uts.astype(np.int64), total


def round_trips(fills: Sequence[Fill]) -> list[float]:
    """Net PnL (after both sides' fees) of each closed long round trip, per symbol."""
    trips: list[float] = []
    state: dict[str, tuple[float, float]] = {}  # symbol -> (qty, net cash flow)
    for f in sorted(fills, key=lambda f: (f.ts_event, f.symbol, f.fill_id)):
        qty, flow = state.get(f.symbol, (0.0, 0.0))
        if f.side == "buy":
            qty, flow = qty + f.qty, flow - f.qty * f.price - f.fee
        else:
            qty, flow = qty - f.qty, flow + f.qty * f.price - f.fee
        if qty <= 1e-12 * max(f.qty, 1.0):
            trips.append(flow)
            qty, flow = 0.0, 0.0
        state[f.symbol] = (qty, flow)
    return trips


def summarize(
    ts: npt.NDArray[np.int64],
    equity: npt.NDArray[np.float64],
    fills: Sequence[Fill],
    initial_equity: float,
) -> Summary:
    final = float(equity[-1]) if len(equity) else initial_equity
    curve = np.concatenate(([initial_equity], equity))
    rets = curve[1:] / curve[:-1] - 1.0
    sharpe = 0.0
    if len(rets) > 1 and len(ts) > 1:
        sd = float(np.std(rets, ddof=1))
        step = float(np.median(np.diff(ts)))
        if sd > 0 and step > 0:
            sharpe = float(np.mean(rets)) / sd * math.sqrt(NS_PER_YEAR / step)
    peak = np.maximum.accumulate(curve)
    max_dd = float(np.max(1.0 - curve / peak))  # curve starts at initial_equity: never empty
    trips = round_trips(fills)
    wins = [t for t in trips if t > 0]
    losses = [t for t in trips if t <= 0]
    gross_loss = -math.fsum(losses)
    return Summary(
        initial_equity=initial_equity,
        final_equity=final,
        total_return=final / initial_equity - 1.0,
        sharpe=sharpe,
        max_drawdown=max_dd,
        win_rate=len(wins) / len(trips) if trips else None,
        profit_factor=(math.fsum(wins) / gross_loss) if gross_loss > 0 else None,
        n_trades=len(fills),
        n_round_trips=len(trips),
        fees=math.fsum(f.fee for f in fills),
        n_bars=len(ts),
    )
