"""The trading state machine: ACTIVE -> REDUCING -> HALTED on system-tier breaches and the kill
switch, flattening every open position when configured; a black-swan REDUCING ends by itself
when the volatility is back within k, a HALT never does."""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import Any

import pytest

from operators.risk.context import MarketView, RiskContext
from operators.risk.engine import RiskEngine
from operators.risk.state import Mode, TradingState, TradingStateChanged
from tests.operators.test_op_risk_rules import MIN, T0

# -- trading state machine ----------------------------------------------------------------------

BOOK = {"BTCUSDT": 0.5, "ETHUSDT": -2.0, "SOLUSDT": 0.0}
MARKS = {"BTCUSDT": 40_000.0, "ETHUSDT": 2_000.0, "SOLUSDT": 100.0}


def book_ctx(**kw: Any) -> RiskContext:
    market = {s: MarketView(last_price=p, last_bar_ts=T0 - MIN) for s, p in MARKS.items()}
    base: dict[str, Any] = dict(
        equity=100_000.0, sod_equity=100_000.0, peak_equity=100_000.0, market=market
    )
    base.update(kw)
    return RiskContext.build(
        ts=T0, symbol="BTCUSDT", side="buy", qty=0.0, price=40_000.0,
        positions=BOOK, marks=MARKS, **base,
    )  # fmt: skip


def _flatten_matches_book(exits: tuple[Any, ...]) -> None:
    assert [(x.symbol, x.side, x.qty) for x in exits] == [
        ("BTCUSDT", "sell", 0.5),
        ("ETHUSDT", "buy", 2.0),
    ]


def test_state_healthy_bar_changes_nothing() -> None:
    s = TradingState()
    t = s.observe(book_ctx())
    assert t.events == () and t.exits == () and s.mode is Mode.ACTIVE
    assert not s.reduce_only("BTCUSDT")


def test_kill_switch_halts_within_the_call_and_flattens() -> None:
    s = TradingState()
    t = s.halt(T0, "operator", BOOK, MARKS)
    assert t.events == (TradingStateChanged(T0, Mode.ACTIVE, Mode.HALTED, "kill switch: operator"),)
    assert s.mode is Mode.HALTED and all(s.reduce_only(x) for x in MARKS)
    _flatten_matches_book(t.exits)
    assert all(x.ts == T0 and x.rule == "halt" for x in t.exits)
    assert t.exits[0].ref_price == 40_000.0
    # the engine then lets the closing orders through and refuses new risk
    eng = RiskEngine()
    for x in t.exits:
        close = replace(
            book_ctx(reduce_only=s.reduce_only(x.symbol)),
            symbol=x.symbol, side=x.side, qty=x.qty, price=x.ref_price,
            notional=x.qty * x.ref_price,
        )  # fmt: skip
        assert close.reduces_risk and eng.check(close) is None
    adding = replace(book_ctx(reduce_only=True), qty=0.001, notional=40.0)
    assert "reduce_only" in [d.rule for d in eng.check_all(adding)]
    assert s.halt(T0 + 1, "again", BOOK, MARKS).events == ()  # already halted
    assert s.resume(T0 + 2, "ok").events[0].new is Mode.ACTIVE and s.mode is Mode.ACTIVE


def test_drawdown_halts_and_flattens_once() -> None:
    s = TradingState()
    t = s.observe(book_ctx(equity=94_000.0))
    assert [(e.old, e.new) for e in t.events] == [(Mode.ACTIVE, Mode.HALTED)]
    assert "drawdown" in t.events[0].reason and "drawdown" in s.reason
    _flatten_matches_book(t.exits)
    assert s.observe(book_ctx(equity=90_000.0)) == type(t)()  # no repeat
    assert s.observe(book_ctx()).events == ()  # does not re-arm by itself


def test_flatten_on_halt_off() -> None:
    s = TradingState(flatten_on_halt=False)
    assert s.halt(T0, "x", BOOK, MARKS).exits == () and s.mode is Mode.HALTED
    _flatten_matches_book(s.flatten(T0, BOOK, MARKS, "manual"))


def _swan_ctx(**kw: Any) -> RiskContext:
    c = book_ctx(**kw)
    m = dict(c.market)
    m["SOLUSDT"] = replace(m["SOLUSDT"], realized_vol=0.05, normal_vol=0.01)
    return replace(c, market=m)


def test_black_swan_reduces_then_drawdown_halts() -> None:
    s = TradingState()
    t = s.observe(_swan_ctx())
    assert [(e.old, e.new, e.symbol) for e in t.events] == [(Mode.ACTIVE, Mode.REDUCING, None)]
    assert t.exits == () and s.reduce_only("BTCUSDT")
    assert s.observe(_swan_ctx()).events == ()  # already reducing
    t = s.observe(_swan_ctx(equity=90_000.0))
    assert [(e.old, e.new) for e in t.events] == [(Mode.REDUCING, Mode.HALTED)]
    _flatten_matches_book(t.exits)


def test_black_swan_can_halt() -> None:
    s = TradingState(black_swan_action=Mode.HALTED)
    t = s.observe(_swan_ctx())
    assert [e.new for e in t.events] == [Mode.HALTED] and len(t.exits) == 2
    with pytest.raises(ValueError):
        TradingState(black_swan_action=Mode.ACTIVE)


def test_stale_symbol_is_reduce_only_until_fresh() -> None:
    s = TradingState()
    c = book_ctx()
    m = dict(c.market)
    m["ETHUSDT"] = replace(m["ETHUSDT"], last_bar_ts=T0 - 10 * MIN)
    t = s.observe(replace(c, market=m))
    assert [(e.old, e.new, e.symbol) for e in t.events] == [(Mode.ACTIVE, Mode.REDUCING, "ETHUSDT")]
    assert s.mode is Mode.ACTIVE and s.reduce_only("ETHUSDT") and not s.reduce_only("BTCUSDT")
    assert s.observe(replace(c, market=m)).events == ()
    t = s.observe(c)
    assert [(e.old, e.new, e.symbol) for e in t.events] == [(Mode.REDUCING, Mode.ACTIVE, "ETHUSDT")]
    assert not s.reduce_only("ETHUSDT")


def test_state_pickles_mid_run() -> None:
    s = TradingState()
    s.observe(_swan_ctx())
    clone = pickle.loads(pickle.dumps(s))
    assert clone.mode is Mode.REDUCING and clone.reason == s.reason
    assert clone.observe(_swan_ctx(equity=90_000.0)).events[0].new is Mode.HALTED


def _vol_ctx(ratio: float, symbol: str = "SOLUSDT", **kw: Any) -> RiskContext:
    """The book with `symbol`'s realized volatility at `ratio` x its normal level (0.25)."""
    c = book_ctx(**kw)
    m = dict(c.market)
    m[symbol] = replace(m[symbol], realized_vol=0.25 * ratio, normal_vol=0.25)
    return replace(c, market=m)


def test_black_swan_reducing_ends_when_the_ratio_is_back_within_k() -> None:
    s = TradingState()  # k = 3
    t = s.observe(_vol_ctx(3.5))
    assert [(e.old, e.new) for e in t.events] == [(Mode.ACTIVE, Mode.REDUCING)]
    assert "3.50x normal exceeds 3x" in t.events[0].reason and s.swan
    assert s.observe(_vol_ctx(3.0001)).events == ()  # still above k: still reducing
    assert s.mode is Mode.REDUCING and s.reduce_only("BTCUSDT")
    t = s.observe(_vol_ctx(3.0))  # back to k exactly: within the limit (ratio <= k passes)
    assert t.events == (
        TradingStateChanged(
            T0, Mode.REDUCING, Mode.ACTIVE, "volatility back within the black-swan limit"
        ),
    )
    assert t.exits == () and s.mode is Mode.ACTIVE and s.reason == "" and not s.swan
    assert not s.reduce_only("BTCUSDT")
    assert s.observe(_vol_ctx(1.0)).events == ()  # one event, not one per calm bar


def test_black_swan_reducing_waits_for_every_symbol() -> None:
    s = TradingState()
    s.observe(_vol_ctx(4.0, "SOLUSDT"))
    both = _vol_ctx(4.0, "ETHUSDT")  # SOL calm again, ETH now wild
    assert s.observe(both).events == () and s.mode is Mode.REDUCING
    assert [e.new for e in s.observe(_vol_ctx(1.0)).events] == [Mode.ACTIVE]


def test_halted_never_ends_by_itself() -> None:
    s = TradingState()
    s.observe(book_ctx(equity=94_000.0))  # drawdown 6% > 5%
    assert s.mode is Mode.HALTED
    for ctx in (book_ctx(), _vol_ctx(1.0), book_ctx(equity=120_000.0, peak_equity=120_000.0)):
        assert s.observe(ctx).events == ()
    assert s.mode is Mode.HALTED
    # a black swan configured to halt stays halted when the volatility calms
    h = TradingState(black_swan_action=Mode.HALTED)
    assert [e.new for e in h.observe(_vol_ctx(5.0)).events] == [Mode.HALTED]
    assert h.observe(_vol_ctx(1.0)).events == () and h.mode is Mode.HALTED and not h.swan
    # a swan REDUCING that a drawdown escalates to HALTED does not clear with the volatility
    r = TradingState()
    r.observe(_vol_ctx(5.0))
    assert [e.new for e in r.observe(_vol_ctx(5.0, equity=90_000.0)).events] == [Mode.HALTED]
    assert r.observe(_vol_ctx(1.0)).events == () and r.mode is Mode.HALTED


def test_resume_clears_the_black_swan_flag() -> None:
    s = TradingState()
    s.observe(_vol_ctx(5.0))
    t = s.resume(T0 + 1, "operator")
    assert [(e.old, e.new, e.reason) for e in t.events] == [
        (Mode.REDUCING, Mode.ACTIVE, "resume: operator")
    ]
    assert s.mode is Mode.ACTIVE and not s.swan
    assert s.observe(_vol_ctx(1.0)).events == ()  # no second "back to active"
    # a new swan after the resume reduces again, and clears again
    assert [e.new for e in s.observe(_vol_ctx(5.0)).events] == [Mode.REDUCING]
    assert [e.new for e in s.observe(_vol_ctx(2.0)).events] == [Mode.ACTIVE]
    assert s.resume(T0 + 2, "noop").events == ()  # resuming an active account: nothing
