"""Exit generators: rules that *produce* closing orders from a position and a mark, as opposed to
checks that refuse intents. One rule per file (stop_loss, take_profit, trailing_stop); this
module holds what they share.

`exits(position, mark, ts)` returns an `ExitIntent` closing the whole position, or None. Odd
inputs (flat position, NaN or non-positive mark / entry price) return None: an exit cannot be
priced against nothing, and stale_data keeps such a symbol reduce-only. Exit intents reduce risk,
so the engine's non-order tiers pass them; the order tier (lot, min notional) still applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

from schemas.messages import OrderIntent, Side


@dataclass(frozen=True, slots=True)
class Position:
    """What an exit rule needs of one symbol's position.

    `best_price` is the most favourable mark since the position was opened (the highest for a
    long, the lowest for a short): the book keeps it, so the trailing stop stays a pure function.
    """

    symbol: str
    qty: float  # signed base quantity
    avg_price: float  # entry price
    best_price: float = float("nan")


@dataclass(frozen=True, slots=True)
class ExitIntent:
    """A request to close `qty` (> 0) of `symbol` on `side`, and why."""

    symbol: str
    ts: int
    side: Side
    qty: float
    ref_price: float  # the mark that triggered it
    rule: str
    reason: str

    def to_order_intent(self, intent_id: str, ts_init: int) -> OrderIntent:
        return OrderIntent(
            intent_id=intent_id,
            symbol=self.symbol,
            ts_event=self.ts,
            ts_init=ts_init,
            side=self.side,
            qty=self.qty,
            ref_price=self.ref_price,
        )


class ExitRule(Protocol):
    name: ClassVar[str]

    def exits(self, position: Position, mark: float, ts: int) -> ExitIntent | None: ...

    def trigger(self, position: Position, mark: float = ...) -> float | None:
        """The price level a resting exit order for `position` works at (None: no level)."""
        ...


def close_position(
    position: Position, mark: float, ts: int, rule: str, reason: str
) -> ExitIntent | None:
    """The intent that flattens `position` at `mark`; None when it is flat or its size is NaN."""
    q = position.qty
    if not (q > 0.0 or q < 0.0):
        return None
    side: Side = "sell" if q > 0.0 else "buy"
    return ExitIntent(position.symbol, ts, side, abs(q), mark, rule, reason)


def priced(position: Position, mark: float) -> bool:
    """Entry price and mark usable for a trigger comparison."""
    entry = position.avg_price
    return math.isfinite(mark) and mark > 0.0 and math.isfinite(entry) and entry > 0.0
