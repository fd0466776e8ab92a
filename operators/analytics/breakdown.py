"""Per-period breakdowns of one equity curve (per-symbol PnL lives with the round trips)."""

from __future__ import annotations

import numpy.typing as npt

from operators.analytics.periods import PeriodReturn, period_returns


def daily_and_monthly(
    ts: npt.ArrayLike, equity: npt.ArrayLike, initial: float
) -> tuple[list[PeriodReturn], list[PeriodReturn]]:
    """(daily, monthly) UTC period returns of the curve."""
    return period_returns(ts, equity, initial, "day"), period_returns(ts, equity, initial, "month")
