"""Round trips from a run's fills, orders and liquidations (schemas.messages.RoundTrip).

Per symbol, a trip opens when the position leaves 0 and closes when it returns to 0. Fills that
add to the position are the trip's entries, fills that reduce it its exits (partial closes stay in
the same trip). A fill that crosses zero (a margin flip) closes the trip with the part that
brings it flat and opens the next with the rest, its fee split pro rata. A position within
`DUST_REL` of the larger of its size and the fill (float residue) counts as flat.

Gross PnL is the trip's cash flow: for a long, exit notional - entry notional, for a short the
reverse. So the trips' net PnL plus the open trips' marked PnL is exactly the fills' cash PnL net
of fees plus the open positions at their marks (tests check it).

A liquidation (margin) produces a `Liquidation` event and no `Fill` or `Order`: pass them in
`liquidations` so those closes count, once, with exit_reason "liquidation".

Order of events: (ts_event, symbol), a liquidation before the fills at the same time (it happens
at the bar open, before the simulator works the orders), then fill ids in natural order
("BTCUSDT-9-1" before "BTCUSDT-10-1": the account numbers orders per symbol, so this is the
order they were submitted in).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.messages import Fill, Liquidation, Order, RoundTrip, TripSide

DUST_REL = 1e-9  # |position| left, relative to max(|position before|, fill qty), that is flat

_DIGITS = re.compile(r"(\d+)")


def natural_key(s: str) -> tuple[str | int, ...]:
    """ "a-9" < "a-10": digit runs compare as numbers (even slots str, odd slots int)."""
    return tuple(int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(s)))


@dataclass
class _Trip:
    n: int
    symbol: str
    sign: float  # +1 long, -1 short
    ts_entry: int
    entry_order: Order
    pos: float = 0.0  # signed
    max_abs: float = 0.0
    entry_qty: float = 0.0
    entry_notional: float = 0.0
    exit_qty: float = 0.0
    exit_notional: float = 0.0
    fees: float = 0.0
    last_ts: int = 0
    last_ts_init: int = 0

    def add(self, qty: float, price: float, fee: float, ts: int, ts_init: int) -> None:
        self.pos += self.sign * qty
        self.max_abs = max(self.max_abs, abs(self.pos))
        self.entry_qty += qty
        self.entry_notional += qty * price
        self.fees += fee
        self.last_ts, self.last_ts_init = ts, ts_init

    def reduce(self, qty: float, price: float, fee: float, ts: int, ts_init: int) -> None:
        self.pos -= self.sign * qty
        self.exit_qty += qty
        self.exit_notional += qty * price
        self.fees += fee
        self.last_ts, self.last_ts_init = ts, ts_init

    def record(
        self,
        ts_exit: int,
        ts_init: int,
        exit_qty: float,
        exit_notional: float,
        exit_reason: str,
        exit_order_id: str,
    ) -> RoundTrip:
        gross = self.sign * (exit_notional - self.entry_notional)
        pnl = gross - self.fees
        side: TripSide = "long" if self.sign > 0 else "short"
        return RoundTrip(
            trip_id=f"{self.symbol}-{self.n}",
            symbol=self.symbol,
            ts_event=ts_exit,
            ts_init=ts_init,
            side=side,
            ts_entry=self.ts_entry,
            ts_exit=ts_exit,
            qty=self.max_abs,
            entry_price=self.entry_notional / self.entry_qty,
            exit_price=exit_notional / exit_qty if exit_qty > 0.0 else math.nan,
            gross_pnl=gross,
            fees=self.fees,
            pnl=pnl,
            ret=pnl / self.entry_notional,
            duration_ns=ts_exit - self.ts_entry,
            exit_reason=exit_reason,
            producer=self.entry_order.producer,
            model_version=self.entry_order.model_version,
            entry_order_id=self.entry_order.order_id,
            exit_order_id=exit_order_id,
        )


def _check_fill(f: Fill, orders: Mapping[str, Order]) -> Order:
    order = orders.get(f.order_id)
    if order is None:
        raise ValueError(
            f"fill {f.fill_id} refers to order {f.order_id!r}, which is not in `orders`: "
            "pass every order of the run (orders table / orders.v1), keyed by order_id"
        )
    if order.symbol != f.symbol:
        raise ValueError(f"fill {f.fill_id} is {f.symbol} but order {f.order_id} is {order.symbol}")
    if f.side not in ("buy", "sell"):
        raise ValueError(f"fill {f.fill_id}: side must be 'buy' or 'sell', got {f.side!r}")
    if not (math.isfinite(f.qty) and f.qty > 0.0 and math.isfinite(f.price) and f.price > 0.0):
        raise ValueError(f"fill {f.fill_id}: needs finite qty > 0 and price > 0")
    if not math.isfinite(f.fee):
        raise ValueError(f"fill {f.fill_id}: fee must be finite, got {f.fee}")
    return order


def round_trips(
    fills: Sequence[Fill],
    orders: Mapping[str, Order],
    *,
    liquidations: Sequence[Liquidation] = (),
    marks: Mapping[str, tuple[int, float]] | None = None,
) -> list[RoundTrip]:
    """Every round trip of `fills` (and `liquidations`), closed ones and, last per symbol, the
    one still open ("open": marked at `marks[symbol]` = (ts, price) when given, else its exit
    price and PnL are NaN). Sorted by (ts_exit, symbol, trip number)."""
    events: list[tuple[int, str, int, tuple[str | int, ...], Fill | Liquidation]] = []
    seen: set[str] = set()
    for f in fills:
        if f.fill_id in seen:
            raise ValueError(f"fill {f.fill_id} appears twice: it would be counted twice")
        seen.add(f.fill_id)
        events.append((f.ts_event, f.symbol, 1, natural_key(f.fill_id), f))
    for i, liq in enumerate(liquidations):
        events.append((liq.ts_event, liq.symbol, 0, (i,), liq))
    events.sort(key=lambda e: e[:4])

    open_: dict[str, _Trip] = {}
    count: dict[str, int] = {}
    out: list[RoundTrip] = []

    def start(sym: str, sign: float, ts: int, order: Order) -> _Trip:
        count[sym] = count.get(sym, 0) + 1
        open_[sym] = _Trip(count[sym], sym, sign, ts, order)
        return open_[sym]

    for ts, sym, _, _, ev in events:
        if isinstance(ev, Liquidation):
            _liquidate(ev, open_, out)
            continue
        order = _check_fill(ev, orders)
        sign = 1.0 if ev.side == "buy" else -1.0
        trip = open_.get(sym)
        if trip is None:
            start(sym, sign, ts, order).add(ev.qty, ev.price, ev.fee, ts, ev.ts_init)
            continue
        if sign == trip.sign:
            trip.add(ev.qty, ev.price, ev.fee, ts, ev.ts_init)
            continue
        held = abs(trip.pos)
        left = held - ev.qty  # > 0: partial close, < 0: flip
        if abs(left) <= DUST_REL * max(held, ev.qty):  # flat: the whole fill closes it
            trip.reduce(ev.qty, ev.price, ev.fee, ts, ev.ts_init)
            out.append(
                trip.record(
                    ts, ev.ts_init, trip.exit_qty, trip.exit_notional, order.cause, order.order_id
                )
            )
            del open_[sym]
        elif left > 0.0:
            trip.reduce(ev.qty, ev.price, ev.fee, ts, ev.ts_init)
        else:  # flip: `held` closes this trip, the rest opens the next; the fee pro rata
            close_fee = ev.fee * (held / ev.qty)
            trip.reduce(held, ev.price, close_fee, ts, ev.ts_init)
            out.append(
                trip.record(
                    ts, ev.ts_init, trip.exit_qty, trip.exit_notional, order.cause, order.order_id
                )
            )
            start(sym, sign, ts, order).add(-left, ev.price, ev.fee - close_fee, ts, ev.ts_init)

    for sym in sorted(open_):
        out.append(_open_trip(open_[sym], marks))
    out.sort(key=lambda r: (r.ts_exit, r.symbol, natural_key(r.trip_id)))
    return out


def _liquidate(liq: Liquidation, open_: dict[str, _Trip], out: list[RoundTrip]) -> None:
    trip = open_.get(liq.symbol)
    closing = "sell" if trip is not None and trip.sign > 0 else "buy"
    if trip is None or liq.side != closing:
        have = "flat" if trip is None else f"{trip.pos:g}"
        raise ValueError(
            f"liquidation of {liq.symbol} at {liq.ts_event} ({liq.side} {liq.qty:g}) does not "
            f"close the position rebuilt from the fills ({have}): fills are missing"
        )
    held = abs(trip.pos)
    if abs(held - liq.qty) > DUST_REL * max(held, liq.qty):
        raise ValueError(
            f"liquidation of {liq.symbol} at {liq.ts_event} closed {liq.qty:g} but the fills "
            f"give a position of {held:g}: fills are missing"
        )
    trip.reduce(liq.qty, liq.price, liq.fee, liq.ts_event, liq.ts_init)
    out.append(
        trip.record(liq.ts_event, liq.ts_init, trip.exit_qty, trip.exit_notional, "liquidation", "")
    )
    del open_[liq.symbol]


def _open_trip(trip: _Trip, marks: Mapping[str, tuple[int, float]] | None) -> RoundTrip:
    """A trip still open: the position valued at its mark (no closing fee), or NaN without."""
    mark = None if marks is None else marks.get(trip.symbol)
    held = abs(trip.pos)
    if mark is None:
        return trip.record(trip.last_ts, trip.last_ts_init, math.nan, math.nan, "open", "")
    ts, price = mark
    if not (math.isfinite(price) and price > 0.0):
        raise ValueError(f"mark of {trip.symbol} must be a finite price > 0, got {price}")
    if ts < trip.last_ts:
        raise ValueError(
            f"mark of {trip.symbol} at {ts} is before its last fill at {trip.last_ts}: "
            "pass the last price of the run"
        )
    return trip.record(ts, ts, trip.exit_qty + held, trip.exit_notional + held * price, "open", "")
