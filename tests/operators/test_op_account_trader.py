"""AccountTrader: release order, held bars, reserved cash, pickling (docs/adr/0009)."""

from __future__ import annotations

import pickle

import pytest

from operators.account_trader import AccountTrader
from operators.risk import MaxPositionNotional
from operators.sizing import FractionOfEquity
from schemas.messages import NS_PER_MINUTE, Bar, EquityPoint, Fill, Order, Signal

T0 = 1_700_000_000 * 1_000_000_000


def _bar(sym: str, i: int, px: float) -> Bar:
    ts = T0 + i * NS_PER_MINUTE
    return Bar(sym, ts, ts + NS_PER_MINUTE, px, px, px, px, 1.0)


def _sig(bar: Bar, d: int) -> Signal:
    return Signal(bar.symbol, bar.ts_close, bar.ts_init, "s", d, 0.0, "")


def _trader(fraction: float = 1.0) -> AccountTrader:
    return AccountTrader(
        ["ETHUSDT", "BTCUSDT"],
        1_000.0,
        FractionOfEquity(fraction),
        [MaxPositionNotional(1e12)],
        10.0,
        0.0,
    )


def test_bars_wait_for_every_symbol_then_release_in_time_then_symbol_order() -> None:
    tr = _trader()
    assert tr.update([(_bar("ETHUSDT", i, 10.0), None) for i in range(3)]) == []
    assert tr.held == 3
    out = tr.update([(_bar("BTCUSDT", 1, 100.0), None)])  # BTC starts at minute 1
    pts = [m for m in out if isinstance(m, EquityPoint)]
    # minute 0 (ETH only) and minute 1 (both) released; ETH minute 2 waits for BTC
    assert [p.ts_event for p in pts] == [T0 + NS_PER_MINUTE, T0 + 2 * NS_PER_MINUTE]
    assert tr.held == 1
    out = tr.flush()
    assert [m.ts_event for m in out if isinstance(m, EquityPoint)] == [T0 + 3 * NS_PER_MINUTE]
    assert tr.held == 0


def test_all_in_second_symbol_gets_no_budget_and_cash_is_reserved() -> None:
    tr = _trader(1.0)
    b0, e0 = _bar("BTCUSDT", 0, 100.0), _bar("ETHUSDT", 0, 10.0)
    out = tr.update([(e0, _sig(e0, 1)), (b0, _sig(b0, 1))])
    orders = [m for m in out if isinstance(m, Order)]
    assert [o.symbol for o in orders] == ["BTCUSDT"]  # symbol order; ETH finds no free cash
    assert orders[0].quote_budget == 1_000.0
    out = tr.update([(_bar("BTCUSDT", 1, 100.0), None), (_bar("ETHUSDT", 1, 10.0), None)])
    fills = [m for m in out if isinstance(m, Fill)]
    assert len(fills) == 1 and fills[0].qty * fills[0].price + fills[0].fee == pytest.approx(1e3)
    assert tr.account.cash == pytest.approx(0.0, abs=1e-9)


def test_half_fractions_hold_two_positions() -> None:
    tr = _trader(0.5)
    b0, e0 = _bar("BTCUSDT", 0, 100.0), _bar("ETHUSDT", 0, 10.0)
    orders = [m for m in tr.update([(b0, _sig(b0, 1)), (e0, _sig(e0, 1))]) if type(m) is Order]
    assert [(o.symbol, o.quote_budget) for o in orders] == [("BTCUSDT", 500.0), ("ETHUSDT", 500.0)]


def test_unknown_symbol_and_rewind_are_refused() -> None:
    tr = _trader()
    with pytest.raises(ValueError, match="not one of the account"):
        tr.update([(_bar("SOLUSDT", 0, 1.0), None)])
    tr.update([(_bar("BTCUSDT", 1, 1.0), None)])
    with pytest.raises(ValueError, match="not after"):
        tr.update([(_bar("BTCUSDT", 1, 1.0), None)])


def test_pickle_mid_stream_continues_identically() -> None:
    bars = [
        (_bar(s, i, 100.0 + i if s == "BTCUSDT" else 10.0 - i * 0.01), None)
        for i in range(20)
        for s in ("BTCUSDT", "ETHUSDT")
    ]
    bars = [
        (b, _sig(b, 1 if i % 6 == 0 else -1) if i % 3 == 0 else None)
        for i, (b, _) in enumerate(bars)
    ]
    a = _trader(0.5)
    full = a.update(bars) + a.flush()
    b = _trader(0.5)
    head = b.update(bars[:17])
    b = pickle.loads(pickle.dumps(b))
    assert head + b.update(bars[17:]) + b.flush() == full


def test_a_stale_symbol_stops_holding_the_account_and_is_booked_when_it_returns() -> None:
    """Live: ETH sends nothing; once the caller marks it stale, BTC trades on the whole account
    exactly as a BTC-only account would; a late ETH bar un-stales ETH and is booked on arrival."""
    alone = AccountTrader(["BTCUSDT"], 1_000.0, FractionOfEquity(1.0), [], 10.0, 0.0)
    tr = _trader()
    btc = [_bar("BTCUSDT", i, 100.0 + i) for i in range(6)]
    decisions = [(b, _sig(b, 1) if i == 1 else None) for i, b in enumerate(btc)]
    assert tr.update(decisions[:3]) == []  # held for ETH
    assert tr.held == 3
    got = tr.release_stale(["ETHUSDT"]) + tr.update(decisions[3:])
    want = alone.update(decisions)
    assert got == want and any(isinstance(m, Fill) for m in got)
    assert tr.held == 0 and tr.stale == {"ETHUSDT"}
    late = tr.update([(_bar("ETHUSDT", 2, 10.0), None)])  # older than what was released
    assert [p.ts_event for p in late if isinstance(p, EquityPoint)] == [T0 + 3 * NS_PER_MINUTE]
    assert tr.stale == set()
    # ETH is live again: BTC waits for it once more.
    assert tr.update([(_bar("BTCUSDT", 6, 106.0), None)]) == []
    assert tr.held == 1
