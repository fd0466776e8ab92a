"""The bar execution simulator: hand-worked examples of every order type, path case, fee,
slippage component, latency, partial fill and time in force; hypothesis properties; pickling."""

from __future__ import annotations

import pickle
import random
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.account import Account
from operators.execution_sim import ExecutionSim, SimConfig, to_fill
from schemas.messages import (
    NS_PER_MINUTE,
    Bar,
    CancelOrder,
    Fill,
    OrderExpired,
    OrderFilled,
    SubmitOrder,
)
from tests.operators.opdata import real_bars

M = NS_PER_MINUTE
T0 = 1_704_067_200 * 10**9  # 2024-01-01


def bar(i: int, o: float, h: float, lo: float, c: float, v: float = 1_000.0) -> Bar:
    ts = T0 + i * M
    return Bar(
        symbol="BTCUSDT", ts_event=ts, ts_init=ts + M, open=o, high=h, low=lo, close=c, volume=v
    )


def order(oid: str = "o1", side: str = "buy", qty: float = 1.0, **kw: Any) -> SubmitOrder:
    kw.setdefault("ts_event", T0)
    return SubmitOrder(
        order_id=oid, symbol="BTCUSDT", ts_init=kw["ts_event"], side=side, qty=qty, **kw
    )  # type: ignore[arg-type]


def fills(events: list[Any]) -> list[OrderFilled]:
    return [e for e in events if isinstance(e, OrderFilled)]


def one_fill(sim: ExecutionSim, b: Bar) -> OrderFilled:
    out = sim.on_bar(b)
    assert len(out) == 1 and isinstance(out[0], OrderFilled), out
    return out[0]


# --- market orders, latency, fees, slippage -------------------------------------------------------


def test_market_fills_at_the_first_bar_open_at_or_after_submit() -> None:
    sim = ExecutionSim(SimConfig(taker_fee_bps=10.0))
    sim.submit(order(ts_event=T0 + M))  # decided at bar 0's close
    assert sim.on_bar(bar(0, 100, 101, 99, 100)) == []  # bar 0 opened before the submit
    f = one_fill(sim, bar(1, 102, 103, 101, 102))
    assert (f.fill_id, f.price, f.qty, f.liquidity, f.base_price) == (
        "o1-1",
        102,
        1.0,
        "taker",
        102,
    )
    assert f.fee == pytest.approx(102 * 10e-4)
    assert f.done and f.leaves_qty == 0.0 and f.ts_event == T0 + M and f.ts_init == T0 + 2 * M
    assert to_fill(f) == Fill(
        fill_id="o1-1",
        order_id="o1",
        symbol="BTCUSDT",
        ts_event=T0 + M,
        ts_init=T0 + 2 * M,
        side="buy",
        price=102,
        qty=1.0,
        fee=f.fee,
        liquidity="taker",
    )
    assert sim.on_bar(bar(2, 102, 103, 101, 102)) == [] and sim.open_orders("BTCUSDT") == []


def test_latency_delays_activation_to_the_first_open_at_or_after_submit_plus_latency() -> None:
    sim = ExecutionSim(SimConfig(latency_ns=90 * 10**9))
    sim.submit(order(ts_event=T0 + M))  # active from T0 + 2.5 min: bar 3 (opens T0 + 3 min)
    assert sim.on_bar(bar(1, 100, 100, 100, 100)) == []
    assert sim.on_bar(bar(2, 101, 101, 101, 101)) == []
    assert one_fill(sim, bar(3, 103, 104, 102, 103)).price == 103
    sim2 = ExecutionSim(SimConfig(latency_ns=2 * M))  # exactly on an open: that bar
    sim2.submit(order(ts_event=T0 + M))
    assert sim2.on_bar(bar(2, 101, 101, 101, 101)) == []
    assert one_fill(sim2, bar(3, 103, 104, 102, 103)).price == 103


def test_maker_and_taker_fees() -> None:
    sim = ExecutionSim(SimConfig(maker_fee_bps=2.0, taker_fee_bps=7.5))
    sim.submit(order("m", qty=2.0))
    sim.submit(order("l", qty=3.0, order_type="limit", limit_price=95.0))
    out = fills(sim.on_bar(bar(0, 100, 101, 94, 99)))
    assert [(f.order_id, f.liquidity, f.price) for f in out] == [
        ("m", "taker", 100.0),
        ("l", "maker", 95.0),
    ]
    assert out[0].fee == pytest.approx(2 * 100 * 7.5e-4)
    assert out[1].fee == pytest.approx(3 * 95 * 2e-4)


@pytest.mark.parametrize(
    ("cfg", "qty", "bps"),
    [
        (dict(slippage_bps=10.0), 1.0, 10.0),  # fixed
        (dict(k_size_bps=50.0), 2.0, 50.0 * 2.0 / 100.0),  # 2 of a 100 volume bar: 1 bp
        (dict(k_vol_bps=100.0), 1.0, 100.0 * (101.0 - 99.0) / 100.0),  # 2% range: 2 bps
        (dict(slippage_bps=10.0, k_size_bps=50.0, k_vol_bps=100.0), 2.0, 10 + 1 + 2),
    ],
)
def test_each_slippage_component_is_against_the_trader(
    cfg: dict[str, float], qty: float, bps: float
) -> None:
    for side, sign in (("buy", 1.0), ("sell", -1.0)):
        sim = ExecutionSim(SimConfig(**cfg))  # type: ignore[arg-type]
        sim.submit(order(side=side, qty=qty))
        f = one_fill(sim, bar(0, 100, 101, 99, 100, v=100.0))
        assert f.slippage_bps == pytest.approx(bps)
        assert f.price == pytest.approx(100.0 * (1 + sign * bps * 1e-4))
        assert f.base_price == 100.0


def test_quote_budget_buy_spends_exactly_the_budget_with_fee_and_slippage() -> None:
    sim = ExecutionSim(SimConfig(taker_fee_bps=10.0, slippage_bps=5.0))
    sim.submit(SubmitOrder("q", "BTCUSDT", T0, T0, "buy", quote_budget=1_000.0))
    f = one_fill(sim, bar(0, 100, 101, 99, 100))
    assert f.price == pytest.approx(100.05)
    assert f.qty == pytest.approx(1_000.0 / (100.05 * 1.001))
    assert f.qty * f.price + f.fee == pytest.approx(1_000.0, rel=1e-12) and f.done


def test_quote_budget_partial_fills_never_exceed_the_budget() -> None:
    sim = ExecutionSim(SimConfig(taker_fee_bps=10.0, k_size_bps=100.0, max_volume_share=0.5))
    sim.submit(SubmitOrder("q", "BTCUSDT", T0, T0, "buy", quote_budget=1_000.0))
    f1 = one_fill(sim, bar(0, 100, 100, 100, 100, v=4.0))  # capped at 2
    assert f1.qty == 2.0 and f1.slippage_bps == pytest.approx(50.0) and not f1.done
    assert f1.leaves_quote == pytest.approx(1_000 - 2 * 100.5 * 1.001)
    f2 = one_fill(sim, bar(1, 110, 110, 110, 110, v=1_000.0))
    spent = sum(f.qty * f.price + f.fee for f in (f1, f2))
    assert f2.done and spent == pytest.approx(1_000.0, rel=1e-12) and spent <= 1_000.0 * (1 + 1e-15)


# --- limit orders --------------------------------------------------------------------------------


def test_resting_buy_limit_touched_intrabar_fills_at_its_price_as_maker() -> None:
    sim = ExecutionSim()
    sim.submit(order(order_type="limit", limit_price=95.0))
    assert sim.on_bar(bar(0, 100, 101, 96, 99)) == []  # not reached
    f = one_fill(sim, bar(1, 99, 100, 95, 97))  # touched at the low
    assert (f.price, f.liquidity, f.slippage_bps) == (95.0, "maker", 0.0)


def test_resting_limit_fills_at_the_open_when_a_later_bar_opens_through_it() -> None:
    sim = ExecutionSim(SimConfig(slippage_bps=50.0))
    sim.submit(order(order_type="limit", limit_price=95.0))
    sim.submit(order("s", side="sell", order_type="limit", limit_price=110.0))
    assert sim.on_bar(bar(0, 100, 101, 96, 99)) == []
    f = one_fill(sim, bar(1, 93, 94, 92, 93))  # gap down through the buy limit: better price
    assert (f.order_id, f.price, f.liquidity) == ("o1", 93.0, "maker")
    f = one_fill(sim, bar(2, 112, 113, 111, 112))
    assert (f.order_id, f.price, f.liquidity) == ("s", 112.0, "maker")


def test_limit_marketable_on_arrival_is_a_taker_capped_at_its_limit() -> None:
    sim = ExecutionSim(SimConfig(slippage_bps=10.0, taker_fee_bps=5.0, maker_fee_bps=1.0))
    sim.submit(order("a", order_type="limit", limit_price=101.0))  # open 100: room for slippage
    sim.submit(order("b", order_type="limit", limit_price=100.05))  # slippage capped at limit
    sim.submit(order("c", side="sell", order_type="limit", limit_price=99.0))
    out = fills(sim.on_bar(bar(0, 100, 100, 100, 100)))
    by = {f.order_id: f for f in out}
    assert by["a"].price == pytest.approx(100.1) and by["a"].liquidity == "taker"
    assert by["b"].price == 100.05 and by["b"].slippage_bps == pytest.approx(5.0)
    assert by["c"].price == pytest.approx(99.9)
    assert by["a"].fee == pytest.approx(100.1 * 5e-4)


def test_sell_limit_touched_intrabar() -> None:
    sim = ExecutionSim()
    sim.submit(order(side="sell", order_type="limit", limit_price=105.0))
    f = one_fill(sim, bar(0, 100, 105, 99, 104))
    assert (f.price, f.liquidity, f.base_price) == (105.0, "maker", 105.0)


# --- stop orders ---------------------------------------------------------------------------------


def test_buy_stop_triggers_at_its_price_and_fills_as_taker_with_slippage() -> None:
    sim = ExecutionSim(SimConfig(slippage_bps=10.0, taker_fee_bps=4.0))
    sim.submit(order(order_type="stop", stop_price=105.0))
    assert sim.on_bar(bar(0, 100, 104, 99, 103)) == []
    f = one_fill(sim, bar(1, 103, 106, 102, 105))
    assert (f.base_price, f.liquidity) == (105.0, "taker")
    assert f.price == pytest.approx(105.0 * 1.001) and f.fee == pytest.approx(f.price * 4e-4)


def test_stops_gapped_through_fill_at_the_open() -> None:
    sim = ExecutionSim()
    sim.submit(order("b", order_type="stop", stop_price=105.0))
    sim.submit(order("s", side="sell", order_type="stop", stop_price=95.0))
    f = one_fill(sim, bar(0, 107, 108, 106, 107))
    assert (f.order_id, f.price) == ("b", 107.0)
    f = one_fill(sim, bar(1, 90, 91, 89, 90))
    assert (f.order_id, f.price) == ("s", 90.0)


def test_triggered_stop_with_volume_left_works_on_as_a_market_order() -> None:
    sim = ExecutionSim(SimConfig(max_volume_share=0.1))
    sim.submit(order(side="sell", qty=3.0, order_type="stop", stop_price=95.0))
    f1 = one_fill(sim, bar(0, 100, 100, 94, 96, v=10.0))  # triggered at 95, 1 of 3
    assert (f1.base_price, f1.qty, f1.leaves_qty) == (95.0, 1.0, 2.0)
    f2 = one_fill(sim, bar(1, 97, 98, 96, 97, v=100.0))  # above the stop: a market order now
    assert (f2.fill_id, f2.base_price, f2.qty, f2.done) == ("o1-2", 97.0, 2.0, True)


# --- the intrabar path ---------------------------------------------------------------------------


def test_path_up_bar_goes_open_low_high_close() -> None:
    # close >= open: O 100 -> L 95 -> H 110 -> C 105; the buy limit at 96 is reached after 4,
    # the sell limit at 108 after 5 + 13; with volume for one order, the buy fills
    sim = ExecutionSim(SimConfig(max_volume_share=0.01))
    sim.submit(order("s", side="sell", order_type="limit", limit_price=108.0))
    sim.submit(order("b", order_type="limit", limit_price=96.0))
    out = fills(sim.on_bar(bar(0, 100, 110, 95, 105, v=100.0)))
    assert [f.order_id for f in out] == ["b"]


def test_path_down_bar_goes_open_high_low_close() -> None:
    sim = ExecutionSim(SimConfig(max_volume_share=0.01))
    sim.submit(order("b", order_type="limit", limit_price=96.0))
    sim.submit(order("s", side="sell", order_type="limit", limit_price=108.0))
    out = fills(sim.on_bar(bar(0, 100, 110, 95, 97, v=100.0)))
    assert [f.order_id for f in out] == ["s"]


def test_fills_come_in_path_order_then_submission_order() -> None:
    sim = ExecutionSim()
    sim.submit(order("stop", side="sell", order_type="stop", stop_price=97.0))  # at 3
    sim.submit(order("lim", order_type="limit", limit_price=98.0))  # at 2
    sim.submit(order("mkt2"))  # at the open
    sim.submit(order("tp", side="sell", order_type="limit", limit_price=109.0))  # 5 + 14
    out = fills(sim.on_bar(bar(0, 100, 110, 95, 105)))
    assert [f.order_id for f in out] == ["mkt2", "lim", "stop", "tp"]


# --- partial fills and time in force -------------------------------------------------------------


def test_partial_fills_over_several_bars_with_the_volume_cap() -> None:
    sim = ExecutionSim(SimConfig(max_volume_share=0.1))
    sim.submit(order(qty=5.0))
    sim.submit(order("o2", qty=1.0))  # shares each bar's capacity, after o1
    out = [
        fills(sim.on_bar(bar(i, 100, 100, 100, 100, v=v))) for i, v in enumerate((10, 0, 20, 40))
    ]
    got = [[(f.fill_id, f.qty, f.leaves_qty) for f in bar_fills] for bar_fills in out]
    assert got == [
        [("o1-1", 1.0, 4.0)],
        [],  # a bar without volume fills nothing
        [("o1-2", 2.0, 2.0)],
        [("o1-3", 2.0, 0.0), ("o2-1", 1.0, 0.0)],
    ]


def test_ioc_market_fills_what_the_arrival_bar_allows_and_expires_the_rest() -> None:
    sim = ExecutionSim(SimConfig(max_volume_share=0.1))
    sim.submit(order(qty=5.0, time_in_force="IOC"))
    out = sim.on_bar(bar(0, 100, 100, 100, 100, v=10.0))
    assert isinstance(out[0], OrderFilled) and out[0].qty == 1.0
    assert out[1] == OrderExpired("o1", "BTCUSDT", T0, T0 + M, "IOC", 1.0, 4.0, 0.0)
    assert sim.open_orders("BTCUSDT") == []


def test_ioc_limit_only_counts_the_arrival_open() -> None:
    sim = ExecutionSim()
    sim.submit(order("no", order_type="limit", limit_price=96.0, time_in_force="IOC"))
    sim.submit(order("yes", order_type="limit", limit_price=101.0, time_in_force="IOC"))
    out = sim.on_bar(bar(0, 100, 101, 95, 100))  # "no" is touched only intrabar
    assert [(type(e).__name__, e.order_id) for e in out] == [
        ("OrderFilled", "yes"),
        ("OrderExpired", "no"),
    ]


def test_ioc_stop_triggers_only_on_a_gap_at_arrival() -> None:
    sim = ExecutionSim()
    sim.submit(order("gap", order_type="stop", stop_price=99.0, time_in_force="IOC"))
    sim.submit(order("intra", order_type="stop", stop_price=101.0, time_in_force="IOC"))
    out = sim.on_bar(bar(0, 100, 102, 99, 100))
    assert [(type(e).__name__, e.order_id) for e in out] == [
        ("OrderFilled", "gap"),
        ("OrderExpired", "intra"),
    ]


def test_gtd_works_on_bars_closing_by_its_expiry_then_expires() -> None:
    sim = ExecutionSim(SimConfig(max_volume_share=0.1))
    sim.submit(
        order(
            qty=5.0,
            order_type="limit",
            limit_price=100.0,
            time_in_force="GTD",
            expire_ts=T0 + 2 * M,
        )
    )
    assert fills(sim.on_bar(bar(0, 100, 100, 100, 100, v=10.0)))[0].qty == 1.0
    assert fills(sim.on_bar(bar(1, 100, 100, 100, 100, v=10.0)))[0].qty == 1.0  # closes at expiry
    out = sim.on_bar(bar(2, 100, 100, 100, 100, v=10.0))
    assert out == [OrderExpired("o1", "BTCUSDT", T0 + 2 * M, T0 + 3 * M, "GTD", 2.0, 3.0, 0.0)]
    assert sim.open_orders("BTCUSDT") == []


def test_gtc_works_until_filled_and_cancel_ends_it() -> None:
    sim = ExecutionSim()
    sim.submit(order(order_type="limit", limit_price=90.0))
    for i in range(100):
        assert sim.on_bar(bar(i, 100, 101, 99, 100)) == []
    assert sim.open_orders("BTCUSDT")[0].order_id == "o1"
    ex = sim.cancel(CancelOrder("o1", T0 + 100 * M, T0 + 100 * M))
    assert ex is not None and ex.reason == "canceled" and ex.leaves_qty == 1.0
    assert sim.cancel(CancelOrder("o1", T0, T0)) is None
    assert sim.on_bar(bar(100, 80, 81, 79, 80)) == []


def test_orders_of_other_symbols_wait_for_their_own_bars() -> None:
    sim = ExecutionSim()
    sim.submit(SubmitOrder("e", "ETHUSDT", T0, T0, "buy", qty=1.0))
    assert sim.on_bar(bar(0, 100, 100, 100, 100)) == []
    eth = Bar("ETHUSDT", T0 + M, T0 + 2 * M, 10.0, 10.0, 10.0, 10.0, 5.0)
    assert one_fill(sim, eth).price == 10.0


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        (dict(qty=0.0), "exactly one of qty"),
        (dict(qty=1.0, quote_budget=5.0), "exactly one of qty"),
        (dict(qty=0.0, quote_budget=5.0, order_type="limit", limit_price=1.0), "market buys"),
        (dict(order_type="limit"), "limit_price"),
        (dict(order_type="stop"), "stop_price"),
        (dict(time_in_force="GTD"), "expire_ts"),
    ],
)
def test_invalid_orders_are_refused(kw: dict[str, Any], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        ExecutionSim().submit(order(**kw))


def test_duplicate_order_id_and_bad_config_are_refused() -> None:
    sim = ExecutionSim()
    sim.submit(order())
    with pytest.raises(ValueError, match="duplicate"):
        sim.submit(order())
    with pytest.raises(ValueError, match="max_volume_share"):
        SimConfig(max_volume_share=0.0)
    with pytest.raises(ValueError, match="taker_fee_bps"):
        SimConfig(taker_fee_bps=-1.0)


# --- real bars: random orders, pickling ----------------------------------------------------------

REAL_CFG = SimConfig(
    maker_fee_bps=1.0,
    taker_fee_bps=7.5,
    slippage_bps=1.0,
    k_size_bps=20.0,
    k_vol_bps=5.0,
    latency_ns=250_000_000,
    max_volume_share=0.05,
)


def _random_orders(bars: tuple[Bar, ...], seed: int) -> dict[int, list[SubmitOrder]]:
    """Orders to submit after bar i (at its close), around its close price."""
    rng = random.Random(seed)
    out: dict[int, list[SubmitOrder]] = defaultdict(list)
    for i, b in enumerate(bars):
        if rng.random() > 0.2:
            continue
        kind = rng.choice(("market", "limit", "stop"))
        side = rng.choice(("buy", "sell"))
        off = b.close * rng.uniform(-0.003, 0.003)
        tif = rng.choice(("GTC", "GTC", "IOC", "GTD"))
        out[i].append(
            SubmitOrder(
                order_id=f"r{i}",
                symbol=b.symbol,
                ts_event=b.ts_close,
                ts_init=b.ts_init,
                side=side,  # type: ignore[arg-type]
                qty=rng.uniform(0.01, 30.0),
                order_type=kind,  # type: ignore[arg-type]
                limit_price=b.close + off if kind == "limit" else 0.0,
                stop_price=b.close + abs(off) * (1 if side == "buy" else -1)
                if kind == "stop"
                else 0.0,
                time_in_force=tif,  # type: ignore[arg-type]
                expire_ts=b.ts_close + rng.randint(1, 20) * M if tif == "GTD" else 0,
            )
        )
    return out


def _run(
    sim: ExecutionSim, bars: tuple[Bar, ...], orders: dict[int, list[SubmitOrder]], start: int
) -> list[Any]:
    events: list[Any] = []
    for i in range(start, len(bars)):
        events.extend(sim.on_bar(bars[i]))
        for o in orders.get(i, ()):
            sim.submit(o)
    return events


def test_pickled_mid_stream_continues_identically() -> None:
    bars = real_bars("BTCUSDT")[:3_000]
    orders = _random_orders(bars, seed=7)
    whole = _run(ExecutionSim(REAL_CFG), bars, orders, 0)
    assert len(fills(whole)) > 300 and any(isinstance(e, OrderExpired) for e in whole)
    sim = ExecutionSim(REAL_CFG)
    head = _run(sim, bars[:1_500], orders, 0)
    clone = pickle.loads(pickle.dumps(sim))
    tail = _run(clone, bars, orders, 1_500)
    assert head + tail == whole  # msgspec structs compare by value, floats bit for bit


def test_real_bars_invariants() -> None:
    bars = real_bars("ETHUSDT")[:5_000]
    orders = _random_orders(bars, seed=11)
    events = _run(ExecutionSim(REAL_CFG), bars, orders, 0)
    flat = {o.order_id: o for v in orders.values() for o in v}
    _check_invariants(bars, list(flat.values()), events, REAL_CFG)
    kinds = {(flat[f.order_id].order_type, f.liquidity) for f in fills(events)}
    assert kinds == {("market", "taker"), ("stop", "taker"), ("limit", "taker"), ("limit", "maker")}
    assert {e.reason for e in events if isinstance(e, OrderExpired)} == {"IOC", "GTD"}
    assert any(not f.done for f in fills(events))  # the volume cap bit


# --- properties ----------------------------------------------------------------------------------


def _check_invariants(
    bars: tuple[Bar, ...] | list[Bar],
    orders: list[SubmitOrder],
    events: list[Any],
    cfg: SimConfig,
) -> None:
    by_ts = {b.ts_event: b for b in bars}
    by_id = {o.order_id: o for o in orders}
    per_order: dict[str, float] = defaultdict(float)
    per_bar: dict[int, float] = defaultdict(float)
    n_fills: dict[str, int] = defaultdict(int)
    for f in fills(events):
        o, b = by_id[f.order_id], by_ts[f.ts_event]
        n_fills[f.order_id] += 1
        assert f.fill_id == f"{o.order_id}-{n_fills[f.order_id]}"
        assert f.qty > 0.0
        per_order[f.order_id] += f.qty
        per_bar[f.ts_event] += f.qty
        assert b.low <= f.base_price <= b.high
        assert b.ts_event >= o.ts_event + cfg.latency_ns
        if f.side == "buy":
            assert f.price >= f.base_price
        else:
            assert f.price <= f.base_price
        if o.order_type == "limit":
            assert f.price <= o.limit_price if f.side == "buy" else f.price >= o.limit_price
        if o.time_in_force == "GTD":
            assert b.ts_close <= o.expire_ts
        fee_bps = cfg.maker_fee_bps if f.liquidity == "maker" else cfg.taker_fee_bps
        assert f.fee == pytest.approx(f.qty * f.price * fee_bps * 1e-4, rel=1e-12, abs=1e-300)
    for oid, q in per_order.items():
        assert q <= by_id[oid].qty * (1 + 1e-12)
    for ts, q in per_bar.items():
        assert q <= cfg.max_volume_share * by_ts[ts].volume * (1 + 1e-12)


@st.composite
def bar_seq(draw: st.DrawFn) -> list[Bar]:
    n = draw(st.integers(1, 25))
    out, price = [], 100.0
    for i in range(n):
        o = price * draw(st.floats(0.95, 1.05))
        c = o * draw(st.floats(0.95, 1.05))
        h = max(o, c) * draw(st.floats(1.0, 1.03))
        lo = min(o, c) * draw(st.floats(0.97, 1.0))
        v = draw(st.sampled_from((0.0, 0.5, 3.0, 50.0)))
        out.append(bar(i, o, h, lo, c, v))
        price = c
    return out


@st.composite
def order_list(draw: st.DrawFn) -> list[tuple[int, SubmitOrder]]:
    """(bar index after whose open time it is submitted, order)."""
    n = draw(st.integers(1, 12))
    out = []
    for k in range(n):
        kind = draw(st.sampled_from(("market", "limit", "stop")))
        tif = draw(st.sampled_from(("GTC", "IOC", "GTD")))
        at = draw(st.integers(0, 10))
        px = draw(st.floats(85.0, 115.0))
        out.append(
            (
                at,
                SubmitOrder(
                    order_id=f"h{k}",
                    symbol="BTCUSDT",
                    ts_event=T0 + at * M + draw(st.integers(0, M)),
                    ts_init=T0,
                    side=draw(st.sampled_from(("buy", "sell"))),
                    qty=draw(st.floats(0.01, 10.0)),
                    order_type=kind,
                    limit_price=px if kind == "limit" else 0.0,
                    stop_price=px if kind == "stop" else 0.0,
                    time_in_force=tif,
                    expire_ts=T0 + draw(st.integers(0, 30)) * M if tif == "GTD" else 0,
                ),
            )
        )
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bars=bar_seq(),
    orders=order_list(),
    share=st.sampled_from((0.01, 0.2, 1.0)),
    latency=st.sampled_from((0, 30 * 10**9, 3 * M)),
)
def test_property_fills_respect_qty_cap_limits_and_the_bar(
    bars: list[Bar], orders: list[tuple[int, SubmitOrder]], share: float, latency: int
) -> None:
    cfg = SimConfig(
        maker_fee_bps=1.0,
        taker_fee_bps=5.0,
        slippage_bps=2.0,
        k_size_bps=30.0,
        k_vol_bps=10.0,
        latency_ns=latency,
        max_volume_share=share,
    )
    sim = ExecutionSim(cfg)
    events: list[Any] = []
    for i, b in enumerate(bars):
        for at, o in orders:
            if at == i:
                sim.submit(o)
        events.extend(sim.on_bar(b))
    _check_invariants(bars, [o for _, o in orders], events, cfg)
    # equity identity over whatever filled, in a margin account
    acct = Account("a", 1e9, kind="margin", max_leverage=10.0, maintenance_rate=0.01)
    for f in fills(events):
        acct.apply_fill(f)
    acct.mark("BTCUSDT", bars[-1].close, bars[-1].ts_close)
    identity = acct.initial_cash + acct.realized_pnl + acct.unrealized_pnl - acct.fees
    assert acct.equity == pytest.approx(identity, rel=1e-12)
