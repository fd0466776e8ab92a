"""Exit: close a position once the mark moves `pct` against its entry price (trigger inclusive).
Odd inputs return None (see operators/risk/exits.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from operators.risk.exits import ExitIntent, Position, close_position, priced


@dataclass(frozen=True)
class StopLoss:
    name: ClassVar[str] = "stop_loss"
    pct: float = 0.005

    def __post_init__(self) -> None:
        if not 0.0 < self.pct < 1.0:
            raise ValueError("stop_loss.pct must be in (0, 1)")

    def trigger(self, position: Position, mark: float = 0.0) -> float | None:
        """The stop level of a resting exit order (None: flat or unpriced)."""
        entry = position.avg_price
        if not (entry > 0.0 and math.isfinite(entry)) or not (
            position.qty > 0.0 or position.qty < 0.0
        ):
            return None
        return entry * (1.0 - self.pct) if position.qty > 0.0 else entry * (1.0 + self.pct)

    def exits(self, position: Position, mark: float, ts: int) -> ExitIntent | None:
        if not priced(position, mark):
            return None
        entry = position.avg_price
        if position.qty > 0.0:
            trigger = entry * (1.0 - self.pct)
            hit = mark <= trigger
        else:
            trigger = entry * (1.0 + self.pct)
            hit = mark >= trigger
        if not hit:
            return None
        reason = f"stop loss: mark {mark:.10g} through {trigger:.10g} ({self.pct:.2%} from entry)"
        return close_position(position, mark, ts, self.name, reason)
