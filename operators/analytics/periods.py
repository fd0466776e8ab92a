"""Calendar (UTC) period returns of an equity curve: per day, per month, a monthly table.

Each period's return runs from the previous period's last equity (`initial` for the first) to
its own last equity, so compounding the period returns gives the total return. A point belongs
to the period holding `ts − 1 ns`: `ts` is a bar close, so the bar closing at 00:00 belongs to
the day (and month) it closed, not the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from operators.analytics.curve import check_curve


@dataclass(frozen=True)
class PeriodReturn:
    period: str  # "2024-01-05" or "2024-01"
    start_ns: int  # first point's ts in the period
    end_ns: int  # last point's ts in the period
    start_equity: float  # previous period's last equity (initial for the first)
    end_equity: float
    ret: float
    n_bars: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def period_returns(
    ts: npt.ArrayLike,
    equity: npt.ArrayLike,
    initial: float,
    period: Literal["day", "month"],
) -> list[PeriodReturn]:
    """One PeriodReturn per calendar period that has at least one point, in time order."""
    t, e, ini = check_curve(ts, equity, initial)
    unit = {"day": "D", "month": "M"}.get(period)
    if unit is None:
        raise ValueError(f"period must be 'day' or 'month', got {period!r}")
    if len(t) == 0:
        return []
    keys = (t - 1).astype("datetime64[ns]").astype(f"datetime64[{unit}]")
    first = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    last = np.concatenate((first[1:] - 1, [len(t) - 1]))
    out: list[PeriodReturn] = []
    prev = ini
    for a, b in zip(first.tolist(), last.tolist(), strict=True):
        end_eq = float(e[b])
        out.append(
            PeriodReturn(
                period=str(keys[a]),
                start_ns=int(t[a]),
                end_ns=int(t[b]),
                start_equity=prev,
                end_equity=end_eq,
                ret=end_eq / prev - 1.0,
                n_bars=b - a + 1,
            )
        )
        prev = end_eq
    return out


def monthly_table(returns: Sequence[PeriodReturn]) -> dict[int, dict[int, float]]:
    """{year: {month: return}} from monthly PeriodReturns (a heatmap's cells)."""
    table: dict[int, dict[int, float]] = {}
    for p in returns:
        parts = p.period.split("-")
        if len(parts) != 2:
            raise ValueError(f"monthly_table needs monthly periods ('YYYY-MM'), got {p.period!r}")
        year, month = int(parts[0]), int(parts[1])
        row = table.setdefault(year, {})
        if month in row:
            raise ValueError(f"month {p.period} appears twice: pass one curve's periods")
        row[month] = p.ret
    return table
