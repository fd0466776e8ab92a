"""Per-trade statistics of round trips (operators/analytics/round_trips.py).

Only closed trips count in the statistics; open ones ("open" exit reason) are counted in
`n_open` and nothing else, since their PnL is a mark, not a result. A win is pnl > 0, a loss
pnl < 0 (net of fees); a trip at exactly 0 counts in n_trades only.

`fees_share` = fees / gross_pnl when gross_pnl > 0: the part of what the strategy earned before
costs that went to fees (above 1: fees turned a gross profit into a net loss). None when
gross_pnl <= 0: there was nothing to lose to fees, and a ratio over a loss would read backwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from schemas.messages import Fill, Liquidation, RoundTrip


@dataclass(frozen=True)
class TradeStats:
    n_trades: int  # closed trips
    n_open: int
    win_rate: float | None  # wins / n_trades; None without closed trips
    profit_factor: float | None  # sum of wins / -sum of losses; None without losses
    expectancy: float | None  # mean net pnl per closed trip
    avg_return: float | None  # mean `ret` (pnl / entry notional) per closed trip
    avg_win: float | None
    avg_loss: float | None  # <= 0
    largest_win: float | None
    largest_loss: float | None  # the most negative pnl
    avg_holding_ns: float | None
    gross_pnl: float
    fees: float
    net_pnl: float
    fees_share: float | None  # fees / gross_pnl when gross_pnl > 0 (module docstring)
    exit_reasons: dict[str, int] = field(default_factory=dict)  # closed trips, sorted by reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(xs: Sequence[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def trade_stats(trips: Iterable[RoundTrip]) -> TradeStats:
    """Statistics of the closed trips among `trips` (see the module docstring)."""
    closed: list[RoundTrip] = []
    n_open = 0
    for t in trips:
        if t.exit_reason == "open":
            n_open += 1
            continue
        if not (math.isfinite(t.pnl) and math.isfinite(t.gross_pnl) and math.isfinite(t.fees)):
            raise ValueError(f"closed trip {t.trip_id} has a non-finite pnl, gross_pnl or fees")
        closed.append(t)
    pnls = [t.pnl for t in closed]
    wins = [p for p in pnls if p > 0.0]
    losses = [p for p in pnls if p < 0.0]
    gross = math.fsum(t.gross_pnl for t in closed)
    fees = math.fsum(t.fees for t in closed)
    reasons: dict[str, int] = {}
    for t in closed:
        reasons[t.exit_reason] = reasons.get(t.exit_reason, 0) + 1
    return TradeStats(
        n_trades=len(closed),
        n_open=n_open,
        win_rate=len(wins) / len(closed) if closed else None,
        profit_factor=math.fsum(wins) / -math.fsum(losses) if losses else None,
        expectancy=_mean(pnls),
        avg_return=_mean([t.ret for t in closed]),
        avg_win=_mean(wins),
        avg_loss=_mean(losses),
        largest_win=max(wins) if wins else None,
        largest_loss=min(losses) if losses else None,
        avg_holding_ns=_mean([float(t.duration_ns) for t in closed]),
        gross_pnl=gross,
        fees=fees,
        net_pnl=math.fsum(pnls),
        fees_share=fees / gross if gross > 0.0 else None,
        exit_reasons=dict(sorted(reasons.items())),
    )


def per_symbol(trips: Iterable[RoundTrip]) -> dict[str, TradeStats]:
    """`trade_stats` of each symbol's trips, by symbol name."""
    by: dict[str, list[RoundTrip]] = {}
    for t in trips:
        by.setdefault(t.symbol, []).append(t)
    return {s: trade_stats(by[s]) for s in sorted(by)}


def turnover_notional(fills: Iterable[Fill], liquidations: Iterable[Liquidation] = ()) -> float:
    """Traded quote notional: sum |qty * price| over fills (and liquidation closes)."""
    parts: list[float] = []
    items: list[Fill | Liquidation] = [*fills, *liquidations]
    for x in items:
        v = abs(x.qty * x.price)
        if not math.isfinite(v):
            raise ValueError(f"non-finite notional {x.qty!r} * {x.price!r} ({x.symbol})")
        parts.append(v)
    return math.fsum(parts)
