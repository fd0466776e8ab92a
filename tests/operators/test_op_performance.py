"""summarize / combine_equity / round_trips on small hand-made cases, answers worked out here."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from operators.performance import combine_equity, round_trips, summarize
from schemas.messages import NS_PER_MINUTE, EquityPoint, Fill

HOUR = 60 * NS_PER_MINUTE
MINUTES_PER_YEAR = 365 * 24 * 60


def _fill(sym: str, side: str, price: float, qty: float, fee: float, ts: int) -> Fill:
    return Fill(
        fill_id=f"{sym}-{ts}",
        order_id=f"{sym}-{ts}",
        symbol=sym,
        ts_event=ts,
        ts_init=ts,
        side=side,  # type: ignore[arg-type]
        price=price,
        qty=qty,
        fee=fee,
    )


def _ep(account: str, ts: int, equity: float) -> EquityPoint:
    return EquityPoint(
        account=account, ts_event=ts, ts_init=ts, cash=equity, position_value=0.0, equity=equity
    )


def _curve(values: list[float], step: int = NS_PER_MINUTE) -> tuple[np.ndarray, np.ndarray]:
    ts = np.arange(1, len(values) + 1, dtype=np.int64) * step
    return ts, np.array(values, dtype=np.float64)


def test_drawdown_total_return_and_sharpe_by_hand() -> None:
    ts, eq = _curve([110.0, 99.0, 121.0, 120.0])
    s = summarize(ts, eq, [], 100.0)
    # running peaks 100, 110, 110, 121, 121: the worst fall is 110 -> 99 = 10 %
    assert s.max_drawdown == pytest.approx(0.10, rel=1e-12)
    assert s.total_return == pytest.approx(0.20, rel=1e-12)
    assert (s.initial_equity, s.final_equity, s.n_bars) == (100.0, 120.0, 4)
    rets = [110 / 100 - 1, 99 / 110 - 1, 121 / 99 - 1, 120 / 121 - 1]
    expected = statistics.mean(rets) / statistics.stdev(rets) * math.sqrt(MINUTES_PER_YEAR)
    assert s.sharpe == pytest.approx(expected, rel=1e-9)
    assert s.sharpe > 0
    assert (s.win_rate, s.profit_factor, s.n_trades, s.n_round_trips, s.fees) == (
        None,
        None,
        0,
        0,
        0.0,
    )
    assert s.to_dict()["max_drawdown"] == s.max_drawdown


def test_drawdown_from_initial_equity() -> None:
    # the first point already below the start: drawdown measured from the initial equity
    ts, eq = _curve([80.0, 90.0, 100.0])
    assert summarize(ts, eq, [], 100.0).max_drawdown == pytest.approx(0.20, rel=1e-12)
    ts, eq = _curve([101.0, 102.0, 103.0])
    assert summarize(ts, eq, [], 100.0).max_drawdown == 0.0


def test_sharpe_sign_and_annualisation_by_bar_spacing() -> None:
    up = [100.0 * 1.001**i * (1 + 0.0005 * (-1) ** i) for i in range(1, 50)]
    down = [100.0 * 0.999**i * (1 + 0.0005 * (-1) ** i) for i in range(1, 50)]
    s_up_min = summarize(*_curve(up), [], 100.0).sharpe
    s_up_hour = summarize(*_curve(up, HOUR), [], 100.0).sharpe
    s_down = summarize(*_curve(down), [], 100.0).sharpe
    assert s_up_min > 0 > s_down
    # same returns, bars 60x further apart: 60x fewer bars a year -> Sharpe / sqrt(60)
    assert s_up_hour == pytest.approx(s_up_min / math.sqrt(60), rel=1e-12)
    # daily spacing: annualised by sqrt(365)
    s_day = summarize(*_curve(up, 24 * HOUR), [], 100.0).sharpe
    rets = np.diff(np.array([100.0, *up])) / np.array([100.0, *up[:-1]])
    by_hand = statistics.mean(rets) / statistics.stdev(rets) * math.sqrt(365)
    assert s_day == pytest.approx(by_hand, rel=1e-9)


def test_sharpe_zero_when_flat_or_too_short() -> None:
    assert summarize(*_curve([100.0, 100.0, 100.0]), [], 100.0).sharpe == 0.0
    assert summarize(*_curve([105.0]), [], 100.0).sharpe == 0.0
    s = summarize(np.array([], dtype=np.int64), np.array([], dtype=np.float64), [], 100.0)
    assert (s.final_equity, s.total_return, s.max_drawdown, s.sharpe, s.n_bars) == (
        100.0,
        0.0,
        0.0,
        0.0,
        0,
    )


def _two_trips() -> list[Fill]:
    return [
        # win: bought 1 @ 100 (fee 0.1), sold @ 110 (fee 0.11): 10 - 0.21 = 9.79
        _fill("BTCUSDT", "buy", 100.0, 1.0, 0.1, 1),
        _fill("BTCUSDT", "sell", 110.0, 1.0, 0.11, 2),
        # loss: bought 2 @ 50 (fee 0.1), sold in two halves @ 45 (fees 0.045 each): -10.19
        _fill("ETHUSDT", "buy", 50.0, 2.0, 0.1, 3),
        _fill("ETHUSDT", "sell", 45.0, 1.0, 0.045, 4),
        _fill("ETHUSDT", "sell", 45.0, 1.0, 0.045, 5),
    ]


def test_round_trips_net_of_fees_and_partial_exits() -> None:
    trips = round_trips(_two_trips())
    assert trips == pytest.approx([9.79, -10.19], rel=1e-12)
    # an open position is not a round trip
    assert round_trips(_two_trips()[:1]) == []
    assert round_trips([]) == []


def test_round_trips_interleaved_symbols_and_input_order() -> None:
    fills = [
        _fill("BTCUSDT", "buy", 100.0, 1.0, 0.0, 1),
        _fill("ETHUSDT", "buy", 10.0, 3.0, 0.0, 2),
        _fill("BTCUSDT", "sell", 90.0, 1.0, 0.0, 3),
        _fill("ETHUSDT", "sell", 12.0, 3.0, 0.0, 4),
    ]
    expected = [-10.0, 6.0]  # closed in time order: BTC at t=3, ETH at t=4
    assert round_trips(fills) == pytest.approx(expected)
    shuffled = fills[:]
    random.Random(1).shuffle(shuffled)
    assert round_trips(shuffled) == pytest.approx(expected)


def test_win_rate_and_profit_factor() -> None:
    ts, eq = _curve([100.0, 99.6])
    fills = _two_trips()
    s = summarize(ts, eq, fills, 100.0)
    assert s.n_trades == 5 and s.n_round_trips == 2
    assert s.win_rate == 0.5
    assert s.profit_factor == pytest.approx(9.79 / 10.19, rel=1e-12)
    assert s.fees == pytest.approx(0.1 + 0.11 + 0.1 + 0.045 + 0.045, rel=1e-12)


def test_profit_factor_none_without_losses() -> None:
    fills = _two_trips()[:2]
    s = summarize(*_curve([109.79]), fills, 100.0)
    assert s.win_rate == 1.0 and s.profit_factor is None and s.n_round_trips == 1
    # all losses: profit factor 0, win rate 0
    s = summarize(*_curve([90.0]), _two_trips()[2:], 100.0)
    assert s.win_rate == 0.0 and s.profit_factor == 0.0


def test_combine_equity_forward_fills_two_accounts() -> None:
    initial = {"BTCUSDT": 100.0, "ETHUSDT": 200.0}
    pts = [
        _ep("BTCUSDT", 1, 110.0),
        _ep("ETHUSDT", 2, 190.0),
        _ep("BTCUSDT", 3, 120.0),
        _ep("ETHUSDT", 3, 210.0),
        _ep("ETHUSDT", 5, 205.0),
    ]
    # t1: 110 + 200 (ETH still at its initial cash); t2: 110 + 190; t3: 120 + 210; t5: 120 + 205
    expected_ts = [1, 2, 3, 5]
    expected_eq = [310.0, 300.0, 330.0, 325.0]
    for order in (pts, pts[::-1], [pts[3], pts[0], pts[4], pts[2], pts[1]]):
        ts, eq = combine_equity(order, initial)
        assert ts.dtype == np.int64 and eq.dtype == np.float64
        assert ts.tolist() == expected_ts
        assert eq.tolist() == pytest.approx(expected_eq, rel=1e-15)


def test_combine_equity_single_account_and_empty() -> None:
    ts, eq = combine_equity([_ep("A", 2, 101.5), _ep("A", 1, 99.0)], {"A": 100.0})
    assert ts.tolist() == [1, 2] and eq.tolist() == [99.0, 101.5]
    ts, eq = combine_equity([], {"A": 100.0, "B": 50.0})
    assert len(ts) == 0 and len(eq) == 0


def test_summarize_on_combined_curve() -> None:
    initial = {"A": 100.0, "B": 100.0}
    pts = [_ep("A", NS_PER_MINUTE, 90.0), _ep("B", 2 * NS_PER_MINUTE, 130.0)]
    ts, eq = combine_equity(pts, initial)
    s = summarize(ts, eq, [], sum(initial.values()))
    # total: 200 -> 190 -> 220
    assert s.total_return == pytest.approx(0.10, rel=1e-12)
    assert s.max_drawdown == pytest.approx(0.05, rel=1e-12)


def test_small_loss_after_fees_counts_as_loss() -> None:
    fills = [
        *_two_trips()[:2],
        # flat price, fees only: -0.2 net, a losing trade
        _fill("ETHUSDT", "buy", 50.0, 2.0, 0.1, 10),
        _fill("ETHUSDT", "sell", 50.0, 2.0, 0.1, 11),
    ]
    s = summarize(*_curve([109.59]), fills, 100.0)
    assert s.n_round_trips == 2 and s.win_rate == 0.5
    assert s.profit_factor == pytest.approx(9.79 / 0.2, rel=1e-9)
