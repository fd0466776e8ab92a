"""Properties of the account step under random signals, prices and risk limits (docs/adr/0006):
no approved order that adds risk breaches a configured limit at the moment it was approved, a
spot account never holds negative cash, no fill is refused by the account, and every intent ends
as exactly one Order or one OrderDenied.

The checker rebuilds the book from the emitted messages alone: positions from fills and
liquidations, marks from the input bars at each equity point, equity from the equity point, and
the market orders still working (they fill at the next open, so a later order must count them:
what a limit means for an order decided while another is in flight). It recomputes each limit's
post-trade value itself; it never calls the rules."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.trader import new_trader
from operators.account_trader import Decision
from schemas.config import Config
from schemas.messages import (
    NS_PER_DAY,
    Bar,
    DeadLetter,
    EquityPoint,
    Fill,
    Liquidation,
    Order,
    OrderDenied,
    OrderExpired,
    PositionSnapshot,
    Signal,
)
from tests.operators.opdata import real_bars
from tests.operators.test_op_account_trader import T0, M, config, merged, risk_only

SYMBOLS = ("BTCUSDT", "ETHUSDT")
REL = 1e-9  # float slack of an independent recomputation

# --- drawing scenarios ----------------------------------------------------------------------------


@st.composite
def prices(draw: st.DrawFn, n: int) -> dict[str, list[Bar]]:
    """n bars per symbol: a window of the real Jan-2024 bars, or a random walk."""
    if draw(st.booleans()):
        k = draw(st.integers(0, 40_000))
        return {s: list(real_bars(s)[k : k + n]) for s in SYMBOLS}
    out: dict[str, list[Bar]] = {}
    for s, p0 in zip(SYMBOLS, (40_000.0, 2_000.0), strict=True):
        sigma = draw(st.sampled_from([0.0005, 0.003, 0.01]))
        steps = draw(st.lists(st.floats(-3.0, 3.0), min_size=n, max_size=n))
        vols = draw(st.lists(st.floats(0.5, 50.0), min_size=n, max_size=n))
        bars, last = [], p0
        for i, (z, v) in enumerate(zip(steps, vols, strict=True)):
            close = round(last * math.exp(sigma * z), 2)
            wick = abs(close - last) * 0.5 + last * sigma * 0.3
            ts = T0 + i * M
            bars.append(
                Bar(s, ts, ts + M, last, max(last, close) + wick, min(last, close) - wick, close, v)
            )
            last = close
        out[s] = bars
    return out


def _limit(draw: st.DrawFn, lo: float, hi: float) -> float:
    return round(draw(st.floats(lo, hi)), 4)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Config, list[Decision]]:
    n = draw(st.integers(30, 120))
    bars = draw(prices(n))
    decisions: list[Decision] = []
    for s in SYMBOLS:
        dirs = draw(st.lists(st.sampled_from([None, None, None, -1, 0, 1]), min_size=n, max_size=n))
        decisions += [
            (b, None if d is None else Signal(s, b.ts_close, b.ts_init, "p", d))
            for b, d in zip(bars[s], dirs, strict=True)
        ]
    kind = draw(st.sampled_from(["spot", "margin"]))
    lev = 1.0 if kind == "spot" else draw(st.sampled_from([1.0, 2.0, 5.0]))
    checks: dict[str, dict[str, Any]] = {}
    for key, section, lo, hi in (
        ("max_pct", "max_position_pct", 0.01, 1.5),
        ("max_leverage", "max_leverage", 0.05, 5.0),
        ("max_pct", "gross_exposure", 0.02, 3.0),
        ("max_pct", "net_exposure", 0.02, 3.0),
        ("max_notional", "max_order_notional", 1_000.0, 2_000_000.0),
        ("max_pct", "per_asset_cap", 0.01, 2.0),
    ):
        if draw(st.booleans()):
            checks[section] = {key: _limit(draw, lo, hi)}
    if draw(st.booleans()):
        checks["max_open_positions"] = {"max_positions": draw(st.integers(1, 2))}
    if draw(st.booleans()):
        checks["max_trades_per_day"] = {"max_trades": draw(st.integers(1, 6))}
    keep = ["min_notional", "lot_tick", "price_band"]
    keep += draw(
        st.lists(st.sampled_from(["stop_loss", "take_profit", "trailing_stop"]), unique=True)
    )
    keep += draw(
        st.lists(
            st.sampled_from(["max_daily_loss", "drawdown_breaker", "loss_cooldown"]), unique=True
        )
    )
    sizing: dict[str, Any] = {"mode": "fraction", "fraction": _limit(draw, 0.02, min(lev, 1.5))}
    if draw(st.booleans()):
        sizing = {"mode": "fixed_notional", "notional": _limit(draw, 3.0, 300_000.0)}
    execution = {
        "slippage_bps": draw(st.sampled_from([0.0, 2.0])),
        "k_size_bps": 0.0,
        "k_vol_bps": 0.0,
        "latency_ms": draw(st.sampled_from([0.0, 90_000.0])),
        # a quote-budget fill does not say on the wire whether the volume cut it short
        "max_volume_share": math.inf
        if kind == "spot"
        else draw(st.sampled_from([math.inf, 0.25, 0.01])),
    }
    portfolio: dict[str, Any] = {"kind": kind, "max_leverage": lev, "maintenance_rate": 0.0}
    if kind == "margin":
        portfolio["maintenance_rate"] = draw(st.sampled_from([0.0, 0.1 / lev]))
    cfg = config(
        symbols=list(SYMBOLS),
        strategy={"long_only": kind == "spot"},
        portfolio=portfolio,
        sizing=sizing,
        execution=execution,
        risk=risk_only(*keep, **checks),
    )
    return cfg, merged(decisions)


# --- the independent checker ----------------------------------------------------------------------


def _within(value: float, limit: float) -> bool:
    return value <= limit * (1.0 + REL) + 1e-12


def check(cfg: Config, items: list[Decision], out: list[Any]) -> int:
    """Assert the properties over one run's output; returns how many risk-adding orders it
    checked."""
    r = cfg.risk
    fee = cfg.execution.fee_bps * 1e-4
    lots = {s: cfg.markets[s].lot_size for s in SYMBOLS}
    closes_at: dict[int, list[Bar]] = defaultdict(list)
    for b, _ in items:
        closes_at[b.ts_close].append(b)
    book: dict[str, float] = defaultdict(float)
    marks: dict[str, float] = {}
    working: dict[
        str, list[Any]
    ] = {}  # market order id -> [symbol, side, leaves qty, leaves quote]
    seen_ids: dict[str, str] = {}  # intent id -> "order" | "denied"
    trades: dict[int, int] = defaultdict(int)
    equity = cfg.portfolio.initial_cash
    checked = 0
    for m in out:
        t = type(m)
        assert t is not DeadLetter, m  # no fill the account could not hold
        if t is Fill:
            book[m.symbol] += m.qty if m.side == "buy" else -m.qty
            w = working.get(m.order_id)
            if w is not None:
                if w[2] > 0.0:
                    w[2] -= m.qty
                    if w[2] <= 1e-12 * m.qty:
                        del working[m.order_id]
                else:  # a budget fills once when no volume cap binds (spot draws no cap)
                    del working[m.order_id]
        elif t is Liquidation:
            book[m.symbol] = 0.0
        elif t is OrderExpired:
            working.pop(m.order_id, None)
        elif t is EquityPoint:
            equity = m.equity
            for b in closes_at[m.ts_event]:
                marks[b.symbol] = b.close
            if cfg.portfolio.kind == "spot":
                assert m.cash >= -1e-12 * cfg.portfolio.initial_cash, m
        elif t is PositionSnapshot and cfg.portfolio.kind == "spot":
            assert m.cash >= -1e-12 * cfg.portfolio.initial_cash, m
            assert m.qty >= 0.0, m
        elif t is OrderDenied:
            assert m.intent_id not in seen_ids, m
            seen_ids[m.intent_id] = "denied"
        elif t is Order:
            if m.order_id in seen_ids:  # an exit amended in place: same id, a resting type
                assert seen_ids[m.order_id] == "order" and m.order_type != "market", m
                continue
            seen_ids[m.order_id] = "order"
            sym, price = m.symbol, marks[m.symbol]
            if m.qty > 0.0:
                qty = m.qty
            else:
                qty = (
                    math.floor(m.quote_budget / (price * (1.0 + fee)) / lots[sym] + 1e-9)
                    * lots[sym]
                )
            pend: dict[str, float] = defaultdict(float)
            for s, side, lq, lb in working.values():
                q = lq if lq > 0.0 else lb / (marks[s] * (1.0 + fee))
                pend[s] += q if side == "buy" else -q
            pre = {s: book[s] + pend[s] for s in SYMBOLS}
            q0 = pre[sym]
            q1 = q0 + (qty if m.side == "buy" else -qty)
            reduces = q0 != 0.0 and q0 * q1 >= 0.0 and abs(q1) < abs(q0)
            if m.order_type == "market":
                working[m.order_id] = [sym, m.side, m.qty, m.quote_budget]
            if reduces:
                continue
            assert m.cause == "signal", m  # exits, halts and flattens only ever reduce
            checked += 1
            post = dict(pre)
            post[sym] = q1
            values = {s: q * (price if s == sym else marks.get(s, 0.0)) for s, q in post.items()}
            gross = sum(abs(v) for v in values.values())
            net = sum(values.values())
            notional = m.quote_budget if m.quote_budget > 0.0 else m.qty * price
            own = abs(values[sym]) / equity
            day = (m.ts_event - 1) // NS_PER_DAY
            trades[day] += 1
            if r.max_order_notional.enabled:
                assert _within(notional, r.max_order_notional.max_notional), m
            if r.max_position_pct.enabled:
                assert _within(own, r.max_position_pct.max_pct), (m, own)
            if r.per_asset_cap.enabled:  # BTC and ETH: one market each
                assert _within(own, r.per_asset_cap.max_pct), (m, own)
            if r.max_leverage.enabled:
                assert _within(gross / equity, r.max_leverage.max_leverage), (m, gross)
            if r.gross_exposure.enabled:
                assert _within(gross / equity, r.gross_exposure.max_pct), (m, gross)
            if r.net_exposure.enabled:
                assert _within(abs(net) / equity, r.net_exposure.max_pct), (m, net)
            if r.max_open_positions.enabled:
                n_open = sum(1 for q in post.values() if abs(q) > 1e-12)
                assert n_open <= r.max_open_positions.max_positions, (m, post)
            if r.max_trades_per_day.enabled:
                assert trades[day] <= r.max_trades_per_day.max_trades, m
    # every intent is one Order or one OrderDenied: ids are each symbol's 1..n, no gap
    for s in SYMBOLS:
        ns = sorted(int(i.rsplit("-", 1)[1]) for i in seen_ids if i.startswith(f"{s}-"))
        assert ns == list(range(1, len(ns) + 1)), (s, ns)
    return checked


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sc=scenarios())
def test_no_approved_order_breaches_a_configured_limit(sc: tuple[Config, list[Decision]]) -> None:
    cfg, items = sc
    tr = new_trader(cfg, list(SYMBOLS))
    out = tr.update(items) + tr.flush()
    check(cfg, items, out)


def test_the_checker_sees_risk_adding_orders_and_catches_a_breach() -> None:
    """The property is not vacuous: on a fixed busy scenario it checks many entries, and the
    same output judged against a tighter limit than the trader had fails."""
    bars = {s: list(real_bars(s)[:400]) for s in SYMBOLS}
    items = merged(
        [
            (b, Signal(s, b.ts_close, b.ts_init, "p", (1, -1, 0)[i % 3]) if i % 7 == 0 else None)
            for s in SYMBOLS
            for i, b in enumerate(bars[s])
        ]
    )
    cfg = config(
        symbols=list(SYMBOLS),
        execution={"max_volume_share": 0.25},
        risk=risk_only("min_notional", "lot_tick", gross_exposure={"max_pct": 0.12}),
    )
    out = new_trader(cfg, list(SYMBOLS)).update(items)
    assert check(cfg, items, out) > 20
    assert any(type(m) is OrderDenied and m.rule == "gross_exposure" for m in out)
    tighter = config(
        symbols=list(SYMBOLS),
        execution={"max_volume_share": 0.25},
        risk=risk_only("min_notional", "lot_tick", gross_exposure={"max_pct": 0.05}),
    )
    try:
        check(tighter, items, out)
    except AssertionError:
        return
    raise AssertionError("a 5% gross limit was not breached by 8% entries")
