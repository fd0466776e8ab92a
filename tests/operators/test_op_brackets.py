"""Resting exits (operators/risk/brackets.py) and how the account step works them: levels by
hand, tick rounding towards the position, the stop winning a bar that touches both, the trailing
stop amended in place, one-cancels-other with signal closes and halts, gaps."""

from __future__ import annotations

import math
from typing import Any

import pytest

from operators.account_trader import AccountTrader
from operators.risk.brackets import Brackets, ExitOrder, _round_tick, both_touched
from operators.risk.exits import Position
from operators.risk.stop_loss import StopLoss
from operators.risk.take_profit import TakeProfit
from operators.risk.trailing_stop import TrailingStop
from schemas.messages import Fill, Order, OrderExpired, PositionSnapshot
from tests.operators.test_op_account_trader import (
    T0,
    M,
    bar,
    margin_trader,
    of,
    risk_only,
    sig,
)

# --- brackets by hand -----------------------------------------------------------------------------


def test_round_tick_moves_towards_the_position_and_keeps_exact_decimals() -> None:
    assert _round_tick(39_800.995, 0.01, up=True) == 39_801.0
    assert _round_tick(39_800.995, 0.01, up=False) == 39_800.99
    assert _round_tick(40_601.015, 0.01, up=True) == 40_601.02
    assert _round_tick(100.0, 0.01, up=True) == 100.0  # on the grid: unchanged both ways
    assert _round_tick(100.0, 0.01, up=False) == 100.0
    assert _round_tick(0.30000000000000004, 0.1, up=True) == 0.3  # float residue is no tick
    assert _round_tick(2_000.0 * 0.995, 0.5, up=True) == 1_990.0
    assert _round_tick(123.456, 0.0, up=True) == 123.456  # no tick known


def test_long_brackets_take_the_tighter_stop_and_round_up() -> None:
    b = Brackets((StopLoss(0.005), TrailingStop(0.01)), TakeProfit(0.015))
    assert b.active
    pos = Position("BTCUSDT", 2.0, 40_001.0, 40_001.0)
    # stop loss 40_001 x 0.995 = 39_800.995 -> 39_801.00; trailing 40_010 x 0.99 = 39_609.9
    assert b.wanted(pos, 40_010.0, 0.01) == [
        ExitOrder("stop", "sell", 2.0, 39_801.0, "stop_loss"),
        ExitOrder("limit", "sell", 2.0, 40_601.02, "take_profit"),  # 40_601.015 up
    ]
    # far above the entry the trailing stop is the tighter: 40_500 x 0.99 = 40_095
    best = Position("BTCUSDT", 2.0, 40_001.0, 40_500.0)
    assert b.wanted(best, 40_400.0, 0.01)[0] == ExitOrder(
        "stop", "sell", 2.0, 40_095.0, "trailing_stop"
    )


def test_short_brackets_round_down() -> None:
    b = Brackets((StopLoss(0.005),), TakeProfit(0.015))
    pos = Position("ETHUSDT", -3.0, 2_000.01, 2_000.01)
    # stop 2_000.01 x 1.005 = 2_010.01005 -> 2_010.01; take profit 1_970.00985 -> 1_970.00
    assert b.wanted(pos, 2_000.0, 0.01) == [
        ExitOrder("stop", "buy", 3.0, 2_010.01, "stop_loss"),
        ExitOrder("limit", "buy", 3.0, 1_970.0, "take_profit"),
    ]


def test_no_brackets_for_flat_unpriced_or_unconfigured_positions() -> None:
    b = Brackets((StopLoss(0.01),), TakeProfit(0.01))
    assert b.wanted(Position("BTCUSDT", 0.0, 100.0), 100.0, 0.01) == []
    assert b.wanted(Position("BTCUSDT", math.nan, 100.0), 100.0, 0.01) == []
    assert b.wanted(Position("BTCUSDT", 1.0, math.nan), 100.0, 0.01) == []
    assert b.wanted(Position("BTCUSDT", 1.0, 0.0), 100.0, 0.01) == []
    none = Brackets((), None)
    assert not none.active and none.wanted(Position("BTCUSDT", 1.0, 100.0), 100.0, 0.0) == []
    only_tp = Brackets((), TakeProfit(0.02))
    assert only_tp.wanted(Position("BTCUSDT", 1.0, 100.0), 100.0, 0.0) == [
        ExitOrder("limit", "sell", 1.0, 102.0, "take_profit")
    ]


def test_both_touched() -> None:
    b = bar("BTCUSDT", 0, 100.0, o=100.0, h=103.0, lo=97.0)
    assert both_touched(b, True, 97.0, 103.0)  # inclusive
    assert not both_touched(b, True, 96.99, 103.0)
    assert not both_touched(b, True, 97.0, 103.01)
    assert both_touched(b, False, 103.0, 97.0)
    assert not both_touched(b, False, 103.5, 97.0)


# --- in the account step --------------------------------------------------------------------------


def _long(
    risk: dict[str, Any], entry: float = 40_001.0, **over: Any
) -> tuple[AccountTrader, list[Any]]:
    """A 2 BTC long (8% of 1M at 40_000) filled at `entry`; returns the trader and the output of
    the fill bar (which places the exits at its close)."""
    tr = margin_trader(risk=risk, **over)
    tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1)])
    out = tr.update([(bar("BTCUSDT", 1, 40_010.0, o=entry), None)])
    assert [(f.qty, f.price) for f in of(out, Fill)] == [(2.0, entry)]
    return tr, out


def test_an_entry_gets_a_stop_and_a_take_profit_at_its_fill_price() -> None:
    tr, out = _long(risk_only("stop_loss", "take_profit"))
    stop, tp = of(out, Order)
    assert (stop.order_type, stop.side, stop.qty, stop.stop_price) == (
        "stop",
        "sell",
        2.0,
        39_801.0,
    )
    assert (tp.order_type, tp.side, tp.qty, tp.limit_price) == ("limit", "sell", 2.0, 40_601.02)
    assert (stop.cause, tp.cause) == ("stop_loss", "take_profit")
    assert stop.ts_event == tp.ts_event == T0 + 2 * M  # at the fill bar's close
    assert stop.time_in_force == tp.time_in_force == "GTC"
    assert [o.order_id for o in tr.sim.open_orders("BTCUSDT")] == [stop.order_id, tp.order_id]
    # a quiet bar changes nothing: no re-emits
    assert tr.update([(bar("BTCUSDT", 2, 40_100.0), None)])[1:] == []


def test_a_bar_touching_both_fills_the_stop_and_cancels_the_take_profit() -> None:
    tr, out = _long(risk_only("stop_loss", "take_profit"))
    stop, tp = of(out, Order)
    # an up bar (path O-L-H-C) that reaches the take profit too: the stop wins
    out = tr.update([(bar("BTCUSDT", 2, 40_700.0, o=40_000.0, h=40_800.0, lo=39_700.0), None)])
    (exp,) = of(out, OrderExpired)
    assert (exp.order_id, exp.reason, exp.ts_event) == (tp.order_id, "canceled", T0 + 2 * M)
    (f,) = of(out, Fill)
    assert (f.order_id, f.side, f.qty, f.price) == (stop.order_id, "sell", 2.0, 39_801.0)
    assert f.fee == pytest.approx(2.0 * 39_801.0 * 0.001)
    assert tr.account.qty("BTCUSDT") == 0.0 and tr.sim.open_orders("BTCUSDT") == []
    assert of(out, Order) == []  # flat: no new exits


def test_the_take_profit_fills_as_maker_at_its_limit_and_cancels_the_stop() -> None:
    tr, out = _long(risk_only("stop_loss", "take_profit"))
    stop, tp = of(out, Order)
    out = tr.update([(bar("BTCUSDT", 2, 40_650.0, o=40_100.0, h=40_700.0, lo=40_050.0), None)])
    (f,) = of(out, Fill)
    assert (f.order_id, f.price, f.liquidity) == (tp.order_id, 40_601.02, "maker")
    assert [(e.order_id, e.reason) for e in of(out, OrderExpired)] == [(stop.order_id, "canceled")]
    assert tr.account.qty("BTCUSDT") == 0.0


def test_the_trailing_stop_moves_up_with_closes_never_down() -> None:
    tr, out = _long(risk_only("trailing_stop"), entry=40_000.0)
    (stop,) = of(out, Order)
    assert stop.stop_price == 39_609.9  # best of entry 40_000 and close 40_010, x 0.99
    levels = []
    for i, close in enumerate([40_123.45, 40_500.0, 40_300.0, 40_200.0, 40_800.0], start=2):
        out = tr.update([(bar("BTCUSDT", i, close), None)])
        levels.append([(o.order_id, o.order_type, o.stop_price, o.qty) for o in of(out, Order)])
    oid = stop.order_id
    assert levels == [
        [(oid, "stop", 39_722.22, 2.0)],  # 40_123.45 x 0.99 = 39_722.2155, up to the tick
        [(oid, "stop", 40_095.0, 2.0)],
        [],  # lower closes: the stop stays
        [],
        [(oid, "stop", 40_392.0, 2.0)],
    ]
    (working,) = tr.sim.open_orders("BTCUSDT")  # amended in place, not replaced
    assert (working.order_id, working.stop_price) == (oid, 40_392.0)
    assert of(out, OrderExpired) == []
    out = tr.update([(bar("BTCUSDT", 7, 40_300.0, o=40_500.0, lo=40_250.0), None)])
    (f,) = of(out, Fill)
    assert (f.order_id, f.price, f.qty) == (oid, 40_392.0, 2.0)  # at the moved level


def test_a_short_gets_its_exits_above_and_below() -> None:
    tr = margin_trader(risk=risk_only("stop_loss", "take_profit"))
    tr.update([sig(bar("BTCUSDT", 0, 40_000.0), -1)])
    out = tr.update([(bar("BTCUSDT", 1, 39_990.0, o=40_001.0), None)])
    assert [(f.side, f.qty) for f in of(out, Fill)] == [("sell", 2.0)]
    stop, tp = of(out, Order)
    # 40_001 x 1.005 = 40_201.005 -> 40_201.00 (down); 40_001 x 0.985 = 39_400.985 -> 39_400.98
    assert (stop.side, stop.stop_price, tp.side, tp.limit_price) == (
        "buy",
        40_201.0,
        "buy",
        39_400.98,
    )


def test_a_signal_exit_cancels_the_resting_exits_no_double_sell() -> None:
    tr, out = _long(risk_only("stop_loss", "take_profit"), strategy={"long_only": True})
    stop, tp = of(out, Order)
    out = tr.update([sig(bar("BTCUSDT", 2, 40_050.0), -1)])
    assert [(e.order_id, e.reason) for e in of(out, OrderExpired)] == [
        (stop.order_id, "canceled"),
        (tp.order_id, "canceled"),
    ]
    (close,) = of(out, Order)
    assert (close.side, close.qty, close.order_type, close.cause) == (
        "sell",
        2.0,
        "market",
        "signal",
    )
    # the next bar falls through the old stop level: only the market close fills
    out = tr.update([(bar("BTCUSDT", 3, 39_500.0, o=40_040.0, h=40_700.0), None)])
    assert [(f.order_id, f.price) for f in of(out, Fill)] == [(close.order_id, 40_040.0)]
    assert tr.account.qty("BTCUSDT") == 0.0


def test_no_exits_are_placed_beside_a_working_market_close() -> None:
    """With 90 s latency an order decided at a close works from the 2nd open after it. While the
    signal close waits, the canceled exits are not placed again (they would sell the long a
    second time); the halt case, where they would fill together, is in test_op_trader_risk.py."""
    tr = margin_trader(
        risk=risk_only("stop_loss", "take_profit"),
        strategy={"long_only": True},
        execution={"latency_ms": 90_000.0},
    )
    tr.update(
        [sig(bar("BTCUSDT", 0, 40_000.0), 1)]
        + [(bar("BTCUSDT", i, 40_000.0), None) for i in (1, 2)]
    )
    out = tr.update([(bar("BTCUSDT", 3, 40_010.0, o=40_001.0), None)])
    assert [f.qty for f in of(out, Fill)] == [2.0] and len(of(out, Order)) == 2
    out = tr.update([sig(bar("BTCUSDT", 4, 40_050.0), 0)])
    assert [e.reason for e in of(out, OrderExpired)] == ["canceled", "canceled"]
    (close,) = of(out, Order)
    for i in (5, 6):  # the close is not active yet: nothing new
        assert tr.update([(bar("BTCUSDT", i, 40_060.0), None)])[1:] == []
    out = tr.update([(bar("BTCUSDT", 7, 39_000.0, o=40_000.0, lo=38_900.0), None)])
    assert [(f.order_id, f.qty, f.price) for f in of(out, Fill)] == [
        (close.order_id, 2.0, 40_000.0)
    ]
    assert tr.account.qty("BTCUSDT") == 0.0 and tr.sim.open_orders("BTCUSDT") == []


def test_a_stop_gapped_through_fills_at_the_open() -> None:
    tr, out = _long(risk_only("stop_loss"))
    (stop,) = of(out, Order)
    out = tr.update([(bar("BTCUSDT", 2, 39_200.0, o=39_500.0, h=39_600.0), None)])
    (f,) = of(out, Fill)
    assert (f.order_id, f.price, f.liquidity) == (stop.order_id, 39_500.0, "taker")  # not 39_801
    (snap,) = of(out, PositionSnapshot)
    assert snap.qty == 0.0 and snap.realized_pnl == pytest.approx(2.0 * (39_500.0 - 40_001.0))


def test_a_partial_exit_fill_replaces_both_exits_for_the_rest() -> None:
    """The bar's volume (x 0.25) takes 1.2 of the 2 BTC stop; the rest gets a new stop and a new
    take profit sized to it (one-cancels-other kept for what is left)."""
    tr, out = _long(risk_only("stop_loss", "take_profit"), execution={"max_volume_share": 0.25})
    stop, tp = of(out, Order)
    out = tr.update([(bar("BTCUSDT", 2, 39_700.0, o=39_900.0, h=39_950.0, v=4.8), None)])
    (f,) = of(out, Fill)
    assert (f.order_id, f.qty) == (stop.order_id, pytest.approx(1.2))
    assert [(e.order_id, e.reason) for e in of(out, OrderExpired)] == [
        (stop.order_id, "canceled"),
        (tp.order_id, "canceled"),
    ]
    new_stop, new_tp = of(out, Order)
    assert new_stop.qty == pytest.approx(0.8) and new_tp.qty == pytest.approx(0.8)
    assert (new_stop.stop_price, new_tp.limit_price) == (39_801.0, 40_601.02)  # same entry
    assert [o.order_id for o in tr.sim.open_orders("BTCUSDT")] == [
        new_stop.order_id,
        new_tp.order_id,
    ]
