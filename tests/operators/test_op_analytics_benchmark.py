"""Buy-and-hold against hand-worked numbers and, on the real January 2024 bars, a plain loop."""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl
import pytest

from operators.analytics.benchmark import buy_and_hold
from tests.paths import BARS_2024_01

MINUTE = 60 * 10**9


@cache
def real_closes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    df = pl.read_parquet(BARS_2024_01).with_columns(pl.col("open_time").dt.epoch("ns").alias("ts"))
    out = {}
    for sym in ("BTCUSDT", "ETHUSDT"):
        d = df.filter(pl.col("symbol") == sym).sort("ts")
        out[sym] = (d["ts"].to_numpy() + MINUTE, d["close"].to_numpy())
    return out


def test_hand_worked_two_symbols_with_fees() -> None:
    closes = {
        "A": (np.array([1, 2, 3]), np.array([10.0, 11.0, 12.0])),
        "B": (np.array([2, 3, 4]), np.array([100.0, 90.0, 80.0])),
    }
    ts, eq = buy_and_hold(closes, 1000.0, fee_rate=0.001)
    a = 500 / 1.001  # each sleeve 500 buys notional 500 / 1.001 and pays the rest as fee
    assert ts.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(
        eq, [a + 500, a * 1.1 + a, a * 1.2 + a * 0.9, a * 1.2 + a * 0.8], rtol=1e-12
    )
    # On a strategy's grid: all cash before any bar, forward-filled after the last.
    ts, eq = buy_and_hold(closes, 1000.0, fee_rate=0.001, at=np.array([0, 2, 5]))
    assert ts.tolist() == [0, 2, 5]
    np.testing.assert_allclose(eq, [1000.0, a * 1.1 + a, a * 1.2 + a * 0.8], rtol=1e-12)
    _, eq = buy_and_hold({"A": closes["A"]}, 10.0)  # one symbol, no fee: scaled closes
    np.testing.assert_allclose(eq, [10.0, 11.0, 12.0], rtol=1e-12)


def loop_buy_and_hold(
    closes: dict[str, tuple[np.ndarray, np.ndarray]], initial: float, fee: float
) -> tuple[list[int], list[float]]:
    """Event walk over the merged bars, one symbol price at a time."""
    events = sorted(
        (int(t), s, float(p)) for s, (ts, px) in closes.items() for t, p in zip(ts, px, strict=True)
    )
    sleeve = initial / len(closes)
    qty: dict[str, float] = {}
    last: dict[str, float] = {}
    times: list[int] = []
    values: list[float] = []
    for i, (t, s, p) in enumerate(events):
        if s not in qty:
            qty[s] = sleeve * (1 - fee / (1 + fee)) / p
        last[s] = p
        if i + 1 < len(events) and events[i + 1][0] == t:
            continue  # value once per timestamp, after all its bars
        value = sum(qty[k] * last[k] if k in qty else sleeve for k in sorted(closes))
        times.append(t)
        values.append(value)
    return times, values


def test_real_january_bars_against_loop() -> None:
    closes = real_closes()
    # Start ETH a day late so the cash-until-first-bar path is exercised on real data.
    eth_t, eth_p = closes["ETHUSDT"]
    closes = {"BTCUSDT": closes["BTCUSDT"], "ETHUSDT": (eth_t[1440:], eth_p[1440:])}
    ts, eq = buy_and_hold(closes, 10_000.0, fee_rate=0.001)
    want_t, want_v = loop_buy_and_hold(closes, 10_000.0, 0.001)
    assert ts.tolist() == want_t and len(ts) == 44_640
    np.testing.assert_allclose(eq, want_v, rtol=1e-12)
    # Closed form for the end: each sleeve's notional grows by last / first close.
    btc_p = closes["BTCUSDT"][1]
    final = 5000 / 1.001 * (btc_p[-1] / btc_p[0] + eth_p[-1] / eth_p[1440])
    assert eq[-1] == pytest.approx(final, rel=1e-12)
    assert eq[0] == pytest.approx(5000 / 1.001 + 5000, rel=1e-12)
    # Mapping order does not change a bit of the answer.
    _, eq2 = buy_and_hold(dict(reversed(list(closes.items()))), 10_000.0, fee_rate=0.001)
    assert np.array_equal(eq, eq2)


def test_aligns_with_a_coarser_strategy_grid() -> None:
    closes = real_closes()
    grid = closes["BTCUSDT"][0][59::60] + 30 * 10**9  # hourly, between bar closes
    ts, eq = buy_and_hold(closes, 1000.0, at=grid)
    assert np.array_equal(ts, grid)
    full_t, full = buy_and_hold(closes, 1000.0)
    np.testing.assert_allclose(eq, full[np.searchsorted(full_t, grid, side="right") - 1])


@pytest.mark.parametrize(
    ("closes", "kwargs", "match"),
    [
        ({}, {}, "empty"),
        ({"A": ([1, 2], [1.0, 0.0])}, {}, "> 0"),
        ({"A": ([1, 2], [1.0, float("nan")])}, {}, "finite"),
        ({"A": ([2, 1], [1.0, 1.0])}, {}, "strictly increasing"),
        ({"A": ([1, 2], [1.0])}, {}, "closes"),
        ({"A": ([], [])}, {}, "need >= 1"),
        ({"A": ([1], [1.0])}, {"fee_rate": -0.1}, "fee_rate"),
        ({"A": ([1], [1.0])}, {"at": [3, 2]}, "at must be strictly increasing"),
    ],
)
def test_bad_input_raises(closes: dict, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        buy_and_hold(closes, 100.0, **kwargs)
