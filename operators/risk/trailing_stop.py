"""Exit: close a position once the mark gives back `pct` from the best price since entry
(`Position.best_price`, kept by the book; trigger inclusive). The best price is taken as at
least as good as the entry and the current mark, so a missing (NaN, infinite, <= 0) best price
degrades to a stop `pct` below max(entry, mark) rather than to no stop. Other odd inputs return
None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from operators.risk.exits import ExitIntent, Position, close_position, priced


@dataclass(frozen=True)
class TrailingStop:
    name: ClassVar[str] = "trailing_stop"
    pct: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 < self.pct < 1.0:
            raise ValueError("trailing_stop.pct must be in (0, 1)")

    def trigger(self, position: Position, mark: float = math.nan) -> float | None:
        """The stop level of a resting exit order: `pct` from the best of the book's best
        price, the entry and `mark` (None: flat or unpriced)."""
        entry = position.avg_price
        if not (entry > 0.0 and math.isfinite(entry)) or not (
            position.qty > 0.0 or position.qty < 0.0
        ):
            return None
        known = [entry] + [p for p in (position.best_price, mark) if math.isfinite(p) and p > 0.0]
        if position.qty > 0.0:
            return max(known) * (1.0 - self.pct)
        return min(known) * (1.0 + self.pct)

    def exits(self, position: Position, mark: float, ts: int) -> ExitIntent | None:
        if not priced(position, mark):
            return None
        best = position.best_price
        usable = math.isfinite(best) and best > 0.0
        known = [position.avg_price, mark] + ([best] if usable else [])
        if position.qty > 0.0:
            peak = max(known)
            trigger = peak * (1.0 - self.pct)
            hit = mark <= trigger
        else:
            peak = min(known)
            trigger = peak * (1.0 + self.pct)
            hit = mark >= trigger
        if not hit:
            return None
        reason = (
            f"trailing stop: mark {mark:.10g} through {trigger:.10g} "
            f"({self.pct:.2%} from best {peak:.10g})"
        )
        return close_position(position, mark, ts, self.name, reason)
