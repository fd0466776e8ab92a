"""Resting exits of an open position, kept in line bar by bar: the account's exit orders.

Split out of `AccountTrader` (which calls `sync_exits` at every close with a position): the
brackets (`operators/risk/brackets`) say which stop-loss / take-profit / trailing-stop orders a
position wants at this close; this file turns that into order submissions, amendments and
cancels on the trader's book, so every exit is an order that passes the risk engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from operators.account_orders import order_event
from operators.risk.context import SymbolSpec
from operators.risk.exits import Position as ExitPosition
from schemas.blocks import Emitted
from schemas.messages import Bar

if TYPE_CHECKING:
    from operators.account_trader import AccountTrader

_NO_SPEC = SymbolSpec(0.0, 0.0, 0.0)


def sync_exits(tr: AccountTrader, bar: Bar, out: list[Emitted]) -> None:
    """Keep the open position's resting exits (stop-loss, take-profit, trailing stop) in line
    with the brackets' levels at this close: submit the missing, amend the moved, replace the
    resized; each is an order and passes the risk engine like any other."""
    sym = bar.symbol
    pos = tr.account.positions.get(sym)
    if pos is None or pos.qty == 0.0 or sym in tr.account.pending_liquidation:
        return
    long = pos.qty > 0.0
    best = tr._best.get(sym, pos.avg_price)
    best = max(best, bar.close) if long else min(best, bar.close)
    tr._best[sym] = best
    closing = "sell" if long else "buy"
    if any(
        o.symbol == sym and o.order_type == "market" and o.side == closing
        for o in tr._orders.values()
    ):
        return  # a market close (signal, halt, flatten) works: resting exits would double it
    spec = tr.specs.get(sym, _NO_SPEC)
    wanted = tr.brackets.wanted(
        ExitPosition(sym, pos.qty, pos.avg_price, best), bar.close, spec.tick_size
    )
    have = tr._exits.setdefault(sym, {})
    for w in wanted:
        cur = have.get(w.kind)
        if cur is not None and cur[0] == "" and cur[1].qty == w.qty:
            continue  # denied for this size already: asking again every bar only spams
        if cur is not None and cur[1].qty == w.qty:
            oid, old = cur
            if old.price != w.price:  # a level moved: amend in place
                key = "stop_price" if w.kind == "stop" else "limit_price"
                tr.sim.amend(oid, **{key: w.price})
                o = msgspec.structs.replace(tr._orders[oid], **{key: w.price})
                tr._orders[oid] = o
                tr._causes[oid] = w.cause
                have[w.kind] = (oid, w)
                out.append(order_event(o, w.cause))
            continue
        if cur is not None and cur[0]:
            tr._cancel(cur[0], bar.ts_close, bar.ts_init, out)
        new = tr._submit(
            sym, w.side, w.qty, 0.0, bar.ts_close, bar.ts_init, bar.close, w.cause, out, w
        )
        have[w.kind] = (new or "", w)
