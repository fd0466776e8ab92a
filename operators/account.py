"""One account across symbols: cash, signed positions, PnL, fees, equity, exposure, margin.

Two kinds (docs/execution.md):
- `spot`: long only, no borrowing. Cash pays the whole notional of a buy plus its fee; equity =
  cash + sum(qty * mark). A buy beyond cash or a sell beyond the position is refused.
- `margin`: long and short, leverage up to `max_leverage`. Cash moves only by realized PnL and
  fees (the notional is borrowed); equity = cash + sum(unrealized PnL). An order is affordable
  when the account's gross exposure after it, times the initial margin rate 1/max_leverage, fits
  in equity net of the fee. When equity < maintenance rate * gross exposure at the marks, every
  open position is liquidated at the next price it gets (`check_liquidation`, `liquidate`).

Both kinds keep equity == initial_cash + realized_pnl + unrealized_pnl - fees.

Floats: values are float64 and never rounded; every update evaluates the same expressions in the
same order, so the same fills and marks give bit-identical state (and pickles). Realized PnL
uses the average-cost method. A position whose |qty| falls to 1e-12 of the larger of its size
and the fill (float residue of closing it) is snapped flat; spot checks allow the same relative
1e-12 of slack, so "sell everything" and "spend all cash" are never refused for the last ulps
and a spot sell within the slack closes the position instead of opening a dust short.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from schemas.messages import (
    AccountKind,
    AccountState,
    EquityPoint,
    Liquidation,
    PositionSnapshot,
    PositionState,
    Side,
)

DUST_REL = 1e-12  # |qty| left after a fill, relative to the size before it, that counts as flat
# spot slack (float residue of all-in buys and full sells); <= DUST_REL, so no dust shorts
SLACK_REL = 1e-12


class FillLike(Protocol):
    """schemas.messages.Fill and OrderFilled both fit."""

    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> Side: ...
    @property
    def price(self) -> float: ...
    @property
    def qty(self) -> float: ...
    @property
    def fee(self) -> float: ...
    @property
    def ts_event(self) -> int: ...


class OrderLike(Protocol):
    """OrderIntent, Order and SubmitOrder all fit (qty in base, or a quote budget for buys)."""

    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> Side: ...
    @property
    def qty(self) -> float: ...
    @property
    def quote_budget(self) -> float: ...


class AccountError(ValueError):
    """A fill the account kind cannot hold (a spot short or a spot buy beyond cash)."""


@dataclass
class Position:
    qty: float = 0.0  # signed
    avg_price: float = 0.0
    mark_price: float = 0.0
    mark_ts: int = 0
    realized_pnl: float = 0.0
    fees: float = 0.0

    @property
    def unrealized_pnl(self) -> float:
        return (self.mark_price - self.avg_price) * self.qty


@dataclass
class Account:
    account: str
    initial_cash: float
    kind: AccountKind = "spot"
    max_leverage: float = 1.0
    maintenance_rate: float = 0.0
    liquidation_fee_rate: float = 0.0  # of the liquidated notional, paid from cash
    cash: float = field(init=False)
    realized_pnl: float = field(init=False, default=0.0)
    fees: float = field(init=False, default=0.0)
    positions: dict[str, Position] = field(init=False, default_factory=dict)
    pending_liquidation: list[str] = field(init=False, default_factory=list)
    # (equity, maintenance margin) at the marks that triggered the pending liquidation
    _trigger: tuple[float, float] = field(init=False, default=(0.0, 0.0), repr=False)

    def __post_init__(self) -> None:
        if not self.initial_cash > 0.0:
            raise ValueError(f"initial_cash must be > 0, got {self.initial_cash}")
        if self.kind == "spot":
            if self.max_leverage != 1.0 or self.maintenance_rate != 0.0:
                raise ValueError("a spot account has no leverage and no maintenance margin")
        elif self.kind == "margin":
            if not self.max_leverage >= 1.0:
                raise ValueError(f"max_leverage must be >= 1, got {self.max_leverage}")
            if not 0.0 <= self.maintenance_rate < 1.0 / self.max_leverage:
                raise ValueError(
                    "maintenance_rate must be in [0, 1/max_leverage) "
                    f"(got {self.maintenance_rate}, 1/max_leverage = {1.0 / self.max_leverage})"
                )
        else:
            raise ValueError(f"unknown account kind {self.kind!r}")
        if self.liquidation_fee_rate < 0.0:
            raise ValueError("liquidation_fee_rate must be >= 0")
        self.cash = self.initial_cash

    # --- updates -------------------------------------------------------------------------------

    def apply_fill(self, fill: FillLike) -> float:
        """Book a fill; returns the PnL it realized (gross of its fee)."""
        if not (fill.qty > 0.0 and fill.price > 0.0):
            raise AccountError(f"fill needs qty > 0 and price > 0, got {fill.qty} @ {fill.price}")
        pos = self.positions.get(fill.symbol)
        if pos is None:
            pos = self.positions[fill.symbol] = Position()
        notional = fill.qty * fill.price
        if self.kind == "spot":
            problem = self._spot_problem(fill.symbol, fill.side, fill.qty, notional + fill.fee)
            if problem is not None:
                raise AccountError(problem)
        realized = self._trade(pos, fill.qty if fill.side == "buy" else -fill.qty, fill.price)
        if self.kind == "spot":
            self.cash += -notional if fill.side == "buy" else notional
        else:
            self.cash += realized
        self.cash -= fill.fee
        self.fees += fill.fee
        pos.fees += fill.fee
        # the fill is the latest price known for the symbol
        pos.mark_price = fill.price
        pos.mark_ts = fill.ts_event
        return realized

    def _trade(self, pos: Position, dq: float, price: float) -> float:
        """Move a position by signed dq at price (average cost); returns the realized PnL."""
        q = pos.qty
        realized = 0.0
        if q == 0.0 or (q > 0.0) == (dq > 0.0):
            new_q = q + dq
            pos.avg_price = (pos.avg_price * abs(q) + price * abs(dq)) / abs(new_q)
        else:
            closed = min(abs(dq), abs(q))
            realized = (price - pos.avg_price) * closed * (1.0 if q > 0.0 else -1.0)
            new_q = q + dq
            if abs(new_q) <= DUST_REL * max(abs(q), abs(dq)):
                new_q = 0.0
                pos.avg_price = 0.0
            elif abs(dq) > abs(q):  # flipped: the rest opens at the fill price
                pos.avg_price = price
        pos.qty = new_q
        pos.realized_pnl += realized
        self.realized_pnl += realized
        return realized

    def mark(self, symbol: str, price: float, ts: int) -> None:
        if not price > 0.0:
            raise ValueError(f"mark price must be > 0, got {price}")
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position()
        pos.mark_price = price
        pos.mark_ts = ts

    # --- views ---------------------------------------------------------------------------------

    def _open(self) -> Iterable[tuple[str, Position]]:
        return ((s, p) for s, p in sorted(self.positions.items()) if p.qty != 0.0)

    @property
    def unrealized_pnl(self) -> float:
        return sum((p.unrealized_pnl for _, p in self._open()), 0.0)

    @property
    def position_value(self) -> float:
        """Signed value of the positions at their marks (net exposure). A plain loop: it runs
        at every account step (equity), in the same symbol order and sum order as `_open`."""
        v = 0.0
        for _, p in sorted(self.positions.items()):
            if p.qty != 0.0:
                v += p.qty * p.mark_price
        return v

    @property
    def gross_exposure(self) -> float:
        return sum((abs(p.qty) * p.mark_price for _, p in self._open()), 0.0)

    @property
    def equity(self) -> float:
        if self.kind == "spot":
            return self.cash + self.position_value
        return self.cash + self.unrealized_pnl

    @property
    def initial_margin(self) -> float:
        return self.gross_exposure / self.max_leverage if self.kind == "margin" else 0.0

    @property
    def maintenance_margin(self) -> float:
        return self.gross_exposure * self.maintenance_rate

    def qty(self, symbol: str) -> float:
        pos = self.positions.get(symbol)
        return 0.0 if pos is None else pos.qty

    # --- pre-trade check -----------------------------------------------------------------------

    def can_afford(
        self, order: OrderLike, price: float | None = None, fee_rate: float = 0.0
    ) -> str | None:
        """The reason the account cannot take this order at `price` (default: the symbol's last
        mark) with a fee of `fee_rate` of the notional, or None when it can."""
        pos = self.positions.get(order.symbol)
        held = 0.0 if pos is None else pos.qty
        if price is None:
            price = 0.0 if pos is None else pos.mark_price
        if not price > 0.0:
            return f"no price for {order.symbol}"
        if order.qty > 0.0:
            qty = order.qty
        elif order.quote_budget > 0.0 and order.side == "buy":
            qty = order.quote_budget / (price * (1.0 + fee_rate))
        else:
            return "order needs qty > 0 (or a quote budget for a buy)"
        notional = qty * price
        fee = notional * fee_rate
        dq = qty if order.side == "buy" else -qty
        reduces = held != 0.0 and (held > 0.0) != (dq > 0.0) and abs(dq) <= abs(held)
        if self.pending_liquidation and not reduces:
            return "liquidation pending"
        if self.kind == "spot":
            return self._spot_problem(order.symbol, order.side, qty, notional + fee)
        if reduces:
            return None  # reducing exposure is always allowed
        mark = 0.0 if pos is None else pos.mark_price
        gross_after = self.gross_exposure - abs(held) * mark + abs(held + dq) * price
        needed = gross_after / self.max_leverage
        available = self.equity - fee
        if needed > available:
            return (
                f"initial margin {needed:.2f} after the order exceeds equity net of fee "
                f"{available:.2f} (max leverage {self.max_leverage:g})"
            )
        return None

    def _spot_problem(self, symbol: str, side: Side, qty: float, cost: float) -> str | None:
        """Why a spot account cannot trade qty (a buy costing `cost` with its fee), or None."""
        if side == "sell":
            held = self.qty(symbol)
            if qty > held * (1.0 + SLACK_REL):
                return f"sell of {qty:g} {symbol} exceeds the position {held:g} (spot)"
        elif cost > self.cash + SLACK_REL * cost:
            return f"buy of {cost:.2f} with fee exceeds cash {self.cash:.2f} (spot)"
        return None

    # --- liquidation ---------------------------------------------------------------------------

    def check_liquidation(self, marks: Mapping[str, float], ts: int) -> list[str]:
        """Mark at `marks`; if equity < maintenance margin, every open position is due for
        liquidation at its next price (`liquidate`). Returns the symbols due (sorted)."""
        for symbol, price in sorted(marks.items()):
            self.mark(symbol, price, ts)
        if self.kind != "margin" or self.pending_liquidation:
            return list(self.pending_liquidation)
        open_syms = [s for s, _ in self._open()]
        if open_syms and self.equity < self.maintenance_margin:
            self._trigger = (self.equity, self.maintenance_margin)
            self.pending_liquidation = open_syms
        return list(self.pending_liquidation)

    def liquidate(self, symbol: str, price: float, ts_event: int, ts_init: int) -> Liquidation:
        """Close a position due for liquidation at `price` (its next price: the next bar's open),
        paying `liquidation_fee_rate` of the notional."""
        if symbol not in self.pending_liquidation:
            raise ValueError(f"{symbol} is not due for liquidation")
        pos = self.positions[symbol]
        equity_before, mm = self._trigger
        side: Side = "sell" if pos.qty > 0.0 else "buy"
        qty = abs(pos.qty)
        fee = qty * price * self.liquidation_fee_rate
        realized = self._trade(pos, -pos.qty, price)  # q + (-q) == 0.0 exactly: flat
        self.cash += realized - fee
        self.fees += fee
        pos.fees += fee
        pos.mark_price = price
        pos.mark_ts = ts_event
        self.pending_liquidation.remove(symbol)
        return Liquidation(
            account=self.account,
            symbol=symbol,
            ts_event=ts_event,
            ts_init=ts_init,
            side=side,
            qty=qty,
            price=price,
            fee=fee,
            realized_pnl=realized,
            equity_before=equity_before,
            maintenance_margin=mm,
        )

    # --- snapshots -----------------------------------------------------------------------------

    def snapshot(self, ts_event: int, ts_init: int | None = None) -> AccountState:
        positions = tuple(
            PositionState(
                symbol=s,
                qty=p.qty,
                avg_price=p.avg_price,
                mark_price=p.mark_price,
                realized_pnl=p.realized_pnl,
                unrealized_pnl=p.unrealized_pnl,
                fees=p.fees,
                notional=p.qty * p.mark_price,
            )
            for s, p in self._open()
        )
        return AccountState(
            account=self.account,
            ts_event=ts_event,
            ts_init=ts_event if ts_init is None else ts_init,
            kind=self.kind,
            cash=self.cash,
            equity=self.equity,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=self.unrealized_pnl,
            fees=self.fees,
            gross_exposure=self.gross_exposure,
            net_exposure=self.position_value,
            initial_margin=self.initial_margin,
            maintenance_margin=self.maintenance_margin,
            positions=positions,
        )

    def position_snapshot(self, symbol: str, ts_event: int, ts_init: int) -> PositionSnapshot:
        """One symbol's position in today's wire shape (cash is the account's)."""
        p = self.positions.get(symbol, Position())
        return PositionSnapshot(
            symbol=symbol,
            ts_event=ts_event,
            ts_init=ts_init,
            qty=p.qty,
            avg_price=p.avg_price,
            cash=self.cash,
            realized_pnl=p.realized_pnl,
            unrealized_pnl=p.unrealized_pnl,
            fees=p.fees,
            mark_price=p.mark_price,
        )

    def equity_point(self, ts_event: int, ts_init: int) -> EquityPoint:
        equity = self.equity  # once: it sums over the open positions (a per-bar hot path)
        return EquityPoint(
            account=self.account,
            ts_event=ts_event,
            ts_init=ts_init,
            cash=self.cash,
            position_value=equity - self.cash,
            equity=equity,
        )
