"""AccountTrader basics (operators/account_trader.py, docs/adr/0009): the release order across
symbols, spot all-in and shared cash, sells of the whole position, flush, stale release,
determinism and pickling, and the sizing modes as the account step turns them into orders.
Risk wiring: test_op_trader_risk.py, resting exits: test_op_brackets.py, properties:
test_op_trader_properties.py. Helpers here are shared by those files."""

from __future__ import annotations

import math
import pickle
import statistics
import tomllib
from collections.abc import Sequence
from typing import Any, TypeVar

import pytest

from dataflows.trader import new_trader
from operators.account import Account
from operators.account_trader import AccountTrader, Decision
from operators.execution_sim import ExecutionSim, SimConfig
from operators.sizing import FractionOfEquity
from operators.strategy_sma_cross import SmaCross
from schemas.config import Config
from schemas.messages import (
    NS_PER_MINUTE,
    Bar,
    DeadLetter,
    EquityPoint,
    Fill,
    Order,
    OrderDenied,
    OrderExpired,
    PositionSnapshot,
    Signal,
)
from schemas.risk_config import CHECK_SECTIONS, EXIT_SECTIONS
from tests.operators.opdata import real_bars
from tests.paths import ROOT

T0 = 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC
M = NS_PER_MINUTE
X = TypeVar("X")

# --- helpers (shared with the other trader test files) --------------------------------------------


def bar(
    sym: str,
    i: int,
    close: float,
    *,
    o: float | None = None,
    h: float | None = None,
    lo: float | None = None,
    v: float = 1e6,
) -> Bar:
    """Minute i after T0; open defaults to the close, high/low to the body."""
    ts = T0 + i * M
    op = close if o is None else o
    high = max(op, close) if h is None else h
    low = min(op, close) if lo is None else lo
    return Bar(sym, ts, ts + M, op, high, low, close, v)


def sig(b: Bar, direction: int) -> Decision:
    return b, Signal(b.symbol, b.ts_close, b.ts_init, "test", direction)


def of(out: Sequence[Any], cls: type[X]) -> list[X]:
    return [m for m in out if type(m) is cls]


def spot(
    symbols: Sequence[str] = ("ETHUSDT", "BTCUSDT"), cash: float = 1_000.0, fraction: float = 1.0
) -> AccountTrader:
    """The plain spot account: 10 bps taker fee, no volume cap, no risk."""
    sim = ExecutionSim(SimConfig(taker_fee_bps=10.0, max_volume_share=math.inf))
    return AccountTrader(
        symbols, Account("account", cash), sim=sim, sizer=FractionOfEquity(fraction)
    )


def _deep(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return out


def config(base: str = "risk_limits", **over: Any) -> Config:
    """An example config with sections merged key by key (`risk={"max_position_pct":
    {"max_pct": 0.1}}` changes that key only)."""
    raw = tomllib.loads((ROOT / "examples" / f"{base}.toml").read_text())
    return Config.model_validate(_deep(raw, over))


def risk_only(*keep: str, **values: dict[str, Any]) -> dict[str, Any]:
    """A `risk=` override with every check and exit off but `keep` (and `values`' sections)."""
    on = set(keep) | set(values)
    out: dict[str, Any] = {s: {"enabled": s in on} for s in (*CHECK_SECTIONS, *EXIT_SECTIONS)}
    for s, v in values.items():
        out[s] = {"enabled": True, **v}
    return out


# Fills at the bar's price: no slippage, no volume cap (fees stay at 10 bps).
EXACT = {"slippage_bps": 0.0, "k_size_bps": 0.0, "k_vol_bps": 0.0, "max_volume_share": math.inf}


def margin_trader(symbols: Sequence[str] = ("BTCUSDT",), **over: Any) -> AccountTrader:
    """examples/risk_limits.toml (5x margin, every rule on) with exact fills and `over`."""
    over["execution"] = {**EXACT, **over.get("execution", {})}
    return new_trader(config(symbols=list(symbols), **over), symbols)


def sma_decisions(bars: Sequence[Bar], fast: int = 10, slow: int = 50) -> list[Decision]:
    s = SmaCross(bars[0].symbol, fast, slow)
    return [(b, s.update(b)) for b in bars]


def merged(*per_symbol: Sequence[Decision]) -> list[Decision]:
    return sorted((d for ds in per_symbol for d in ds), key=lambda d: (d[0].ts_event, d[0].symbol))


# --- release order --------------------------------------------------------------------------------


def test_bars_wait_for_every_symbol_then_release_in_time_then_symbol_order() -> None:
    tr = spot()
    assert tr.update([(bar("ETHUSDT", i, 10.0), None) for i in range(3)]) == []
    assert tr.held == 3
    out = tr.update([(bar("BTCUSDT", 1, 100.0), None)])  # BTC starts at minute 1
    # minute 0 (ETH only) and minute 1 (both) released; ETH minute 2 waits for BTC
    assert [p.ts_event for p in of(out, EquityPoint)] == [T0 + M, T0 + 2 * M]
    assert tr.held == 1
    out = tr.flush()
    assert [p.ts_event for p in of(out, EquityPoint)] == [T0 + 3 * M]
    assert tr.held == 0
    # the final positions of every symbol, with the account's cash
    snaps = of(out, PositionSnapshot)
    assert [(s.symbol, s.qty, s.cash, s.ts_event) for s in snaps] == [
        ("BTCUSDT", 0.0, 1_000.0, T0 + 2 * M),
        ("ETHUSDT", 0.0, 1_000.0, T0 + 3 * M),
    ]


def test_decisions_of_one_open_time_are_taken_in_symbol_order() -> None:
    """Given in ETH, BTC order, the account decides BTC first (the symbols' name order)."""
    tr = spot(fraction=0.5)
    b0, e0 = bar("BTCUSDT", 0, 100.0), bar("ETHUSDT", 0, 10.0)
    orders = of(tr.update([sig(e0, 1), sig(b0, 1)]), Order)
    assert [(o.symbol, o.order_id, o.quote_budget) for o in orders] == [
        ("BTCUSDT", "BTCUSDT-1", 500.0),
        ("ETHUSDT", "ETHUSDT-1", 500.0),
    ]
    assert all(o.ts_event == T0 + M and o.order_type == "market" for o in orders)


def test_unknown_symbol_and_rewind_are_refused() -> None:
    tr = spot()
    with pytest.raises(ValueError, match="not one of the account"):
        tr.update([(bar("SOLUSDT", 0, 1.0), None)])
    tr.update([(bar("BTCUSDT", 1, 1.0), None)])
    with pytest.raises(ValueError, match="not after"):
        tr.update([(bar("BTCUSDT", 1, 1.0), None)])
    with pytest.raises(ValueError, match="at least one symbol"):
        spot(symbols=())
    with pytest.raises(ValueError, match="margin account"):
        AccountTrader(["BTCUSDT"], Account("account", 1.0), allow_short=True)


def test_a_dead_letter_command_passes_through_unapplied() -> None:
    tr = spot()
    dl = DeadLetter(ts_init=1, source="control", reason="bad json", payload="{")
    assert tr.update([dl]) == [dl]
    assert tr.state.mode.value == "active"


# --- spot cash ------------------------------------------------------------------------------------


def test_all_in_takes_the_cash_and_the_second_symbol_gets_no_budget() -> None:
    tr = spot()
    b0, e0 = bar("BTCUSDT", 0, 100.0), bar("ETHUSDT", 0, 10.0)
    orders = of(tr.update([sig(e0, 1), sig(b0, 1)]), Order)
    # BTC decides first and reserves all the cash: ETH finds none free (no order, no denial)
    assert [(o.symbol, o.quote_budget, o.qty) for o in orders] == [("BTCUSDT", 1_000.0, 0.0)]
    out = tr.update([(bar("BTCUSDT", 1, 101.0, o=100.5), None), (bar("ETHUSDT", 1, 10.0), None)])
    (f,) = of(out, Fill)
    assert f.price == 100.5 and f.ts_event == T0 + M  # the next bar's open
    assert f.qty == pytest.approx(1_000.0 / (100.5 * 1.001), rel=1e-15)
    assert f.qty * f.price + f.fee == pytest.approx(1_000.0, rel=1e-12)
    assert f.fee == pytest.approx(f.qty * f.price * 0.001, rel=1e-15)
    assert tr.account.cash == pytest.approx(0.0, abs=1e-9)
    (pt,) = of(out, EquityPoint)
    assert pt.equity == pytest.approx(f.qty * 101.0, rel=1e-12)  # marked at the close


def test_a_fraction_never_spends_cash_reserved_by_another_symbol() -> None:
    tr = spot(fraction=0.6)
    b0, e0 = bar("BTCUSDT", 0, 100.0), bar("ETHUSDT", 0, 10.0)
    orders = of(tr.update([sig(b0, 1), sig(e0, 1)]), Order)
    assert [(o.symbol, o.quote_budget) for o in orders] == [
        ("BTCUSDT", 600.0),
        ("ETHUSDT", pytest.approx(400.0, rel=1e-15)),  # 1000 - 600 reserved
    ]
    out = tr.update([(bar("BTCUSDT", 1, 100.0), None), (bar("ETHUSDT", 1, 10.0), None)])
    assert [(f.symbol, f.qty) for f in of(out, Fill)] == [
        ("BTCUSDT", pytest.approx(600.0 / 100.1, rel=1e-15)),
        ("ETHUSDT", pytest.approx(400.0 / 10.01, rel=1e-12)),
    ]
    assert tr.account.cash == pytest.approx(0.0, abs=1e-9)


def test_a_sell_signal_closes_the_whole_position_and_a_repeat_buy_adds_nothing() -> None:
    tr = spot(symbols=["BTCUSDT"])
    tr.update([sig(bar("BTCUSDT", 0, 100.0), 1)])
    tr.update([(bar("BTCUSDT", 1, 100.0), None)])
    held = tr.account.qty("BTCUSDT")
    assert held > 0.0
    assert of(tr.update([sig(bar("BTCUSDT", 2, 105.0), 1)]), Order) == []  # no pyramiding
    (sell,) = of(tr.update([sig(bar("BTCUSDT", 3, 110.0), -1)]), Order)
    assert (sell.side, sell.qty, sell.quote_budget, sell.cause) == ("sell", held, 0.0, "signal")
    (f,) = of(tr.update([(bar("BTCUSDT", 4, 111.0, o=110.0), None)]), Fill)
    assert (f.side, f.qty, f.price) == ("sell", held, 110.0)
    assert tr.account.qty("BTCUSDT") == 0.0
    assert tr.account.cash == pytest.approx(held * 110.0 * 0.999, rel=1e-12)
    # flat and long-only: a sell signal (or no view) does nothing
    assert of(tr.update([sig(bar("BTCUSDT", 5, 111.0), -1)]), Order) == []
    assert of(tr.update([sig(bar("BTCUSDT", 6, 111.0), 0)]), Order) == []


def test_an_exit_signal_cancels_an_entry_that_has_not_filled() -> None:
    """90 s latency: an order decided at a close works from the 2nd open after it."""
    tr = margin_trader(strategy={"long_only": True}, execution={"latency_ms": 90_000.0})
    (entry,) = of(tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1)]), Order)
    out = tr.update([sig(bar("BTCUSDT", 1, 40_000.0), 0)])
    assert [(e.order_id, e.reason) for e in of(out, OrderExpired)] == [(entry.order_id, "canceled")]
    assert of(out, Order) == []
    out = tr.update([(bar("BTCUSDT", i, 40_000.0), None) for i in (2, 3, 4)])
    assert of(out, Fill) == [] and tr.account.qty("BTCUSDT") == 0.0


def test_a_buy_signal_while_the_close_works_keeps_the_long_as_it_is() -> None:
    tr = margin_trader(
        strategy={"long_only": True}, execution={"latency_ms": 90_000.0}, risk=risk_only()
    )
    tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1)])
    tr.update([(bar("BTCUSDT", i, 40_000.0), None) for i in (1, 2, 3)])  # fills at bar 3
    assert tr.account.qty("BTCUSDT") == 2.0
    (close,) = of(tr.update([sig(bar("BTCUSDT", 4, 40_000.0), 0)]), Order)
    out = tr.update([sig(bar("BTCUSDT", 5, 40_000.0), 1)])  # changed its mind: stay long
    assert [(e.order_id, e.reason) for e in of(out, OrderExpired)] == [(close.order_id, "canceled")]
    assert of(out, Order) == []  # no second entry on top of the long
    out = tr.update([(bar("BTCUSDT", i, 40_000.0), None) for i in (6, 7, 8, 9)])
    assert of(out, Fill) == [] and tr.account.qty("BTCUSDT") == 2.0


# --- live: stale symbols --------------------------------------------------------------------------


def test_a_stale_symbol_stops_holding_the_account_and_is_booked_when_it_returns() -> None:
    """Live: ETH sends nothing; once the caller marks it stale, BTC trades on the whole account
    exactly as a BTC-only account would; a late ETH bar un-stales ETH and is booked on arrival."""
    alone = spot(symbols=["BTCUSDT"])
    tr = spot()
    btc = [bar("BTCUSDT", i, 100.0 + i) for i in range(6)]
    decisions = [sig(b, 1) if i == 1 else (b, None) for i, b in enumerate(btc)]
    assert tr.update(decisions[:3]) == []  # held for ETH
    assert tr.held == 3
    got = tr.release_stale(["ETHUSDT"]) + tr.update(decisions[3:])
    want = alone.update(decisions)
    assert got == want and of(got, Fill)
    assert tr.held == 0 and tr.stale == {"ETHUSDT"}
    late = tr.update([(bar("ETHUSDT", 2, 10.0), None)])  # older than what was released
    assert [p.ts_event for p in of(late, EquityPoint)] == [T0 + 3 * M]
    assert tr.stale == set()
    # ETH is live again: BTC waits for it once more.
    assert tr.update([(bar("BTCUSDT", 6, 106.0), None)]) == []
    assert tr.held == 1
    assert tr.release_stale(["XRPUSDT"]) == [] and tr.stale == set()  # not ours: ignored


# --- determinism ----------------------------------------------------------------------------------


def _real_decisions(n: int = 6_000) -> list[Decision]:
    return merged(
        sma_decisions(real_bars("BTCUSDT")[:n], 5, 20),
        sma_decisions(real_bars("ETHUSDT")[:n], 5, 20),
    )


def test_same_input_twice_gives_identical_output() -> None:
    items = _real_decisions()
    runs = []
    for _ in range(2):
        tr = margin_trader(["BTCUSDT", "ETHUSDT"], execution={"max_volume_share": 0.25})
        runs.append(tr.update(items) + tr.flush())
    assert runs[0] == runs[1]
    kinds = {type(m).__name__ for m in runs[0]}
    assert {"Order", "Fill", "OrderExpired", "OrderDenied", "EquityPoint"} <= kinds


@pytest.mark.parametrize("cut", [1, 2_345, 7_777, 11_999])
def test_pickle_mid_stream_continues_identically(cut: int) -> None:
    """The risk profile (margin, every rule, resting exits, volume cap) on real bars: a pickle
    taken between two inputs, even with bars held for the other symbol, continues exactly."""
    items = _real_decisions()
    a = margin_trader(["BTCUSDT", "ETHUSDT"], execution={"max_volume_share": 0.25})
    full = a.update(items) + a.flush()
    b = margin_trader(["BTCUSDT", "ETHUSDT"], execution={"max_volume_share": 0.25})
    head = b.update(items[:cut])
    b = pickle.loads(pickle.dumps(b))
    assert head + b.update(items[cut:]) + b.flush() == full


def test_pickle_of_the_plain_spot_account_continues_identically() -> None:
    items = [
        sig(bar(s, i, 100.0 + i if s == "BTCUSDT" else 10.0 - i * 0.01), 1 if i % 6 == 0 else -1)
        if i % 3 == 0
        else (bar(s, i, 100.0 + i if s == "BTCUSDT" else 10.0 - i * 0.01), None)
        for i in range(20)
        for s in ("BTCUSDT", "ETHUSDT")
    ]
    a = spot(fraction=0.5)
    full = a.update(items) + a.flush()
    assert of(full, Fill)
    b = spot(fraction=0.5)
    head = b.update(items[:17])
    b = pickle.loads(pickle.dumps(b))
    assert head + b.update(items[17:]) + b.flush() == full


# --- sizing modes through the account step --------------------------------------------------------


def test_fixed_notional_entry_is_floored_to_the_lot() -> None:
    tr = margin_trader(sizing={"mode": "fixed_notional", "notional": 10_000.0})
    out = tr.update([sig(bar("BTCUSDT", 0, 43_210.98), 1)])
    (o,) = of(out, Order)
    # 10_000 / 43_210.98 = 0.2314244... BTC, floored to the 0.00001 lot
    assert (o.side, o.qty, o.quote_budget, o.order_type) == ("buy", 0.23142, 0.0, "market")
    (f,) = of(tr.update([(bar("BTCUSDT", 1, 43_210.98), None)]), Fill)
    assert f.qty == 0.23142 and f.price == 43_210.98


def test_fixed_notional_on_spot_is_a_budget_whose_fill_is_whole_lots() -> None:
    cfg = config(
        symbols=["BTCUSDT"],
        portfolio={"kind": "spot", "max_leverage": 1.0, "maintenance_rate": 0.0},
        strategy={"long_only": True},
        sizing={"mode": "fixed_notional", "notional": 10_000.0},
        execution=EXACT,
    )
    tr = new_trader(cfg, ["BTCUSDT"])
    (o,) = of(tr.update([sig(bar("BTCUSDT", 0, 43_210.98), 1)]), Order)
    assert (o.qty, o.quote_budget) == (0.0, 10_000.0)  # lot_tick judged the floored qty
    (f,) = of(tr.update([(bar("BTCUSDT", 1, 43_210.98), None)]), Fill)
    # 10_000 / (43_210.98 * 1.001) = 0.2311932... floored to the lot
    assert f.qty == pytest.approx(0.23119, abs=1e-12)
    assert f.qty * f.price + f.fee <= 10_000.0


def test_a_fixed_notional_below_the_minimum_is_denied() -> None:
    tr = margin_trader(sizing={"mode": "fixed_notional", "notional": 4.0})
    (d,) = of(tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1)]), OrderDenied)
    assert (d.rule, d.side, d.qty, d.cause) == ("min_notional", "buy", 0.0001, "signal")
    assert d.value == pytest.approx(4.0) and d.limit == 5.0
    assert d.notional == pytest.approx(4.0) and "below minimum 5" in d.reason
    # below one lot (0.00001 BTC = 0.40 USDT): nothing to order at all
    tr = margin_trader(sizing={"mode": "fixed_notional", "notional": 0.3})
    out = tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1)])
    assert of(out, Order) == of(out, OrderDenied) == []


def test_vol_target_sizes_from_the_forecast_window_and_waits_for_it() -> None:
    """Closes alternating between 40_000 and 40_000 e^0.001: one-bar log returns +-0.001. With
    sizing.vol_window = 20 the forecast is their sample std over 20 returns."""
    tr = margin_trader(
        sizing={"mode": "vol_target", "target_vol": 0.05, "max_fraction": 0.08, "vol_window": 20}
    )
    hi = 40_000.0 * math.exp(0.001)
    closes = [40_000.0 if i % 2 == 0 else hi for i in range(22)]
    bars = [bar("BTCUSDT", i, c) for i, c in enumerate(closes)]
    # 19 returns after 20 bars: no forecast yet, so no position (and no denial)
    out = tr.update([sig(b, 1) if i == 19 else (b, None) for i, b in enumerate(bars[:20])])
    assert of(out, Order) == of(out, OrderDenied) == []
    (o,) = of(tr.update([sig(bars[20], 1)]), Order)
    rets = [math.log(closes[i + 1] / closes[i]) for i in range(20)]
    vol = statistics.stdev(rets)  # 0.001 * sqrt(20 / 19)
    assert vol == pytest.approx(0.001 * math.sqrt(20 / 19), rel=1e-9)
    fraction = min(0.05 / (vol * math.sqrt(365 * 1440)), 0.08)  # 0.0669...: not capped
    want = math.floor(fraction * 1e6 / closes[20] / 1e-5 + 1e-9) * 1e-5
    assert o.qty == pytest.approx(want, abs=1e-12) and o.qty == round(o.qty, 5)
    assert 1.6 < o.qty < 1.7 and o.cause == "signal"
