"""Pre-trade risk rules. Each rule's `check(...)` returns a reason string, or None to pass."""

from operators.risk.max_notional import MaxPositionNotional

__all__ = ["MaxPositionNotional"]
