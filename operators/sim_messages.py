"""Wire messages of the execution simulator and the account (not wired into the flow yet).

They move to schemas/messages.py when the lead wires `ExecutionSim` and `Account` in; until then
they live here so schemas/ stays untouched. Same style as schemas/messages.py: frozen msgspec
Structs, data are nouns, commands imperative, events past tense, times int ns UTC
(`ts_event` = when it happened, `ts_init` = when cryptoflow created the object, derived from
event time in replay).
"""

from __future__ import annotations

from typing import Literal

from schemas.messages import Fill, Message, Side

OrderType = Literal["market", "limit", "stop"]  # "stop" = stop-market
TimeInForce = Literal["GTC", "IOC", "GTD"]
Liquidity = Literal["taker", "maker"]
AccountKind = Literal["spot", "margin"]
ExpiryReason = Literal["IOC", "GTD", "canceled"]


class SubmitOrder(Message, frozen=True):
    """Command: work an order. `ts_event` is the submit time; it becomes active at the first bar
    whose open time >= ts_event + latency. Exactly one of qty (base) and quote_budget (quote to
    spend including fees; market buys only) is > 0."""

    order_id: str
    symbol: str
    ts_event: int
    ts_init: int
    side: Side
    qty: float = 0.0
    quote_budget: float = 0.0
    order_type: OrderType = "market"
    limit_price: float = 0.0  # limit orders
    stop_price: float = 0.0  # stop orders: buy triggers at >= stop, sell at <= stop
    time_in_force: TimeInForce = "GTC"
    expire_ts: int = 0  # GTD: works on bars that close at or before this time


class CancelOrder(Message, frozen=True):
    """Command: stop working an order (whatever has not filled yet)."""

    order_id: str
    ts_event: int
    ts_init: int


class OrderFilled(Message, frozen=True):
    """An order (partly) filled in one bar. `to_fill` maps it onto schemas.messages.Fill."""

    fill_id: str  # "<order_id>-<n>", n = 1, 2, ... per order
    order_id: str
    symbol: str
    ts_event: int  # open time of the bar it filled in
    ts_init: int
    side: Side
    price: float  # after slippage
    qty: float
    fee: float  # quote, paid from cash
    liquidity: Liquidity
    base_price: float  # the price on the bar's path before slippage (within [low, high])
    slippage_bps: float  # applied against the trader; 0 for maker fills
    leaves_qty: float  # base still working (qty orders); 0 for quote-budget orders
    leaves_quote: float  # quote budget still working (quote-budget orders); 0 otherwise
    done: bool  # nothing left to work


class OrderExpired(Message, frozen=True):
    """What was left of an order ended by its time in force (IOC or GTD) or a cancel."""

    order_id: str
    symbol: str
    ts_event: int
    ts_init: int
    reason: ExpiryReason
    filled_qty: float
    leaves_qty: float
    leaves_quote: float


class Liquidation(Message, frozen=True):
    """A margin account's position closed by the liquidation engine at `price`."""

    account: str
    symbol: str
    ts_event: int
    ts_init: int
    side: Side  # the closing trade's side (buy closes a short)
    qty: float
    price: float
    fee: float
    realized_pnl: float  # of this close, gross of the fee
    equity_before: float  # at the marks that triggered it
    maintenance_margin: float  # of the whole account at those marks


class PositionState(Message, frozen=True):
    """One symbol's position inside an `AccountState`."""

    symbol: str
    qty: float  # signed: < 0 short
    avg_price: float
    mark_price: float
    realized_pnl: float  # gross of fees
    unrealized_pnl: float
    fees: float
    notional: float  # signed qty * mark


class AccountState(Message, frozen=True):
    """An account's books at one time (all symbols)."""

    account: str
    ts_event: int
    ts_init: int
    kind: AccountKind
    cash: float
    equity: float
    realized_pnl: float  # gross of fees
    unrealized_pnl: float
    fees: float
    gross_exposure: float  # sum |qty| * mark
    net_exposure: float  # sum qty * mark
    initial_margin: float  # gross exposure / max_leverage (0 for spot)
    maintenance_margin: float  # gross exposure * maintenance rate (0 for spot)
    positions: tuple[PositionState, ...]  # by symbol, open positions only


def to_fill(f: OrderFilled) -> Fill:
    """The schemas.messages.Fill of a simulated fill (what the flow publishes today)."""
    return Fill(
        fill_id=f.fill_id,
        order_id=f.order_id,
        symbol=f.symbol,
        ts_event=f.ts_event,
        ts_init=f.ts_init,
        side=f.side,
        price=f.price,
        qty=f.qty,
        fee=f.fee,
        liquidity=f.liquidity,
    )
