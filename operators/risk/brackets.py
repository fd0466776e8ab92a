"""Exit orders that rest with the execution simulator: per open position one protective stop
(stop-market at the tighter of the stop-loss and the trailing stop) and one take-profit (limit).

The account step asks `wanted(...)` at each bar close of a symbol and reconciles what is working:
a level that moved (the trailing stop, or the entry price after an add) amends the working order,
a size that changed replaces it. Levels are rounded to the symbol's tick towards the position
(a long's stop up, its take-profit up; a short's both down), so rounding never loosens a stop.
When a bar reaches both the stop and the take-profit of a position, the stop fills: the
take-profit is canceled before the bar is simulated (`both_touched`), the conservative reading of
a bar whose intrabar order is unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from operators.risk.exits import ExitRule, Position
from schemas.messages import Bar, OrderType, Side


@dataclass(frozen=True, slots=True)
class ExitOrder:
    """One resting exit an open position should have."""

    kind: OrderType  # "stop" or "limit"
    side: Side
    qty: float
    price: float  # stop price or limit price
    cause: str  # the exit rule whose level this is


def _round_tick(price: float, tick: float, up: bool) -> float:
    if not tick > 0.0:
        return price
    n = price / tick
    k = math.ceil(n - 1e-9) if up else math.floor(n + 1e-9)
    decimals = max(0, -math.floor(math.log10(tick)) + 1)
    return round(k * tick, decimals)


@dataclass(frozen=True)
class Brackets:
    stops: tuple[ExitRule, ...]  # stop_loss, trailing_stop (whichever is configured)
    take_profit: ExitRule | None

    @property
    def active(self) -> bool:
        return bool(self.stops) or self.take_profit is not None

    def wanted(self, position: Position, mark: float, tick: float) -> list[ExitOrder]:
        """The resting exits `position` should have now (none when flat or unpriced)."""
        q = position.qty
        if not (q > 0.0 or q < 0.0):
            return []
        long = q > 0.0
        side: Side = "sell" if long else "buy"
        out: list[ExitOrder] = []
        best: tuple[float, str] | None = None
        for rule in self.stops:
            level = rule.trigger(position, mark)
            if level is None or not level > 0.0:
                continue
            if best is None or (level > best[0] if long else level < best[0]):
                best = (level, rule.name)
        if best is not None:
            out.append(ExitOrder("stop", side, abs(q), _round_tick(best[0], tick, long), best[1]))
        if self.take_profit is not None:
            level = self.take_profit.trigger(position, mark)
            if level is not None and level > 0.0:
                price = _round_tick(level, tick, long)
                out.append(ExitOrder("limit", side, abs(q), price, self.take_profit.name))
        return out


def both_touched(bar: Bar, long: bool, stop: float, take: float) -> bool:
    """The bar reaches both a position's stop and its take-profit."""
    if long:
        return bar.low <= stop and bar.high >= take
    return bar.high >= stop and bar.low <= take
