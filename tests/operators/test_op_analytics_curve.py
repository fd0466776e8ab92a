"""Equity-curve metrics against hand-worked 5-point curves, plain-python loops and real bars."""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.analytics.curve import (
    curve_metrics,
    drawdown,
    drawdown_info,
    periods_per_year,
    returns,
    rolling_sharpe,
)
from operators.performance import summarize
from tests.paths import BARS_2024_01

DAY = 86_400 * 10**9
MINUTE = 60 * 10**9
T0 = 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC

# Returns +10%, -10%, +10%, -10%, +20% from 100: every number below is worked by hand.
EQ5 = np.array([110.0, 99.0, 108.9, 98.01, 117.612])
TS5 = T0 + DAY * np.arange(1, 6, dtype=np.int64)


@cache
def btc_closes() -> tuple[np.ndarray, np.ndarray]:
    df = (
        pl.read_parquet(BARS_2024_01)
        .filter(pl.col("symbol") == "BTCUSDT")
        .sort("open_time")
        .with_columns(pl.col("open_time").dt.epoch("ns").alias("ts"))
    )
    return df["ts"].to_numpy() + MINUTE, df["close"].to_numpy()


def test_returns_periods_drawdown_hand_worked() -> None:
    np.testing.assert_allclose(returns(EQ5, 100.0), [0.1, -0.1, 0.1, -0.1, 0.2], rtol=1e-12)
    assert periods_per_year(TS5) == pytest.approx(365.0, rel=1e-15)
    # Peaks 110, 110, 110, 110, 117.612.
    np.testing.assert_allclose(
        drawdown(EQ5, 100.0), [0.0, -0.1, -0.01, -0.109, 0.0], rtol=1e-12, atol=1e-15
    )
    # The peak includes the initial equity: the first point is already under water.
    np.testing.assert_allclose(drawdown([90.0, 95.0], 100.0), [-0.1, -0.05], rtol=1e-12)


def test_curve_metrics_hand_worked_five_points() -> None:
    m = curve_metrics(TS5, EQ5, 100.0, gross_exposure=[0.0, 50.0, 50.0, 0.0, 10.0],
                      traded_notional=1000.0)  # fmt: skip
    # mean 0.04; deviations .06 -.14 .06 -.14 .16, squares sum 0.072, var (ddof 1) 0.018.
    assert m.n_bars == 5 and m.start_ns == TS5[0] and m.end_ns == TS5[-1]
    assert m.total_return == pytest.approx(0.17612, rel=1e-12)
    assert m.annual_return == pytest.approx(0.04 * 365, rel=1e-12)
    assert m.volatility == pytest.approx(math.sqrt(0.018 * 365), rel=1e-12)
    assert m.sharpe == pytest.approx(0.04 / math.sqrt(0.018) * math.sqrt(365), rel=1e-12)
    # Downside: squares of min(r, 0) are 0, .01, 0, .01, 0 -> mean 0.004.
    assert m.sortino == pytest.approx(0.04 / math.sqrt(0.004) * math.sqrt(365), rel=1e-12)
    # Deepest: 98.01 against the peak 110 -> 1 - 0.891 = 0.109.
    assert m.max_drawdown == pytest.approx(0.109, rel=1e-12)
    assert m.max_drawdown_start_ns == TS5[0]
    assert m.max_drawdown_trough_ns == TS5[3]
    assert m.max_drawdown_end_ns == TS5[4]
    assert m.max_drawdown_duration_ns == 4 * DAY
    # Years = (4 days + one step) / 365; CAGR = 1.17612^(365/5) - 1.
    assert m.cagr == pytest.approx(1.17612**73 - 1.0, rel=1e-9)
    assert m.calmar == pytest.approx((1.17612**73 - 1.0) / 0.109, rel=1e-9)
    assert m.exposure == pytest.approx(3 / 5)
    mean_eq = (110 + 99 + 108.9 + 98.01 + 117.612) / 5
    assert m.turnover == pytest.approx(1000.0 / mean_eq, rel=1e-12)
    assert m.annual_turnover == pytest.approx(1000.0 / mean_eq * 365 / 5, rel=1e-12)
    assert m.n_periods_per_year == pytest.approx(365.0)
    assert m.psr is not None and 0.5 < m.psr < 1.0
    d = m.to_dict()
    assert d["max_drawdown"] == m.max_drawdown and len(d) == 22


def test_unrecovered_drawdown_and_one_from_the_initial_equity() -> None:
    ts = T0 + DAY * np.arange(1, 5, dtype=np.int64)
    m = curve_metrics(ts, [100.0, 120.0, 90.0, 100.0], 100.0)
    assert m.max_drawdown == pytest.approx(0.25)
    assert (m.max_drawdown_start_ns, m.max_drawdown_trough_ns) == (ts[1], ts[2])
    assert m.max_drawdown_end_ns is None
    assert m.max_drawdown_duration_ns == ts[3] - ts[1]  # still under water at the end
    # Under water from the start: the initial equity sits one step before ts[0].
    ts3 = T0 + DAY * np.arange(1, 4, dtype=np.int64)
    m = curve_metrics(ts3, [90.0, 95.0, 101.0], 100.0)
    assert m.max_drawdown_start_ns == ts3[0] - DAY
    assert m.max_drawdown_end_ns == ts3[2]
    assert m.max_drawdown_duration_ns == 3 * DAY


def test_edge_cases_give_none_not_nonsense() -> None:
    ts = T0 + DAY * np.arange(1, 5, dtype=np.int64)
    up = curve_metrics(ts, [101.0, 102.0, 104.0, 105.0], 100.0)
    assert up.max_drawdown == 0.0 and up.max_drawdown_duration_ns == 0
    assert up.calmar is None and up.sortino is None and up.max_drawdown_start_ns is None
    assert up.exposure is None and up.turnover is None
    flat = curve_metrics(ts, [100.0] * 4, 100.0)
    assert flat.sharpe is None and flat.psr is None and flat.volatility == 0.0
    assert flat.cagr == 0.0
    # A span under one day has no CAGR (nor Calmar).
    mins = T0 + MINUTE * np.arange(1, 6, dtype=np.int64)
    short = curve_metrics(mins, EQ5, 100.0)
    assert short.cagr is None and short.calmar is None
    assert short.n_periods_per_year == pytest.approx(365 * 1440)


@pytest.mark.parametrize(
    ("ts", "eq", "initial", "match"),
    [
        ([1, 2, 2], [1.0, 1.0, 1.0], 1.0, "strictly increasing"),
        ([1, 2], [1.0, float("nan")], 1.0, "NaN"),
        ([1, 2], [1.0, -1.0], 1.0, "> 0"),
        ([1, 2], [1.0, 1.0, 1.0], 1.0, "shape"),
        ([1, 2], [1.0, 1.0], 0.0, "initial"),
        ([1.0, 2.0], [1.0, 1.0], 1.0, "integer"),
        ([1], [1.0], 1.0, "at least 2"),
    ],
)
def test_bad_input_raises(ts: list[float], eq: list[float], initial: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        curve_metrics(np.asarray(ts), eq, initial)


def test_bad_exposure_and_notional_raise() -> None:
    with pytest.raises(ValueError, match="gross_exposure"):
        curve_metrics(TS5, EQ5, 100.0, gross_exposure=[1.0, -1.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="gross_exposure"):
        curve_metrics(TS5, EQ5, 100.0, gross_exposure=[1.0])
    with pytest.raises(ValueError, match="traded_notional"):
        curve_metrics(TS5, EQ5, 100.0, traded_notional=-1.0)


def loop_drawdown(
    ts: list[int], eq: list[float], initial: float
) -> tuple[float, int, int | None, int | None, int | None]:
    """Plain walk over the curve: (max dd, longest spell, start, trough, end)."""
    step = sorted(b - a for a, b in itertools.pairwise(ts))
    mid = len(step) // 2
    med = step[mid] if len(step) % 2 else (step[mid - 1] + step[mid]) // 2
    times, vals = [ts[0] - med, *ts], [initial, *eq]
    peak, peak_t, under, longest = vals[0], times[0], False, 0
    worst, start, trough, trough_peak = 0.0, None, None, 0.0
    for t, v in zip(times, vals, strict=True):
        if v >= peak:
            if under:
                longest = max(longest, t - peak_t)
            peak, peak_t, under = v, t, False
            continue
        under = True
        dd = v / peak - 1.0
        if dd < worst:
            worst, start, trough, trough_peak = dd, peak_t, t, peak
    if under:
        longest = max(longest, times[-1] - peak_t)
    end = None
    if trough is not None:
        end = next((t for t, v in zip(times, vals, strict=True) if t > trough and v >= trough_peak),
                   None)  # fmt: skip
    return -worst, longest, start, trough, end


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(50.0, 150.0), min_size=2, max_size=60),
    st.lists(st.integers(1, 5), min_size=60, max_size=60),
)
def test_drawdown_matches_a_loop(eq: list[float], gaps: list[int]) -> None:
    ts = (T0 + MINUTE * np.cumsum(gaps[: len(eq)])).astype(np.int64)
    info = drawdown_info(ts, eq, 100.0)
    want = loop_drawdown(ts.tolist(), eq, 100.0)
    assert info.max_drawdown == pytest.approx(want[0], rel=1e-12, abs=0.0)
    assert (info.duration_ns, info.start_ns, info.trough_ns, info.end_ns) == want[1:]


def test_real_btc_curve_against_loop_and_summarize() -> None:
    ts, close = btc_closes()
    eq = 10_000.0 * close / close[0]
    m = curve_metrics(ts, eq, 10_000.0)
    want = loop_drawdown(ts.tolist(), eq.tolist(), 10_000.0)
    assert m.max_drawdown == pytest.approx(want[0], rel=1e-12)
    assert m.max_drawdown_duration_ns == want[1]
    assert (m.max_drawdown_start_ns, m.max_drawdown_trough_ns, m.max_drawdown_end_ns) == want[2:]
    old = summarize(ts, eq, [], 10_000.0)  # the small Summary: an independent implementation
    assert m.max_drawdown == pytest.approx(old.max_drawdown, rel=1e-12)
    assert m.sharpe == pytest.approx(old.sharpe, rel=1e-12)
    r = [b / a - 1.0 for a, b in zip([10_000.0, *eq.tolist()], eq.tolist(), strict=False)]
    mean = math.fsum(r) / len(r)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in r) / (len(r) - 1))
    assert m.volatility == pytest.approx(sd * math.sqrt(365 * 1440), rel=1e-9)
    neg = math.sqrt(math.fsum(min(x, 0.0) ** 2 for x in r) / len(r))
    assert m.sortino == pytest.approx(mean / neg * math.sqrt(365 * 1440), rel=1e-9)
    years = (ts[-1] - ts[0] + MINUTE) / (365 * DAY)
    assert m.cagr == pytest.approx((eq[-1] / 10_000.0) ** (1 / years) - 1, rel=1e-9)


def loop_rolling(r: list[float], w: int, ppy: float) -> list[float]:
    """Two-pass exact sums (math.fsum) per window."""
    out = [math.nan] * len(r)
    for i in range(w - 1, len(r)):
        win = r[i - w + 1 : i + 1]
        mean = math.fsum(win) / w
        var = math.fsum((x - mean) ** 2 for x in win) / (w - 1)
        out[i] = math.nan if max(win) == min(win) else mean / math.sqrt(var) * math.sqrt(ppy)
    return out


def test_rolling_sharpe_real_bars_matches_loop() -> None:
    ts, close = btc_closes()
    ts, eq = ts[:8000], close[:8000]
    for w in (2, 7, 60, 1440):
        got = rolling_sharpe(ts, eq, float(close[0]), w)
        want = loop_rolling(returns(eq, float(close[0])).tolist(), w, 365 * 1440)
        assert np.isnan(got[: w - 1]).all()
        np.testing.assert_allclose(got, want, rtol=1e-7, equal_nan=True)


def test_rolling_sharpe_is_stable_where_cumsums_cancel() -> None:
    # +1% per bar with 1e-9 noise (mean/std ~ 1e7), then a flat stretch (all returns exactly 0),
    # then a regime with the opposite sign: naive cumulative sums give garbage in all three.
    rng = np.random.default_rng(7)
    trend = 0.01 + 1e-9 * rng.standard_normal(20_000)
    r = np.concatenate([trend, np.zeros(500), -0.005 + 1e-3 * rng.standard_normal(5_000)])
    eq = 100.0 * np.cumprod(1.0 + r)
    ts = T0 + MINUTE * np.arange(1, len(r) + 1, dtype=np.int64)
    w = 100
    got = rolling_sharpe(ts, eq, 100.0, w)
    want = loop_rolling(returns(eq, 100.0).tolist(), w, 365 * 1440)
    np.testing.assert_allclose(got, want, rtol=1e-7, equal_nan=True)
    flat = slice(20_000 + w, 20_500)  # windows inside the zero stretch
    assert np.isnan(got[flat]).all()
    assert np.isfinite(got[20_000 - 1]) and np.isfinite(got[-1])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.5, 2.0), min_size=3, max_size=40))
def test_rolling_sharpe_over_the_whole_curve_is_the_sharpe(eq: list[float]) -> None:
    ts = T0 + DAY * np.arange(1, len(eq) + 1, dtype=np.int64)
    m = curve_metrics(ts, eq, 1.0)
    last = rolling_sharpe(ts, eq, 1.0, len(eq))[-1]
    if m.sharpe is None or len(set(returns(eq, 1.0).tolist())) == 1:
        assert np.isnan(last)
    else:
        assert last == pytest.approx(m.sharpe, rel=1e-7, abs=1e-7)


def test_rolling_sharpe_bad_window_and_short_curve() -> None:
    with pytest.raises(ValueError, match="window"):
        rolling_sharpe(TS5, EQ5, 100.0, 1)
    assert np.isnan(rolling_sharpe(TS5, EQ5, 100.0, 6)).all()
