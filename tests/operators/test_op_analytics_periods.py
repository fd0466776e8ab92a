"""Daily / monthly returns against hand-worked boundaries, a separate grouping loop, real bars."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.analytics.breakdown import daily_and_monthly
from operators.analytics.periods import PeriodReturn, monthly_table, period_returns
from tests.paths import BARS_2024_01

MINUTE = 60 * 10**9
HOUR = 60 * MINUTE
DAY = 24 * HOUR
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int((datetime(y, mo, d, h, mi, tzinfo=UTC) - EPOCH).total_seconds()) * 10**9


@cache
def eth_curve() -> tuple[np.ndarray, np.ndarray]:
    df = (
        pl.read_parquet(BARS_2024_01)
        .filter(pl.col("symbol") == "ETHUSDT")
        .sort("open_time")
        .with_columns(pl.col("open_time").dt.epoch("ns").alias("ts"))
    )
    close = df["close"].to_numpy()
    return df["ts"].to_numpy() + MINUTE, 1000.0 * close / close[0]


def loop_periods(ts: list[int], eq: list[float], initial: float, fmt: str) -> list[tuple]:
    """Group by the calendar label of the instant just before each close, walking in order."""
    groups: list[list[int]] = []
    labels: list[str] = []
    for i, t in enumerate(ts):
        label = (EPOCH + timedelta(microseconds=(t - 1) // 1000)).strftime(fmt)
        if not labels or labels[-1] != label:
            labels.append(label)
            groups.append([])
        groups[-1].append(i)
    out, prev = [], initial
    for label, g in zip(labels, groups, strict=True):
        out.append((label, ts[g[0]], ts[g[-1]], prev, eq[g[-1]], eq[g[-1]] / prev - 1, len(g)))
        prev = eq[g[-1]]
    return out


def as_tuples(ps: list[PeriodReturn]) -> list[tuple]:
    return [
        (p.period, p.start_ns, p.end_ns, p.start_equity, p.end_equity, p.ret, p.n_bars) for p in ps
    ]


def test_hand_worked_boundaries() -> None:
    ts = [ns(2024, 1, 1, 12), ns(2024, 1, 2), ns(2024, 1, 2, 6), ns(2024, 1, 31, 23),
          ns(2024, 2, 1), ns(2024, 2, 1, 0, 1)]  # fmt: skip
    eq = [101.0, 102.0, 99.0, 100.0, 105.0, 110.0]
    days = period_returns(np.array(ts), eq, 100.0, "day")
    # The closes at exactly 00:00 belong to the day (and month) that just ended.
    assert [(p.period, p.n_bars, p.start_equity, p.end_equity) for p in days] == [
        ("2024-01-01", 2, 100.0, 102.0),
        ("2024-01-02", 1, 102.0, 99.0),
        ("2024-01-31", 2, 99.0, 105.0),
        ("2024-02-01", 1, 105.0, 110.0),
    ]
    assert days[0].ret == pytest.approx(0.02) and days[1].ret == pytest.approx(99 / 102 - 1)
    assert (days[2].start_ns, days[2].end_ns) == (ts[3], ts[4])
    months = period_returns(np.array(ts), eq, 100.0, "month")
    assert [(p.period, p.n_bars, p.ret) for p in months] == [
        ("2024-01", 5, pytest.approx(0.05)),
        ("2024-02", 1, pytest.approx(110 / 105 - 1)),
    ]
    assert months[0].to_dict()["period"] == "2024-01"


def test_real_month_of_bars_against_loop() -> None:
    ts, eq = eth_curve()
    days, months = daily_and_monthly(ts, eq, 1000.0)
    assert [(p.period, p.n_bars) for p in months] == [("2024-01", 44_640)]
    assert len(days) == 31 and all(p.n_bars == 1440 for p in days)
    assert days[0].period == "2024-01-01" and days[-1].period == "2024-01-31"
    assert as_tuples(days) == loop_periods(ts.tolist(), eq.tolist(), 1000.0, "%Y-%m-%d")
    assert as_tuples(months) == loop_periods(ts.tolist(), eq.tolist(), 1000.0, "%Y-%m")
    total = eq[-1] / 1000.0 - 1.0
    assert math.prod(1 + p.ret for p in days) - 1 == pytest.approx(total, rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 3 * DAY), st.floats(10.0, 1000.0)), min_size=1, max_size=80),
    st.floats(10.0, 1000.0),
)
def test_periods_chain_and_compound_to_the_total(
    steps: list[tuple[int, float]], ini: float
) -> None:
    ts = ns(2023, 12, 30) + np.cumsum([s for s, _ in steps]).astype(np.int64)
    eq = [v for _, v in steps]
    for period, fmt in (("day", "%Y-%m-%d"), ("month", "%Y-%m")):
        ps = period_returns(ts, eq, ini, period)  # type: ignore[arg-type]
        assert as_tuples(ps) == loop_periods(ts.tolist(), eq, ini, fmt)
        assert sum(p.n_bars for p in ps) == len(eq)
        assert ps[0].start_equity == ini and ps[-1].end_equity == eq[-1]
        assert all(a.end_equity == b.start_equity for a, b in itertools.pairwise(ps))
        compounded = math.prod(1 + p.ret for p in ps) - 1
        assert compounded == pytest.approx(eq[-1] / ini - 1, rel=1e-9, abs=1e-12)


def test_monthly_table_across_a_year_end() -> None:
    ts = np.arange(ns(2023, 11, 15), ns(2024, 2, 11), DAY, dtype=np.int64)
    rng = np.random.default_rng(3)
    eq = 100.0 * np.cumprod(1 + 0.01 * rng.standard_normal(len(ts)))
    table = monthly_table(period_returns(ts, eq, 100.0, "month"))
    assert {y: sorted(m) for y, m in table.items()} == {2023: [11, 12], 2024: [1, 2]}

    # Month ends worked separately: the last close at or before 00:00 of the next month.
    def last_at_or_before(t: int) -> float:
        return float(eq[np.searchsorted(ts, t, side="right") - 1])

    nov = last_at_or_before(ns(2023, 12, 1))
    dec = last_at_or_before(ns(2024, 1, 1))
    jan = last_at_or_before(ns(2024, 2, 1))
    assert table[2023][11] == pytest.approx(nov / 100.0 - 1, rel=1e-12)
    assert table[2023][12] == pytest.approx(dec / nov - 1, rel=1e-12)
    assert table[2024][1] == pytest.approx(jan / dec - 1, rel=1e-12)
    assert table[2024][2] == pytest.approx(eq[-1] / jan - 1, rel=1e-12)


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="period"):
        period_returns([1, 2], [1.0, 1.0], 1.0, "week")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strictly increasing"):
        period_returns([2, 1], [1.0, 1.0], 1.0, "day")
    with pytest.raises(ValueError, match="> 0"):
        period_returns([1, 2], [1.0, 0.0], 1.0, "day")
    days = period_returns([ns(2024, 1, 1, 1), ns(2024, 1, 2, 1)], [1.0, 2.0], 1.0, "day")
    with pytest.raises(ValueError, match="monthly"):
        monthly_table(days)
    months = period_returns([ns(2024, 1, 1, 1)], [1.0], 1.0, "month")
    with pytest.raises(ValueError, match="twice"):
        monthly_table(months + months)
    assert period_returns(np.array([], dtype=np.int64), [], 1.0, "day") == []
