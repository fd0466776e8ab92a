"""Accounting for one sleeve (one symbol's capital): cash, position, PnL, fees, equity.

Used by `Sleeve` only; the flow books on `operators/account.Account` (ADR 0009)."""

from __future__ import annotations

from schemas.messages import EquityPoint, Fill, PositionSnapshot

_DUST = 1e-12  # base quantity below which a position is flat (float residue of sells)


class Portfolio:
    def __init__(self, account: str, initial_cash: float) -> None:
        self.account = account
        self.cash = initial_cash
        self.qty = 0.0
        self.avg_price = 0.0
        self.realized_pnl = 0.0  # gross of fees
        self.fees = 0.0
        self.mark_price = 0.0

    def apply(self, fill: Fill) -> None:
        notional = fill.qty * fill.price
        if fill.side == "buy":
            new_qty = self.qty + fill.qty
            self.avg_price = (self.avg_price * self.qty + notional) / new_qty
            self.qty = new_qty
            self.cash -= notional + fill.fee
        else:
            if fill.qty > self.qty * (1 + 1e-12):
                raise ValueError(f"sell of {fill.qty} exceeds position {self.qty} (long-only)")
            self.realized_pnl += (fill.price - self.avg_price) * fill.qty
            self.qty -= fill.qty
            self.cash += notional - fill.fee
            if self.qty <= _DUST:
                self.qty = 0.0
                self.avg_price = 0.0
        self.fees += fill.fee
        self.mark_price = fill.price

    def mark(self, price: float) -> None:
        self.mark_price = price

    @property
    def equity(self) -> float:
        return self.cash + self.qty * self.mark_price

    @property
    def unrealized_pnl(self) -> float:
        return (self.mark_price - self.avg_price) * self.qty

    def snapshot(self, ts_event: int, ts_init: int) -> PositionSnapshot:
        return PositionSnapshot(
            symbol=self.account,
            ts_event=ts_event,
            ts_init=ts_init,
            qty=self.qty,
            avg_price=self.avg_price,
            cash=self.cash,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=self.unrealized_pnl,
            fees=self.fees,
            mark_price=self.mark_price,
        )

    def equity_point(self, ts_event: int, ts_init: int) -> EquityPoint:
        pos_value = self.qty * self.mark_price
        # positional: this runs once per bar and keyword construction costs ~2x
        return EquityPoint(
            self.account, ts_event, ts_init, self.cash, pos_value, self.cash + pos_value
        )
