"""Sizing, risk, simulated execution, portfolio accounting and the per-symbol Sleeve loop."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from operators.execution import SimulatedExecution
from operators.portfolio import Portfolio
from operators.risk.max_notional import MaxPositionNotional
from operators.sizing import FractionOfEquity
from operators.sleeve import Sleeve
from operators.strategy_sma_cross import SmaCross
from schemas.messages import (
    NS_PER_MINUTE,
    Bar,
    EquityPoint,
    Fill,
    Order,
    OrderDenied,
    OrderIntent,
    PositionSnapshot,
    Signal,
)
from tests.operators.opdata import SYMBOLS, real_arrays, real_bars
from tests.reference.sma_cross_numpy import sma_cross_backtest


def _signal(direction: int, ts: int = 1_000, symbol: str = "BTCUSDT") -> Signal:
    return Signal(symbol=symbol, ts_event=ts, ts_init=ts + 1, strategy="test", direction=direction)


def _intent(side: str, *, qty: float = 0.0, budget: float = 0.0, ref: float = 100.0) -> OrderIntent:
    return OrderIntent(
        intent_id="i-1",
        symbol="BTCUSDT",
        ts_event=1,
        ts_init=1,
        side=side,  # type: ignore[arg-type]
        qty=qty,
        quote_budget=budget,
        ref_price=ref,
    )


def _bar(ts: int, o: float, c: float | None = None) -> Bar:
    c = o if c is None else c
    return Bar(
        symbol="BTCUSDT",
        ts_event=ts,
        ts_init=ts + NS_PER_MINUTE,
        open=o,
        high=max(o, c),
        low=min(o, c),
        close=c,
        volume=1.0,
    )


def _fill(side: str, price: float, qty: float, fee: float, ts: int = 0) -> Fill:
    return Fill(
        fill_id=f"f{ts}",
        order_id=f"o{ts}",
        symbol="BTCUSDT",
        ts_event=ts,
        ts_init=ts,
        side=side,  # type: ignore[arg-type]
        price=price,
        qty=qty,
        fee=fee,
    )


# --- sizing ----------------------------------------------------------------------------------


def test_all_in_buy_budget_is_cash() -> None:
    sizer = FractionOfEquity(1.0)
    sig = _signal(1)
    intent = sizer.size(sig, "BTCUSDT-1", 0.0, 12_345.5, 12_345.5, 42_000.0)
    assert intent is not None
    assert intent.side == "buy" and intent.quote_budget == 12_345.5 and intent.qty == 0.0
    assert intent.ref_price == 42_000.0 and intent.intent_id == "BTCUSDT-1"
    assert (intent.symbol, intent.ts_event, intent.ts_init) == (
        "BTCUSDT",
        sig.ts_event,
        sig.ts_init,
    )
    # equity above cash (cannot happen flat, but the cap is cash)
    intent = sizer.size(sig, "x", 0.0, 100.0, 150.0, 1.0)
    assert intent is not None and intent.quote_budget == 100.0


def test_fraction_of_equity_budget() -> None:
    intent = FractionOfEquity(0.25).size(_signal(1), "x", 0.0, 1_000.0, 1_000.0, 10.0)
    assert intent is not None and intent.quote_budget == 250.0
    # the fraction applies to equity but never spends more than the cash there is
    intent = FractionOfEquity(0.5).size(_signal(1), "x", 0.0, 300.0, 1_000.0, 10.0)
    assert intent is not None and intent.quote_budget == 300.0


def test_sell_is_the_full_position() -> None:
    intent = FractionOfEquity(0.3).size(_signal(-1), "x", 1.2345, 0.0, 5_000.0, 4_000.0)
    assert intent is not None
    assert intent.side == "sell" and intent.qty == 1.2345 and intent.quote_budget == 0.0
    assert intent.ref_price == 4_000.0


@pytest.mark.parametrize(
    ("direction", "qty", "cash"),
    [
        (1, 0.5, 100.0),  # already long: no pyramiding
        (-1, 0.0, 100.0),  # flat: nothing to sell (long-only)
        (0, 0.0, 100.0),  # no view
        (0, 1.0, 100.0),
        (1, 0.0, 0.0),  # no cash
    ],
)
def test_sizing_no_op_cases(direction: int, qty: float, cash: float) -> None:
    assert FractionOfEquity(1.0).size(_signal(direction), "x", qty, cash, cash, 10.0) is None


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.0000001, float("nan")])
def test_sizing_fraction_bounds(fraction: float) -> None:
    with pytest.raises(ValueError):
        FractionOfEquity(fraction)


# --- risk ------------------------------------------------------------------------------------


def test_max_notional_buy_by_budget() -> None:
    rule = MaxPositionNotional(1_000.0)
    assert rule.check(_intent("buy", budget=1_000.0), 0.0) is None  # at the limit passes
    reason = rule.check(_intent("buy", budget=1_000.01), 0.0)
    assert reason == "projected position notional 1000.01 exceeds limit 1000.00"
    # the existing position counts: 2 * 100 + 900 = 1100
    reason = rule.check(_intent("buy", budget=900.0, ref=100.0), 2.0)
    assert reason is not None and "1100.00" in reason and "1000.00" in reason
    assert rule.name == "max_position_notional"


def test_max_notional_buy_by_qty_and_sell() -> None:
    rule = MaxPositionNotional(1_000.0)
    assert rule.check(_intent("buy", qty=10.0, ref=100.0), 0.0) is None
    assert "1010.00" in (rule.check(_intent("buy", qty=10.1, ref=100.0), 0.0) or "")
    # a sell reduces the position: 20*100 - 15*100 = 500
    assert rule.check(_intent("sell", qty=15.0, ref=100.0), 20.0) is None
    reason = rule.check(_intent("sell", qty=5.0, ref=100.0), 20.0)
    assert reason == "projected position notional 1500.00 exceeds limit 1000.00"


@pytest.mark.parametrize("limit", [0.0, -5.0])
def test_max_notional_limit_must_be_positive(limit: float) -> None:
    with pytest.raises(ValueError):
        MaxPositionNotional(limit)


# --- execution -------------------------------------------------------------------------------


def _order(side: str, *, qty: float = 0.0, budget: float = 0.0, oid: str = "o-1") -> Order:
    return Order(
        order_id=oid,
        symbol="BTCUSDT",
        ts_event=1,
        ts_init=1,
        side=side,  # type: ignore[arg-type]
        qty=qty,
        quote_budget=budget,
    )


def test_fill_at_next_bar_open_without_slippage() -> None:
    ex = SimulatedExecution(fee_bps=10.0, slippage_bps=0.0)
    bars = real_bars("BTCUSDT")[:3]
    assert ex.on_bar_open(bars[0]) == []
    ex.submit(_order("buy", budget=10_000.0))
    (fill,) = ex.on_bar_open(bars[1])
    assert fill.price == bars[1].open
    assert fill.ts_event == bars[1].ts_event and fill.ts_init == bars[1].ts_event
    assert fill.order_id == "o-1" and fill.fill_id == "o-1-1" and fill.liquidity == "taker"
    assert fill.qty == pytest.approx(10_000.0 / (bars[1].open * 1.001), rel=1e-15)
    assert fill.fee == pytest.approx(fill.qty * fill.price * 0.001, rel=1e-15)
    # all-in: notional + fee spends exactly the budget
    assert fill.qty * fill.price + fill.fee == pytest.approx(10_000.0, rel=1e-12)
    assert ex.pending == [] and ex.on_bar_open(bars[2]) == []


def test_slippage_direction_and_fee() -> None:
    ex = SimulatedExecution(fee_bps=7.5, slippage_bps=20.0)
    assert ex.fee_rate == pytest.approx(0.00075) and ex.slippage == pytest.approx(0.002)
    ex.submit(_order("buy", budget=5_000.0, oid="b"))
    ex.submit(_order("buy", qty=0.25, oid="bq"))
    ex.submit(_order("sell", qty=0.5, oid="s"))
    bar = _bar(0, 40_000.0, 40_100.0)
    buy, buyq, sell = ex.on_bar_open(bar)
    assert buy.price == pytest.approx(40_000.0 * 1.002, rel=1e-15) and buy.price > bar.open
    assert sell.price == pytest.approx(40_000.0 * 0.998, rel=1e-15) and sell.price < bar.open
    assert buy.qty == pytest.approx(5_000.0 / (40_000.0 * 1.002 * 1.00075), rel=1e-15)
    assert buyq.qty == 0.25 and buyq.price == buy.price
    assert sell.qty == 0.5
    for f in (buy, buyq, sell):
        assert f.fee == pytest.approx(f.qty * f.price * 0.00075, rel=1e-15)
    assert [f.side for f in (buy, buyq, sell)] == ["buy", "buy", "sell"]


@pytest.mark.parametrize(("fee", "slip"), [(-1.0, 0.0), (0.0, -0.5)])
def test_execution_rejects_negative_costs(fee: float, slip: float) -> None:
    with pytest.raises(ValueError):
        SimulatedExecution(fee, slip)


# --- portfolio -------------------------------------------------------------------------------


def test_portfolio_accounting_round_trip() -> None:
    pf = Portfolio("BTCUSDT", 10_000.0)
    assert pf.equity == 10_000.0 and pf.unrealized_pnl == 0.0
    pf.apply(_fill("buy", 100.0, 30.0, 3.0))
    pf.apply(_fill("buy", 130.0, 10.0, 1.3))
    assert pf.qty == 40.0
    assert pf.avg_price == pytest.approx((100 * 30 + 130 * 10) / 40)  # 107.5
    assert pf.cash == pytest.approx(10_000 - 3_000 - 3 - 1_300 - 1.3)
    assert pf.fees == pytest.approx(4.3)
    pf.mark(110.0)
    assert pf.unrealized_pnl == pytest.approx((110 - 107.5) * 40)
    assert pf.equity == pytest.approx(pf.cash + 40 * 110)
    pf.apply(_fill("sell", 120.0, 15.0, 1.8))
    assert pf.realized_pnl == pytest.approx((120 - 107.5) * 15)  # gross of fees
    assert pf.qty == 25.0 and pf.avg_price == pytest.approx(107.5)  # avg unchanged by sells
    assert pf.mark_price == 120.0  # a fill marks at its price
    assert pf.cash == pytest.approx(10_000 - 4_300 - 4.3 + 1_800 - 1.8)
    pf.apply(_fill("sell", 90.0, 25.0, 2.25))
    assert pf.qty == 0.0 and pf.avg_price == 0.0
    assert pf.realized_pnl == pytest.approx(187.5 + (90 - 107.5) * 25)
    assert pf.fees == pytest.approx(4.3 + 1.8 + 2.25)
    # flat: equity = cash = initial + realized - fees
    assert pf.equity == pf.cash
    assert pf.cash == pytest.approx(10_000 + pf.realized_pnl - pf.fees)


def test_portfolio_snapshot_and_equity_point() -> None:
    pf = Portfolio("ETHUSDT", 1_000.0)
    pf.apply(_fill("buy", 50.0, 10.0, 0.5))
    pf.mark(55.0)
    snap = pf.snapshot(7, 8)
    assert isinstance(snap, PositionSnapshot)
    assert (snap.symbol, snap.ts_event, snap.ts_init) == ("ETHUSDT", 7, 8)
    assert (snap.qty, snap.avg_price, snap.mark_price) == (10.0, 50.0, 55.0)
    assert snap.cash == pytest.approx(499.5) and snap.fees == 0.5
    assert snap.unrealized_pnl == pytest.approx(50.0) and snap.realized_pnl == 0.0
    ep = pf.equity_point(9, 10)
    assert isinstance(ep, EquityPoint)
    assert (ep.account, ep.ts_event, ep.ts_init) == ("ETHUSDT", 9, 10)
    assert ep.position_value == pytest.approx(550.0)
    assert ep.equity == pytest.approx(1_049.5) == ep.cash + ep.position_value


def test_overselling_raises_and_dust_goes_flat() -> None:
    pf = Portfolio("BTCUSDT", 1_000.0)
    with pytest.raises(ValueError, match="exceeds position"):
        pf.apply(_fill("sell", 10.0, 0.1, 0.0))
    pf.apply(_fill("buy", 10.0, 1.0, 0.0))
    with pytest.raises(ValueError, match="exceeds position"):
        pf.apply(_fill("sell", 10.0, 1.001, 0.0))
    # selling 0.1 ten times (float residue ~1e-16) leaves an exactly flat position
    for _ in range(10):
        pf.apply(_fill("sell", 10.0, 0.1, 0.0))
    assert pf.qty == 0.0 and pf.avg_price == 0.0


# --- sleeve ----------------------------------------------------------------------------------


def _sleeve(limit: float = 1e12, fee_bps: float = 10.0, slip: float = 0.0) -> Sleeve:
    return Sleeve(
        "BTCUSDT",
        100_000.0,
        FractionOfEquity(1.0),
        [MaxPositionNotional(limit)],
        SimulatedExecution(fee_bps, slip),
    )


def test_sleeve_event_order_signal_then_fill_at_next_open() -> None:
    bars = real_bars("BTCUSDT")[:4]
    sl = _sleeve()
    out0 = sl.on_bar(bars[0], None)
    assert [type(m) for m in out0] == [EquityPoint]
    assert out0[0].ts_event == bars[0].ts_close and out0[0].equity == 100_000.0
    buy = Signal(
        symbol="BTCUSDT",
        ts_event=bars[1].ts_close,
        ts_init=bars[1].ts_init,
        strategy="t",
        direction=1,
    )
    out1 = sl.on_bar(bars[1], buy)
    assert [type(m) for m in out1] == [EquityPoint, Order]
    order = out1[1]
    assert order.side == "buy" and order.quote_budget == 100_000.0
    assert order.ts_event == bars[1].ts_close and order.order_id == "BTCUSDT-1"
    out2 = sl.on_bar(bars[2], None)
    assert [type(m) for m in out2] == [Fill, PositionSnapshot, EquityPoint]
    fill, snap, ep = out2
    assert fill.order_id == order.order_id
    assert fill.price == bars[2].open and fill.ts_event == bars[2].ts_event
    assert fill.qty == pytest.approx(100_000.0 / (bars[2].open * 1.001), rel=1e-12)
    assert snap.qty == fill.qty and snap.mark_price == fill.price
    assert snap.cash == pytest.approx(0.0, abs=1e-6)
    assert ep.ts_event == bars[2].ts_close
    assert ep.equity == pytest.approx(fill.qty * bars[2].close + snap.cash, rel=1e-12)
    sell = Signal(
        symbol="BTCUSDT",
        ts_event=bars[2].ts_close,
        ts_init=bars[2].ts_init,
        strategy="t",
        direction=-1,
    )
    # ordering within on_bar: mark-to-market happens before the new decision
    sl2_out = sl.on_bar(bars[3], sell)
    assert [type(m) for m in sl2_out] == [EquityPoint, Order]
    assert sl2_out[1].side == "sell" and sl2_out[1].qty == fill.qty
    assert sl2_out[1].order_id == "BTCUSDT-2"
    assert [s.ts_event for s in sl.final_snapshot()] == [bars[3].ts_close]


def test_sleeve_risk_denial_produces_no_order() -> None:
    bars = real_bars("BTCUSDT")[:3]
    sl = _sleeve(limit=50_000.0)
    sl.on_bar(bars[0], None)
    sig = Signal(symbol="BTCUSDT", ts_event=bars[0].ts_close, ts_init=1, strategy="t", direction=1)
    out = sl.on_bar(bars[1], sig)
    assert [type(m) for m in out] == [EquityPoint, OrderDenied]
    denied = out[1]
    assert denied.rule == "max_position_notional"
    assert denied.reason == "projected position notional 100000.00 exceeds limit 50000.00"
    assert denied.intent_id == "BTCUSDT-1" and denied.ts_event == sig.ts_event
    assert sl.execution.pending == []
    out = sl.on_bar(bars[2], None)
    assert [type(m) for m in out] == [EquityPoint]
    assert out[0].equity == 100_000.0 and sl.portfolio.qty == 0.0


def test_sleeve_no_op_signal_emits_nothing_extra() -> None:
    bars = real_bars("ETHUSDT")[:2]
    sl = _sleeve()
    out = sl.on_bar(bars[0], _signal(-1, ts=bars[0].ts_close))  # sell while flat
    assert [type(m) for m in out] == [EquityPoint]
    assert sl.final_snapshot()[0].qty == 0.0
    assert _sleeve().final_snapshot() == []


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_sleeve_with_sma_cross_equals_numpy_reference_on_real_month(symbol: str) -> None:
    """SmaCross(10,50) -> Sleeve over the whole real month equals the independent vectorised
    reference: same fill bars, prices, quantities and final equity; an equity point per bar."""
    bars = real_bars(symbol)
    cash0 = 500_000.0
    strat = SmaCross(symbol, 10, 50)
    sl = Sleeve(
        symbol, cash0, FractionOfEquity(1.0), [MaxPositionNotional(1e12)], SimulatedExecution(10, 0)
    )
    fills: list[Fill] = []
    n_equity = 0
    ts_index = {b.ts_event: i for i, b in enumerate(bars)}
    for b in bars:
        for m in sl.on_bar(b, strat.update(b)):
            if isinstance(m, Fill):
                fills.append(m)
            elif isinstance(m, EquityPoint):
                assert m.ts_event == b.ts_close
                n_equity += 1
    assert n_equity == len(bars)
    a = real_arrays(symbol)
    ref = sma_cross_backtest(a["open"], a["close"], fast=10, slow=50, fee=0.001, cash0=cash0)
    assert len(fills) == len(ref["fill_bar"]) > 50
    assert [ts_index[f.ts_event] for f in fills] == list(ref["fill_bar"])
    assert [1 if f.side == "buy" else -1 for f in fills] == list(ref["side"])
    assert [f.price for f in fills] == list(ref["price"])
    np.testing.assert_allclose([f.qty for f in fills], ref["qty"], rtol=1e-9)
    final = sl.portfolio.equity
    assert math.isclose(final, float(ref["final_equity"]), rel_tol=1e-9)


def test_sleeve_and_strategy_pickle_mid_stream_then_continue() -> None:
    """Recovery snapshot of strategy + sleeve state resumes to the identical event stream."""
    bars = real_bars("ETHUSDT")[:6_000]

    def fresh() -> tuple[SmaCross, Sleeve]:
        sl = Sleeve(
            "ETHUSDT",
            1e5,
            FractionOfEquity(0.8),
            [MaxPositionNotional(1e9)],
            SimulatedExecution(10, 2),
        )
        return SmaCross("ETHUSDT", 10, 50), sl

    strat, sl = fresh()
    expected = [m for b in bars for m in sl.on_bar(b, strat.update(b))]
    assert sum(isinstance(m, Fill) for m in expected) > 10
    for cut in (30, 2_345, 4_999):
        strat, sl = fresh()
        got = [m for b in bars[:cut] for m in sl.on_bar(b, strat.update(b))]
        strat, sl = pickle.loads(pickle.dumps((strat, sl)))
        got += [m for b in bars[cut:] for m in sl.on_bar(b, strat.update(b))]
        assert got == expected
