"""Sizing, the position-notional risk rule and simulated execution (the account loop is tested
in test_op_account_trader.py and against references in tests/dataflows/test_flow_account.py)."""

from __future__ import annotations

import pytest

from operators.execution import SimulatedExecution
from operators.risk.max_notional import MaxPositionNotional
from operators.sizing import FractionOfEquity
from schemas.messages import (
    NS_PER_MINUTE,
    Bar,
    Fill,
    Order,
    OrderIntent,
    Signal,
)
from tests.operators.opdata import real_bars


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
