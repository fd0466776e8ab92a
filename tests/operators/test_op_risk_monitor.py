"""RiskMonitor (operators/risk/monitor.py): rolling volatilities against numpy on real bars, the
UTC day (start-of-day equity, trades today), losing round trips, peak equity, rolling Sharpe, and
`risk_context` as the rules see the account."""

from __future__ import annotations

import math
import pickle
import random
import statistics
from typing import Any

import numpy as np
import pytest

from operators.account import Account
from operators.risk.context import MarketView, SymbolSpec
from operators.risk.monitor import NS_PER_YEAR, RiskMonitor, RollingStd, risk_context
from operators.risk.state import TradingState
from schemas.messages import NS_PER_DAY, NS_PER_MINUTE, Fill
from tests.operators.opdata import real_bars

M = NS_PER_MINUTE
DAY0 = 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC

# --- RollingStd -----------------------------------------------------------------------------------


def test_rolling_std_equals_the_sample_std_of_the_last_window() -> None:
    rng = random.Random(7)
    xs = [rng.gauss(0.0, 1.0) for _ in range(500)]
    r = RollingStd(20)
    for i, x in enumerate(xs):
        r.push(x)
        if i < 19:
            assert r.std() is None and not r.full
        else:
            assert r.full
            got = r.std()
            assert got == pytest.approx(statistics.stdev(xs[i - 19 : i + 1]), rel=1e-10)
            assert r.mean() == pytest.approx(statistics.fmean(xs[i - 19 : i + 1]), abs=1e-12)
    assert RollingStd(5).mean() != RollingStd(5).mean()  # empty: NaN


def test_rolling_std_does_not_drift_after_large_values_leave_and_is_zero_when_flat() -> None:
    """Subtracting large values from running sums leaves residue; the periodic re-sum clears
    it, so after a burst of returns of 1e4 the std of 1e-3 returns is exact again."""
    rng = random.Random(3)
    xs = [rng.gauss(0.0, 1e4) for _ in range(100)] + [rng.gauss(0.0, 1e-3) for _ in range(1_000)]
    r = RollingStd(100)
    for x in xs:
        r.push(x)
    assert r.std() == pytest.approx(statistics.stdev(xs[-100:]), rel=1e-12)
    flat = RollingStd(3)
    for _ in range(5):
        flat.push(0.1)
    assert flat.std() == 0.0  # a rounding-negative variance is clamped, never NaN


# --- market views ---------------------------------------------------------------------------------


def test_volatility_windows_on_real_bars_equal_numpy() -> None:
    bars = real_bars("ETHUSDT")[:1_200]
    mon = RiskMonitor(1e6, vol_window=60, normal_window=1_000)
    for i, b in enumerate(bars):
        mon.on_bar(b.symbol, b.close, b.ts_close)
        st = mon.symbols["ETHUSDT"]
        assert st.recent.full == (i >= 60) and st.normal.full == (i >= 1_000)
    r = np.diff(np.log([b.close for b in bars]))
    st = mon.symbols["ETHUSDT"]
    assert st.recent.std() == pytest.approx(float(np.std(r[-60:], ddof=1)), rel=1e-9)
    assert st.normal.std() == pytest.approx(float(np.std(r[-1_000:], ddof=1)), rel=1e-9)
    assert st.last_price == bars[-1].close and st.last_bar_ts == bars[-1].ts_close
    assert mon.vol("ETHUSDT") is None  # no forecast window asked for: no sizing forecast
    assert mon.vol("BTCUSDT") is None  # never seen


def test_forecast_window_and_tracking_switches() -> None:
    bars = real_bars("BTCUSDT")[:200]
    r = np.diff(np.log([b.close for b in bars]))
    own = RiskMonitor(1e6, vol_window=60, normal_window=100, forecast_window=30)
    same = RiskMonitor(1e6, vol_window=60, normal_window=100, forecast_window=60, track_vol=False)
    off = RiskMonitor(1e6, vol_window=60, normal_window=100, track_vol=False)
    for b in bars:
        for mon in (own, same, off):
            mon.on_bar(b.symbol, b.close, b.ts_close)
    assert own.vol("BTCUSDT") == pytest.approx(float(np.std(r[-30:], ddof=1)), rel=1e-9)
    # the forecast shares the recent window when the lengths agree; the normal one is not kept
    assert same.vol("BTCUSDT") == pytest.approx(float(np.std(r[-60:], ddof=1)), rel=1e-9)
    assert same.symbols["BTCUSDT"].forecast is None
    assert len(same.symbols["BTCUSDT"].normal.values) == 0
    # nothing reads volatility: none is measured, but price and bar time are
    st = off.symbols["BTCUSDT"]
    assert len(st.recent.values) == len(st.normal.values) == 0 and off.vol("BTCUSDT") is None
    assert st.last_price == bars[-1].close and st.last_bar_ts == bars[-1].ts_close


@pytest.mark.parametrize(
    "kw",
    [
        {"vol_window": 1},
        {"vol_window": 60, "normal_window": 60},
        {"sharpe_window": 1},
        {"forecast_window": 1},
    ],
)
def test_monitor_windows_are_checked(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="window"):
        RiskMonitor(1e6, **kw)


# --- the day --------------------------------------------------------------------------------------


def test_the_day_ends_with_the_bar_closing_at_midnight() -> None:
    """sod equity of a day is the equity at its 00:00 close (the last point of the day before);
    trades today reset with the first step of the new day, the bar opening at 00:00."""
    mon = RiskMonitor(1_000.0)
    day1 = DAY0 + NS_PER_DAY
    mon.on_equity(day1 - M, 990.0)  # 23:59 close
    mon.on_trade()
    mon.on_trade()
    assert (mon.sod_equity, mon.trades_today) == (1_000.0, 2)
    mon.on_equity(day1, 980.0)  # 00:00 close: still the old day
    mon.on_trade()
    assert (mon.sod_equity, mon.trades_today, mon.day) == (1_000.0, 3, day1 // NS_PER_DAY - 1)
    mon.on_equity(day1 + M, 985.0)  # 00:01 close: the bar that opened at 00:00
    assert (mon.sod_equity, mon.trades_today, mon.day) == (980.0, 0, day1 // NS_PER_DAY)
    mon.on_trade()
    mon.on_equity(day1 + 3 * NS_PER_DAY, 1_100.0)  # days without bars: the last equity opens
    assert (mon.sod_equity, mon.trades_today) == (985.0, 0)
    assert mon.peak_equity == 1_100.0 and mon.equity == 1_100.0


def test_peak_equity_only_rises() -> None:
    mon = RiskMonitor(100.0)
    for i, e in enumerate([99.0, 101.0, 100.5, 103.0, 90.0]):
        mon.on_equity(DAY0 + (i + 1) * M, e)
    assert mon.peak_equity == 103.0 and mon.equity == 90.0
    assert RiskMonitor(100.0).peak_equity == 100.0  # the initial equity is the first peak


def test_losing_round_trips_count_net_of_every_fee() -> None:
    mon = RiskMonitor(1e6)
    mon.on_fill("BTCUSDT", 0.0, 1.0, False, 1)  # entry: fee only, trip open
    mon.on_fill("BTCUSDT", 0.5, 0.6, True, 2)  # +0.5 - 1.6 fees: a loss
    assert (mon.consecutive_losses, mon.last_loss_ts) == (1, 2)
    mon.on_fill("ETHUSDT", 0.0, 0.1, False, 3)
    mon.on_fill("BTCUSDT", 0.0, 0.1, False, 4)  # both open: trips are per symbol
    mon.on_fill("ETHUSDT", -2.0, 0.1, True, 5)
    assert (mon.consecutive_losses, mon.last_loss_ts) == (2, 5)
    mon.on_fill("BTCUSDT", 5.0, 0.1, False, 6)  # a partial close: the trip is still open
    assert mon.consecutive_losses == 2
    mon.on_fill("BTCUSDT", -4.8, 0.1, True, 7)  # -0.1 + (5 - 0.1) + (-4.8 - 0.1) = -0.1
    assert (mon.consecutive_losses, mon.last_loss_ts) == (3, 7)
    mon.on_fill("ETHUSDT", 0.0, 0.0, False, 8)
    mon.on_fill("ETHUSDT", 0.0, 0.0, True, 9)  # a scratch trade (0 net) is not a loss
    assert (mon.consecutive_losses, mon.last_loss_ts) == (0, 7)
    assert mon.symbols["BTCUSDT"].trip_pnl == 0.0 == mon.symbols["ETHUSDT"].trip_pnl


# --- rolling Sharpe -------------------------------------------------------------------------------


def test_rolling_sharpe_equals_numpy_on_an_equity_path() -> None:
    rng = random.Random(11)
    eq = [1_000.0]
    for _ in range(300):
        eq.append(eq[-1] * (1.0 + rng.gauss(0.0002, 0.001)))
    mon = RiskMonitor(1_000.0, sharpe_window=100, bar_interval_ns=5 * M)
    for i, e in enumerate(eq[1:]):
        mon.on_equity(DAY0 + (i + 1) * 5 * M, e)
        if i < 99:
            assert mon.sharpe() is None
    rets = np.array(eq[1:]) / np.array(eq[:-1]) - 1.0
    want = rets[-100:].mean() / rets[-100:].std(ddof=1) * math.sqrt(NS_PER_YEAR / (5 * M))
    got = mon.sharpe()
    assert got is not None and got == pytest.approx(float(want), rel=1e-8)


def test_sharpe_is_none_for_a_flat_account_or_when_not_tracked() -> None:
    flat = RiskMonitor(1_000.0, sharpe_window=5)
    off = RiskMonitor(1_000.0, sharpe_window=5, track_sharpe=False)
    for i in range(20):
        flat.on_equity(DAY0 + i * M, 1_000.0)
        off.on_equity(DAY0 + i * M, 1_000.0 + i)
    assert flat.sharpe() is None  # no variation: no Sharpe, not a bad one
    assert off.sharpe() is None and len(off.returns.values) == 0
    assert off.peak_equity == 1_019.0  # the rest of the day still follows the equity


# --- risk_context ---------------------------------------------------------------------------------


def _fill(side: str, qty: float, price: float, sym: str = "BTCUSDT", fee: float = 0.0) -> Fill:
    return Fill("f", "o", sym, 1, 1, side, price, qty, fee)  # type: ignore[arg-type]


def test_risk_context_is_the_account_the_monitor_and_the_state() -> None:
    acct = Account("a", 10_000.0, kind="margin", max_leverage=3.0, maintenance_rate=0.01)
    acct.apply_fill(_fill("buy", 0.1, 40_000.0, fee=4.0))
    acct.apply_fill(_fill("sell", 2.0, 2_000.0, "ETHUSDT"))
    acct.mark("BTCUSDT", 41_000.0, 5)
    acct.mark("SOLUSDT", 100.0, 5)  # marked, never traded: not a position
    mon = RiskMonitor(10_000.0, vol_window=2, normal_window=3)
    for i, px in enumerate([40_000.0, 40_400.0, 40_800.0, 41_000.0]):
        mon.on_bar("BTCUSDT", px, DAY0 + (i + 1) * M)
    mon.on_equity(DAY0 + 4 * M, acct.equity)
    mon.on_trade()
    mon.on_fill("ETHUSDT", -1.0, 0.0, True, DAY0 + 2 * M)
    state = TradingState()
    state.halt(DAY0, "test")
    spec = SymbolSpec(0.5, 0.001, 7.0)
    ctx = risk_context(acct, mon, state, spec, DAY0 + 4 * M, "BTCUSDT", "sell", 0.05, 41_000.0)
    assert ctx.positions == {"BTCUSDT": 0.1, "ETHUSDT": -2.0}
    assert ctx.marks == {"BTCUSDT": 41_000.0, "ETHUSDT": 2_000.0, "SOLUSDT": 100.0}
    assert ctx.gross_exposure == pytest.approx(0.1 * 41_000 + 2 * 2_000)
    assert ctx.net_exposure == pytest.approx(0.1 * 41_000 - 2 * 2_000)
    assert ctx.open_positions == 2
    assert ctx.equity == pytest.approx(10_000.0 - 4.0 + 0.1 * 1_000) == acct.equity
    assert (ctx.cash, ctx.sod_equity, ctx.peak_equity) == (acct.cash, 10_000.0, acct.equity)
    assert (ctx.trades_today, ctx.consecutive_losses, ctx.last_loss_ts) == (1, 1, DAY0 + 2 * M)
    assert ctx.sharpe is None and ctx.reduce_only  # halted
    assert (ctx.tick_size, ctx.lot_size, ctx.min_notional) == (0.5, 0.001, 7.0)
    assert (ctx.notional, ctx.limit_price) == (0.05 * 41_000.0, None)
    r = np.diff(np.log([40_000.0, 40_400.0, 40_800.0, 41_000.0]))
    view = ctx.market["BTCUSDT"]
    assert isinstance(view, MarketView) and view.last_price == 41_000.0
    assert view.realized_vol == pytest.approx(float(np.std(r[-2:], ddof=1)), rel=1e-9)
    assert view.normal_vol == pytest.approx(float(np.std(r, ddof=1)), rel=1e-9)
    assert view.last_bar_ts == DAY0 + 4 * M
    assert ctx.reduces_risk  # a sell of half the long
    limit = risk_context(acct, mon, TradingState(), spec, 0, "ETHUSDT", "buy", 1.0, 1.0, 9.0, 2.0)
    assert (limit.notional, limit.limit_price, limit.reduce_only) == (9.0, 2.0, False)


def test_monitor_pickles_mid_stream() -> None:
    bars = real_bars("BTCUSDT")[:400]
    a = RiskMonitor(1e6, vol_window=20, normal_window=100, sharpe_window=50, forecast_window=10)
    b = RiskMonitor(1e6, vol_window=20, normal_window=100, sharpe_window=50, forecast_window=10)
    for i, bar in enumerate(bars):
        for mon in (a, b):
            mon.on_bar(bar.symbol, bar.close, bar.ts_close)
            mon.on_equity(bar.ts_close, 1e6 * bar.close / bars[0].close)
        if i == 150:
            b = pickle.loads(pickle.dumps(b))
    assert (a.vol("BTCUSDT"), a.sharpe(), a.peak_equity) == (
        b.vol("BTCUSDT"),
        b.sharpe(),
        b.peak_equity,
    )
    assert a.symbols["BTCUSDT"].normal.std() == b.symbols["BTCUSDT"].normal.std()
