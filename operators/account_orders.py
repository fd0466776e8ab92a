"""Order helpers of the account step (operators/account_trader.py): the wire `Order` of a
command, the dead letter of a fill the account cannot book, and the book as the risk rules must
see it while market orders are still working.

A market order fills at the next bar open (plus latency), so an order decided before then must
count it: the entry of a flip after its close, or a second symbol's entry decided at the same
close as the first's. `working_market_qty` sums the unfilled quantity of every working market
order per symbol (signed; a quote budget converted at the symbol's mark, fee included) and
`with_working` adds it to a `RiskContext`'s positions, exposure and open-position count. Resting
exits (stop, limit) are contingent and not counted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from operators.account import DUST_REL
from operators.execution_sim import ExecutionSim
from operators.risk.context import RiskContext, exposure
from operators.validation import dead_letter_for
from schemas.messages import DeadLetter, Order, OrderFilled, SubmitOrder


def working_market_qty(
    sim: ExecutionSim, marks: Mapping[str, float], fee_rate: float
) -> dict[str, float]:
    """Signed base quantity still to fill of the working market orders, by symbol."""
    out: dict[str, float] = {}
    for sym, orders in sim.working.items():
        for w in orders:
            o = w.order
            if o.order_type != "market":
                continue
            if w.leaves_qty > 0.0:
                q = w.leaves_qty
            elif w.leaves_quote > 0.0:
                q = w.leaves_quote / (marks.get(sym, math.nan) * (1.0 + fee_rate))
            else:
                continue
            out[sym] = out.get(sym, 0.0) + (q if o.side == "buy" else -q)
    return out


def with_working(ctx: RiskContext, working: Mapping[str, float]) -> RiskContext:
    """`ctx` with `working` (signed base quantities, by symbol) added to its positions."""
    if not working:
        return ctx
    pos = dict(ctx.positions)
    for sym, dq in working.items():
        q0 = pos.get(sym, 0.0)
        q = q0 + dq
        if abs(q) <= DUST_REL * max(abs(q0), abs(dq)):
            pos.pop(sym, None)
        else:
            pos[sym] = q
    gross, net, n_open = exposure(pos, ctx.marks)
    return dataclasses.replace(
        ctx, positions=pos, gross_exposure=gross, net_exposure=net, open_positions=n_open
    )


def order_event(cmd: SubmitOrder, cause: str, origin: tuple[str, str, str] = ("", "", "")) -> Order:
    """The wire `Order` (orders.v1) of a command sent to the simulator; `origin`: the
    (producer, model version, feature version) of the signal that caused it."""
    return Order(
        order_id=cmd.order_id,
        symbol=cmd.symbol,
        ts_event=cmd.ts_event,
        ts_init=cmd.ts_init,
        side=cmd.side,
        qty=cmd.qty,
        quote_budget=cmd.quote_budget,
        order_type=cmd.order_type,
        limit_price=cmd.limit_price,
        stop_price=cmd.stop_price,
        time_in_force=cmd.time_in_force,
        cause=cause,
        producer=origin[0],
        model_version=origin[1],
        feature_version=origin[2],
    )


def dead_fill(ev: OrderFilled, reason: str) -> DeadLetter:
    """A fill the account refused (a bug upstream), kept instead of stopping the flow."""
    return dead_letter_for(ev, "account", f"fill not booked: {reason}", f"account:{ev.fill_id}")
