"""Position sizing: a fraction of sleeve equity per entry (long-only).

A buy is sized by quote budget (like Binance's quoteOrderQty) so that the base quantity is fixed
only at the fill price: all-in means qty = cash / (fill_price * (1 + fee)).
"""

from __future__ import annotations

from schemas.messages import OrderIntent, Signal


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
        if signal.direction > 0 and position_qty == 0.0:
            budget = min(self.fraction * equity, cash)
            if budget <= 0.0:
                return None
            return OrderIntent(
                intent_id=intent_id,
                symbol=signal.symbol,
                ts_event=signal.ts_event,
                ts_init=signal.ts_init,
                side="buy",
                quote_budget=budget,
                ref_price=price,
            )
        if signal.direction < 0 and position_qty > 0.0:
            return OrderIntent(
                intent_id=intent_id,
                symbol=signal.symbol,
                ts_event=signal.ts_event,
                ts_init=signal.ts_init,
                side="sell",
                qty=position_qty,
                ref_price=price,
            )
        return None
