"""Independent plain event loop for SMA-cross on several symbols sharing ONE spot account
(docs/adr/0009), written separately from operators/ to check the streaming flow (shares no
code with it).

Rules it implements:
- every symbol's bars are merged and processed in (open time, symbol) order;
- at open time t: first each symbol's pending order fills at its bar's open (fee on the filled
  notional; a buy spends its quote budget: qty = budget / (open * (1 + fee))), then each symbol
  is marked at its close and the account equity (cash + value of open positions at their last
  marks) is recorded once for t, then each symbol's SMA(fast) vs SMA(slow) cross on closes (exact
  fixed point) becomes a decision: a cross up while flat buys with budget
  min(fraction * equity, cash - cash promised to unfilled buys) (none at or below 1e-9 of
  equity); a cross down while long sells the whole position; both fill at that symbol's next
  bar's open (never, if it has none).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple


class RefFill(NamedTuple):
    ts: int
    symbol: str
    side: str
    price: float
    qty: float
    fee: float


def shared_account_backtest(
    bars: Iterable[Any],  # objects with symbol, ts_event, open, close (any order)
    *,
    interval_ns: int,
    fast: int = 10,
    slow: int = 50,
    fee: float = 0.001,
    fraction: float = 1.0,
    cash0: float = 1_000_000.0,
) -> dict[str, Any]:
    events = sorted(bars, key=lambda b: (b.ts_event, b.symbol))
    closes: dict[str, list[int]] = {}  # fixed-point closes per symbol
    prev_sign: dict[str, int | None] = {}
    qty: dict[str, float] = {}
    mark: dict[str, float] = {}
    pending: dict[str, tuple[str, float]] = {}  # symbol -> ("buy", budget) | ("sell", qty)
    cash = cash0
    fills: list[RefFill] = []
    equity: list[tuple[int, float]] = []

    def account_equity() -> float:
        value = 0.0
        for s in sorted(qty):
            if qty[s] != 0.0:
                value += qty[s] * mark[s]
        return cash + value

    i = 0
    while i < len(events):
        t = events[i].ts_event
        group = []
        while i < len(events) and events[i].ts_event == t:
            group.append(events[i])
            i += 1
        for b in group:  # fills at the open
            order = pending.pop(b.symbol, None)
            if order is None:
                continue
            side, amount = order
            px = b.open
            if side == "buy":
                q = amount / (px * (1.0 + fee))
                f = q * px * fee
                cash = cash - q * px
                qty[b.symbol] = qty.get(b.symbol, 0.0) + q
            else:
                q = amount
                f = q * px * fee
                cash = cash + q * px
                qty[b.symbol] = 0.0
            cash = cash - f
            mark[b.symbol] = px
            fills.append(RefFill(t, b.symbol, side, px, q, f))
        for b in group:  # marks at the close
            mark[b.symbol] = b.close
        eq = account_equity()
        equity.append((t + interval_ns, eq))
        for b in group:  # decisions
            c = closes.setdefault(b.symbol, [])
            c.append(round(b.close * 100_000_000))
            if len(c) < slow:
                continue
            f_sum, s_sum = sum(c[-fast:]), sum(c[-slow:])
            d = f_sum * slow - s_sum * fast
            sign = (d > 0) - (d < 0)
            prev = prev_sign.get(b.symbol)
            prev_sign[b.symbol] = sign
            if prev is None:
                continue
            held = qty.get(b.symbol, 0.0)
            if sign > 0 and prev <= 0 and held == 0.0:
                reserved = sum(a for sd, a in pending.values() if sd == "buy")
                budget = min(fraction * eq, cash - reserved)
                if budget > 1e-9 * eq:
                    pending[b.symbol] = ("buy", budget)
            elif sign < 0 and prev >= 0 and held > 0.0:
                pending[b.symbol] = ("sell", held)
    return {"fills": fills, "equity": equity, "final_equity": equity[-1][1] if equity else cash0}


def fills_of(messages: Sequence[Any]) -> list[RefFill]:
    """Flow Fill messages in the reference's shape and order."""
    out = [
        RefFill(m.ts_event, m.symbol, m.side, m.price, m.qty, m.fee)
        for m in messages
        if type(m).__name__ == "Fill"
    ]
    return sorted(out, key=lambda f: (f.ts, f.symbol))
