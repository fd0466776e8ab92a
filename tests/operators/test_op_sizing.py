"""The three sizers (operators/sizing.py) with hand-worked numbers, their config mapping
(dataflows/trader.py:sizer) and the vol-target forecast on real bars against numpy. How the
account step turns a notional into an order is tested in test_op_account_trader.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataflows.trader import sizer
from operators.risk.monitor import RiskMonitor
from operators.sizing import FixedNotional, FractionOfEquity, VolTarget
from tests.dataflows.flowkit import sma_config
from tests.operators.opdata import real_bars

# --- fraction of equity ---------------------------------------------------------------------------


def test_fraction_of_equity_is_fraction_times_equity_whatever_the_price_and_vol() -> None:
    assert FractionOfEquity(0.25).notional(1_000.0, 10.0, None) == 250.0
    assert FractionOfEquity(0.25).notional(1_000.0, 40_000.0, 0.5) == 250.0
    assert FractionOfEquity(1.0).notional(12_345.5, 42_000.0, None) == 12_345.5  # all-in
    # above 1 on a margin account (the config caps it at portfolio.max_leverage)
    assert FractionOfEquity(3.0).notional(10_000.0, 1.0, None) == 30_000.0
    assert FractionOfEquity(0.08).notional(0.0, 1.0, None) == 0.0  # nothing to size against


@pytest.mark.parametrize("fraction", [0.0, -0.1, math.nan])
def test_fraction_must_be_positive(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction must be > 0"):
        FractionOfEquity(fraction)


# --- fixed notional -------------------------------------------------------------------------------


def test_fixed_notional_ignores_equity_price_and_vol() -> None:
    s = FixedNotional(10_000.0)
    assert s.notional(1_000_000.0, 40_000.0, None) == 10_000.0
    assert s.notional(5_000.0, 2.0, 0.3) == 10_000.0  # more than equity: the checks decide


@pytest.mark.parametrize("amount", [0.0, -1.0, math.nan])
def test_fixed_notional_must_be_positive(amount: float) -> None:
    with pytest.raises(ValueError, match="notional must be > 0"):
        FixedNotional(amount)


# --- vol target -----------------------------------------------------------------------------------


def test_vol_target_by_hand() -> None:
    # 10_000 bars a year: sqrt = 100, so a one-bar vol of 0.004 forecasts 40% a year
    s = VolTarget(target_vol=0.2, max_fraction=1.0, bars_per_year=10_000.0)
    assert s.notional(1_000_000.0, 40_000.0, 0.004) == pytest.approx(500_000.0, rel=1e-15)
    # 10% forecast: 2x equity wanted, capped at max_fraction
    assert s.notional(1_000_000.0, 40_000.0, 0.001) == 1_000_000.0
    capped = VolTarget(0.2, 0.3, 10_000.0)
    assert capped.notional(1_000_000.0, 1.0, 0.001) == pytest.approx(300_000.0, rel=1e-15)
    # 1m bars (525_600 a year): 0.2 / (0.0005 * sqrt(525_600)) = 0.551733...
    one_min = VolTarget(0.2, 1.0, 525_600.0)
    assert one_min.notional(100_000.0, 1.0, 0.0005) == pytest.approx(
        100_000.0 * 0.2 / (0.0005 * 724.98275841567), rel=1e-12
    )


@pytest.mark.parametrize("vol", [None, 0.0, -0.01, math.nan, math.inf])
def test_vol_target_gives_nothing_without_a_usable_forecast(vol: float | None) -> None:
    assert VolTarget(0.2, 1.0, 525_600.0).notional(1_000_000.0, 40_000.0, vol) == 0.0


@pytest.mark.parametrize(
    ("target", "cap", "bars"), [(0.0, 1.0, 1.0), (0.2, 0.0, 1.0), (0.2, 1.0, 0.0), (-1, 1, 1)]
)
def test_vol_target_parameters_must_be_positive(target: float, cap: float, bars: float) -> None:
    with pytest.raises(ValueError, match="vol targeting needs"):
        VolTarget(target, cap, bars)


def test_vol_target_forecast_on_real_bars_equals_numpy() -> None:
    """The forecast the account step passes (RiskMonitor.vol over sizing.vol_window bars) is the
    sample std of one-bar log returns of the last closes; the notional follows by hand."""
    bars = real_bars("BTCUSDT")[:500]
    mon = RiskMonitor(1e6, vol_window=60, normal_window=1_000, forecast_window=30)
    for i, b in enumerate(bars):
        mon.on_bar(b.symbol, b.close, b.ts_close)
        if i < 30:  # 30 returns need 31 closes
            assert mon.vol("BTCUSDT") is None
    closes = np.array([b.close for b in bars])
    want = float(np.std(np.diff(np.log(closes))[-30:], ddof=1))
    vol = mon.vol("BTCUSDT")
    assert vol == pytest.approx(want, rel=1e-9)
    s = VolTarget(0.2, 1.0, 525_600.0)
    assert s.notional(1e6, closes[-1], vol) == pytest.approx(
        min(0.2 / (want * math.sqrt(525_600.0)), 1.0) * 1e6, rel=1e-9
    )


# --- from the config ------------------------------------------------------------------------------


def test_sizer_from_config() -> None:
    assert sizer(sma_config(sizing={"fraction": 0.5})) == FractionOfEquity(0.5)
    cfg = sma_config(sizing={"mode": "fixed_notional", "notional": 2_500.0})
    assert sizer(cfg) == FixedNotional(2_500.0)
    cfg = sma_config(sizing={"mode": "vol_target", "target_vol": 0.3, "max_fraction": 0.5})
    assert sizer(cfg) == VolTarget(0.3, 0.5, 525_600.0)  # 1m bars: 365 * 1440 a year
    cfg = sma_config(
        sizing={"mode": "vol_target"}, bars={**sma_config().bars.model_dump(), "interval_s": 300}
    )
    assert sizer(cfg) == VolTarget(0.2, 1.0, 105_120.0)  # 5m bars
