"""Position sizing: a fraction of equity per entry (long-only); in the flow, of the one account's
equity (docs/adr/0009), the cash passed in being what pending buys have not reserved.

A buy is sized by quote budget (like Binance's quoteOrderQty) so that the base quantity is fixed
only at the fill price: all-in means qty = cash / (fill_price * (1 + fee)).
"""

from __future__ import annotations

from schemas.messages import OrderIntent, Side, Signal


class FractionOfEquity:
    def __init__(self, fraction: float) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"sizing fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def size(
        self,
        signal: Signal,
        intent_id: str,
        position_qty: float,
        cash: float,
        equity: float,
        price: float,
    ) -> OrderIntent | None:
        """Return what to trade for this signal, or None when it asks for no change."""
        side: Side
        if signal.direction > 0 and position_qty == 0.0:
            side, qty, budget = "buy", 0.0, min(self.fraction * equity, cash)
            if budget <= 0.0:
                return None
        elif signal.direction < 0 and position_qty > 0.0:
            side, qty, budget = "sell", position_qty, 0.0
        else:
            return None
        return OrderIntent(
            intent_id=intent_id,
            symbol=signal.symbol,
            ts_event=signal.ts_event,
            ts_init=signal.ts_init,
            side=side,
            qty=qty,
            quote_budget=budget,
            ref_price=price,
        )
