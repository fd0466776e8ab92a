"""Simulated execution: market orders fill at the next bar's open, with slippage and a fee.

Slippage moves the price against us (buys pay more, sells receive less); the fee is a fraction of
the filled notional, paid in quote currency from cash.
"""

from __future__ import annotations

from schemas.messages import Bar, Fill, Order

BPS = 1e-4


class SimulatedExecution:
    def __init__(self, fee_bps: float, slippage_bps: float) -> None:
        if fee_bps < 0 or slippage_bps < 0:
            raise ValueError("fee_bps and slippage_bps must be >= 0")
        self.fee_rate = fee_bps * BPS
        self.slippage = slippage_bps * BPS
        self.pending: list[Order] = []

    def submit(self, order: Order) -> None:
        self.pending.append(order)

    def on_bar_open(self, bar: Bar) -> list[Fill]:
        """Fill every pending order at this bar's open."""
        if not self.pending:
            return []
        fills = []
        for order in self.pending:
            if order.side == "buy":
                price = bar.open * (1.0 + self.slippage)
                if order.quote_budget > 0.0:
                    qty = order.quote_budget / (price * (1.0 + self.fee_rate))
                else:
                    qty = order.qty
            else:
                price = bar.open * (1.0 - self.slippage)
                qty = order.qty
            fills.append(
                Fill(
                    fill_id=f"{order.order_id}-1",
                    order_id=order.order_id,
                    symbol=order.symbol,
                    ts_event=bar.ts_event,
                    ts_init=bar.ts_event,
                    side=order.side,
                    price=price,
                    qty=qty,
                    fee=qty * price * self.fee_rate,
                )
            )
        self.pending = []
        return fills
