"""Cap the notional of one symbol's position after the order would fill."""

from __future__ import annotations

from schemas.messages import OrderIntent


class MaxPositionNotional:
    name = "max_position_notional"

    def __init__(self, limit: float) -> None:
        if limit <= 0:
            raise ValueError("max_position_notional must be > 0")
        self.limit = limit

    def check(self, intent: OrderIntent, position_qty: float) -> str | None:
        price = intent.ref_price
        current = position_qty * price
        if intent.side == "buy":
            added = intent.quote_budget if intent.quote_budget > 0.0 else intent.qty * price
            projected = current + added
        else:
            projected = abs(current - intent.qty * price)
        if projected > self.limit:
            return f"projected position notional {projected:.2f} exceeds limit {self.limit:.2f}"
        return None
