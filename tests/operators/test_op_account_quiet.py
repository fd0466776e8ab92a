"""Quiet steps booked in one pass (operators/account_quiet.py) equal booking every step one at a
time: the same messages, in the same order, with the same floats, and the same state after, for
every account profile and any batching of the input."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.trader import new_trader
from operators import account_quiet, account_trader
from operators.account_trader import AccountTrader, Decision
from schemas.blocks import RowBlock, expand
from schemas.messages import Bar, EquityPoint, HaltTrading
from tests.operators.opdata import real_bars
from tests.operators.test_op_account_trader import (
    EXACT,
    config,
    merged,
    risk_only,
    sma_decisions,
    spot,
)

N = 4_000


def _plain(x: Any) -> Any:
    """Objects as nested plain data (floats compared exactly, NaN equal to NaN)."""
    if isinstance(x, float):
        return ("nan",) if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, deque, set, frozenset)):
        items = sorted(x, key=repr) if isinstance(x, (set, frozenset)) else x
        return (type(x).__name__, [_plain(v) for v in items])
    if hasattr(x, "__dict__") and not callable(x):
        return (type(x).__name__, _plain(vars(x)))
    return x


def _state(tr: AccountTrader) -> Any:
    """Everything the trader holds but the switch under test."""
    return _plain({k: v for k, v in vars(tr).items() if k not in ("batch_quiet", "columnar")})


def _profiles() -> dict[str, Callable[[Sequence[str]], AccountTrader]]:
    return {
        "plain spot": lambda syms: spot(syms, cash=1_000_000.0),
        "sma_cross.toml": lambda syms: new_trader(config("sma_cross", symbols=list(syms)), syms),
        "vol-target sizing": lambda syms: new_trader(
            config(
                "sma_cross",
                symbols=list(syms),
                sizing={"mode": "vol_target", "target_vol": 0.01, "vol_window": 30},
            ),
            syms,
        ),
        "margin, every rule": lambda syms: new_trader(
            config(symbols=list(syms), execution=EXACT), syms
        ),
        "margin, risk off": lambda syms: new_trader(
            config(symbols=list(syms), execution=EXACT, risk={"enabled": False}), syms
        ),
        "margin, drawdown only": lambda syms: new_trader(
            config(symbols=list(syms), execution=EXACT, risk=risk_only("drawdown_breaker")),
            syms,
        ),
    }


def _decisions(symbols: Sequence[str], fast: int, slow: int, k: int = 0) -> list[Decision]:
    return merged(*(sma_decisions(real_bars(s)[k : k + N], fast, slow) for s in symbols))


def _run(tr: AccountTrader, items: Sequence[Any], cuts: Sequence[int], quiet: bool) -> list[Any]:
    tr.batch_quiet = quiet
    out: list[Any] = []
    lo = 0
    for hi in [*cuts, len(items)]:
        out += tr.update(items[lo:hi])
        lo = hi
    return out + tr.flush()


@pytest.mark.parametrize("columnar", [False, True])
@pytest.mark.parametrize("profile", list(_profiles()))
@pytest.mark.parametrize("symbols", [("BTCUSDT",), ("BTCUSDT", "ETHUSDT")])
def test_quiet_steps_in_one_pass_equal_one_at_a_time(
    profile: str, symbols: tuple[str, ...], columnar: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Columnar (the flow's setting): a quiet run's points come as one RowBlock, whose rows
    are exactly the points booked one step at a time."""
    booked: list[int] = []

    def counting(tr: AccountTrader, steps: Sequence[list[Decision]], out: list[Any]) -> None:
        booked.append(len(steps))
        account_quiet.book_quiet(tr, steps, out)

    monkeypatch.setattr(account_trader, "book_quiet", counting)
    make = _profiles()[profile]
    items = _decisions(symbols, 5, 40)
    a, b = make(symbols), make(symbols)
    a.columnar = columnar
    fast, slow = _run(a, items, [777, 3_001], True), _run(b, items, [], False)
    n_blocks = sum(type(m) is RowBlock for m in fast)
    assert n_blocks == (len(booked) if columnar else 0)
    fast = list(expand(fast))
    assert fast == slow
    assert any(type(m).__name__ == "Fill" for m in fast)
    if profile in ("margin, every rule", "margin, drawdown only"):
        assert not booked  # a breaker watches every close: no step is quiet
    elif profile == "margin, risk off":  # long or short nearly always: only flat steps
        assert booked
    else:
        assert sum(booked) > N // 2  # most steps decide nothing
    assert sum(type(m) is EquityPoint for m in fast) == N  # one point per open time
    assert _state(a) == _state(b)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(_profiles())),
    st.integers(0, 30_000),
    st.lists(st.integers(0, 2 * N), max_size=6),
    st.booleans(),
)
def test_any_batching_and_a_halt_command_give_the_same_books(
    profile: str, k: int, cuts: list[int], halt: bool
) -> None:
    symbols = ("BTCUSDT", "ETHUSDT")
    items: list[Any] = _decisions(symbols, 3, 12, k)[: 2 * N]
    if halt:  # a command mid-stream bounds a quiet run (and moves the trading state)
        t = items[len(items) // 2][0].ts_event
        items.insert(len(items) // 2, HaltTrading("kill-1", t, t, "test"))
    make = _profiles()[profile]
    a, b = make(symbols), make(symbols)
    cuts = sorted(min(c, len(items)) for c in cuts)
    assert _run(a, items, cuts, True) == _run(b, items, [], False)
    assert _state(a) == _state(b)


def test_a_bad_close_inside_a_quiet_run_is_refused_as_one_step_at_a_time_would() -> None:
    bars = list(real_bars("BTCUSDT")[:200])
    b = bars[150]
    bad = Bar(b.symbol, b.ts_event, b.ts_close, b.open, b.high, b.low, math.nan, b.volume)
    items = [(x, None) for x in [*bars[:150], bad, *bars[151:]]]
    errors, states = [], []
    for quiet in (True, False):
        tr = spot(("BTCUSDT",), cash=1_000.0)
        tr.batch_quiet = quiet
        with pytest.raises(ValueError, match="mark price must be > 0") as exc:
            tr.update(items)
        errors.append(str(exc.value))
        states.append(_state(tr))
    assert errors[0] == errors[1]
    assert states[0] == states[1]
