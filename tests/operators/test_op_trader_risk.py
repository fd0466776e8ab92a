"""The risk layer in the account step (operators/account_trader.py): denials and what they
carry, the trading state (breakers, kill switch, resume, flatten) and its cheap pre-filter
against observing every bar on real data, liquidation of a margin account, the day's counters."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from operators.account_trader import AccountTrader
from schemas.messages import (
    NS_PER_DAY,
    Bar,
    Fill,
    FlattenPositions,
    HaltTrading,
    Liquidation,
    Order,
    OrderDenied,
    OrderExpired,
    PositionSnapshot,
    ResumeTrading,
    TradingStateChanged,
)
from tests.operators.test_op_account_trader import (
    T0,
    M,
    bar,
    config,
    margin_trader,
    merged,
    of,
    risk_only,
    sig,
    sma_decisions,
)
from tests.paths import SHARED

# --- denials --------------------------------------------------------------------------------------


def test_max_position_pct_denies_a_ten_percent_entry_with_every_field() -> None:
    tr = margin_trader(sizing={"fraction": 0.1})
    (d,) = of(tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1)]), OrderDenied)
    # 0.1 x 1M / 40_000 = 2.5 BTC: its 100_000 notional passes max_order_notional (<=), not 8%
    assert d == OrderDenied(
        intent_id="BTCUSDT-1",
        symbol="BTCUSDT",
        ts_event=T0 + M,
        ts_init=T0 + M,
        rule="max_position_pct",
        reason="position after fill 10.00% of equity exceeds 8.00%",
        value=pytest.approx(0.1),
        limit=0.08,
        side="buy",
        qty=2.5,
        notional=100_000.0,
        cause="signal",
    )
    assert tr.sim.open_orders("BTCUSDT") == [] and tr.monitor.trades_today == 0


def test_the_accounts_own_margin_check_denies_beyond_max_leverage() -> None:
    """4x BTC fits a 5x account; 4x more in ETH needs 1.6M of initial margin on ~1M equity:
    refused by the account itself (rule "account"), every risk rule off."""
    tr = margin_trader(["BTCUSDT", "ETHUSDT"], sizing={"fraction": 4.0}, risk=risk_only())
    b, e = bar("BTCUSDT", 0, 40_000.0), bar("ETHUSDT", 0, 2_000.0)
    (o,) = of(tr.update([sig(b, 1), (e, None)]), Order)
    assert (o.symbol, o.qty) == ("BTCUSDT", 100.0)
    tr.update([(bar("BTCUSDT", 1, 40_000.0), None), (bar("ETHUSDT", 1, 2_000.0), None)])
    equity = tr.account.equity
    assert equity == pytest.approx(1e6 - 4_000.0)  # the 10 bps fee of 4M
    out = tr.update([(bar("BTCUSDT", 2, 40_000.0), None), sig(bar("ETHUSDT", 2, 2_000.0), 1)])
    (d,) = of(out, OrderDenied)
    qty = 4.0 * equity / 2_000.0  # 1_992 ETH, on the 0.0001 lot
    assert (d.rule, d.symbol, d.side, d.qty, d.cause) == (
        "account",
        "ETHUSDT",
        "buy",
        qty,
        "signal",
    )
    assert d.notional == pytest.approx(qty * 2_000.0) and d.value == pytest.approx(d.notional)
    assert d.limit == pytest.approx(equity)
    need = (4e6 + qty * 2_000.0) / 5.0
    assert f"initial margin {need:.2f}" in d.reason and "max leverage 5" in d.reason


def test_halted_is_reduce_only_with_rule_trading_state() -> None:
    tr = margin_trader(["BTCUSDT", "ETHUSDT"], risk=risk_only())
    tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1), (bar("ETHUSDT", 0, 2_000.0), None)])
    tr.update([(bar("BTCUSDT", 1, 40_000.0), None), (bar("ETHUSDT", 1, 2_000.0), None)])
    tr.state.flatten_on_halt = False  # keep the long to test what still passes
    out = tr.update([HaltTrading("k1", 5, 6, reason="ops")])
    assert [(e.old, e.new, e.reason) for e in of(out, TradingStateChanged)] == [
        ("active", "halted", "kill switch: ops")
    ]
    out = tr.update([(bar("BTCUSDT", 2, 40_000.0), None), sig(bar("ETHUSDT", 2, 2_000.0), -1)])
    (d,) = of(out, OrderDenied)
    assert (d.rule, d.reason, d.value, d.limit) == (
        "trading_state",
        "reduce-only (halted): kill switch: ops",
        1.0,
        0.0,
    )
    # 8% of the equity after the BTC fee (1M - 80) at 2_000, on the 0.0001 lot
    assert (d.symbol, d.side, d.qty, d.cause) == ("ETHUSDT", "sell", 39.9968, "signal")
    assert d.notional == pytest.approx(79_993.6)
    # closing the BTC long is reducing: it passes (a flip would be closed, not reversed)
    out = tr.update([sig(bar("BTCUSDT", 3, 40_000.0), -1), (bar("ETHUSDT", 3, 2_000.0), None)])
    assert [(o.side, o.qty, o.cause) for o in of(out, Order)] == [("sell", 2.0, "signal")]
    assert [d.rule for d in of(out, OrderDenied)] == ["trading_state"]  # the short leg


# --- working market orders count ------------------------------------------------------------------


def test_entries_decided_at_the_same_close_count_each_other() -> None:
    """BTC's entry is still working when ETH's is checked (both fill at the next open)."""
    tr = margin_trader(
        ["BTCUSDT", "ETHUSDT"], risk=risk_only(max_open_positions={"max_positions": 1})
    )
    out = tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1), sig(bar("ETHUSDT", 0, 2_000.0), 1)])
    assert [o.symbol for o in of(out, Order)] == ["BTCUSDT"]
    (d,) = of(out, OrderDenied)
    assert (d.symbol, d.rule, d.value, d.limit) == ("ETHUSDT", "max_open_positions", 2.0, 1.0)
    tr = margin_trader(["BTCUSDT", "ETHUSDT"], risk=risk_only(gross_exposure={"max_pct": 0.1}))
    out = tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1), sig(bar("ETHUSDT", 0, 2_000.0), 1)])
    (d,) = of(out, OrderDenied)  # 80_000 working in BTC + 80_000 in ETH = 16% of equity
    assert (d.symbol, d.rule, d.value) == ("ETHUSDT", "gross_exposure", pytest.approx(0.16))


def test_the_entry_of_a_flip_is_new_risk_not_a_reduction() -> None:
    """Long 2 BTC, a sell signal: close 2 and short ~2. Checked against the long, the short leg
    would look like a reduction and skip every rule; after the working close it is an entry."""
    tr = margin_trader(risk=risk_only(max_trades_per_day={"max_trades": 1}))
    tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1)])
    tr.update([(bar("BTCUSDT", 1, 40_000.0), None)])
    assert tr.monitor.trades_today == 1
    out = tr.update([sig(bar("BTCUSDT", 2, 40_000.0), -1)])
    assert [(o.side, o.qty) for o in of(out, Order)] == [("sell", 2.0)]  # the close passes
    (d,) = of(out, OrderDenied)
    assert (d.rule, d.side, d.value, d.limit) == ("max_trades_per_day", "sell", 2.0, 1.0)
    assert d.qty == pytest.approx(0.08 * tr.account.equity / 40_000.0, abs=1e-5)


# --- trading state --------------------------------------------------------------------------------


def _halting_long() -> tuple[AccountTrader, list[Any]]:
    """12.5 BTC long (half of 1M) with a stop at -1%; the next close is 0.4% lower, a 0.25%
    drawdown over the 0.2% breaker."""
    tr = margin_trader(
        sizing={"fraction": 0.5},
        risk=risk_only(
            "stop_loss",
            "take_profit",
            drawdown_breaker={"max_drawdown": 0.002},
            stop_loss={"pct": 0.01},
        ),
    )
    tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1)])
    tr.update([(bar("BTCUSDT", 1, 40_000.0), None)])
    assert tr.account.qty("BTCUSDT") == 12.5
    return tr, tr.update([(bar("BTCUSDT", 2, 39_840.0), None)])


def test_a_drawdown_halts_cancels_everything_and_flattens_at_the_next_open() -> None:
    tr, out = _halting_long()
    kinds = [type(m).__name__ for m in out]
    assert kinds == ["EquityPoint", "TradingStateChanged", "OrderExpired", "OrderExpired", "Order"]
    (ev,) = of(out, TradingStateChanged)
    assert (ev.account, ev.old, ev.new, ev.symbol, ev.ts_event) == (
        "account",
        "active",
        "halted",
        "",
        T0 + 3 * M,
    )
    assert ev.reason == "drawdown 0.25% from peak exceeds 0.20%"
    assert [e.reason for e in of(out, OrderExpired)] == ["canceled", "canceled"]  # stop, TP
    (flat,) = of(out, Order)
    assert (flat.side, flat.qty, flat.order_type, flat.cause) == ("sell", 12.5, "market", "halt")
    assert [o.order_id for o in tr.sim.open_orders("BTCUSDT")] == [flat.order_id]  # no exits
    # the next bar falls through the old stop level too: only the flattening order fills
    out = tr.update([(bar("BTCUSDT", 3, 39_000.0, o=39_800.0, lo=38_900.0), None)])
    assert [(f.order_id, f.side, f.qty, f.price) for f in of(out, Fill)] == [
        (flat.order_id, "sell", 12.5, 39_800.0)
    ]
    (snap,) = of(out, PositionSnapshot)
    assert (snap.qty, snap.ts_event) == (0.0, T0 + 3 * M)
    assert tr.account.qty("BTCUSDT") == 0.0 and tr.sim.open_orders("BTCUSDT") == []
    assert tr.account.realized_pnl == pytest.approx(12.5 * (39_800.0 - 40_000.0))
    # halted: a new entry is refused, and nothing re-arms by itself
    out = tr.update([sig(bar("BTCUSDT", 4, 41_000.0), 1)])
    assert [d.rule for d in of(out, OrderDenied)] == ["trading_state"]
    assert of(out, TradingStateChanged) == [] and tr.state.mode.value == "halted"


def _long_btc(**over: Any) -> AccountTrader:
    tr = margin_trader(risk=risk_only("stop_loss"), **over)
    tr.update([sig(bar("BTCUSDT", 0, 40_000.0), 1)])
    tr.update([(bar("BTCUSDT", 1, 40_000.0), None)])
    assert tr.account.qty("BTCUSDT") == 2.0
    return tr


def test_a_command_for_another_account_is_ignored() -> None:
    tr = _long_btc()
    assert tr.update([HaltTrading("cmd-x", 1, 1, reason="ops", account="desk-2")]) == []
    assert tr.state.mode.value == "active" and tr.account.qty("BTCUSDT") == 2.0
    out = tr.update([HaltTrading("cmd-y", 1, 1, reason="ops")])  # the default: this account
    assert [(e.old, e.new) for e in of(out, TradingStateChanged)] == [("active", "halted")]


def test_the_kill_switch_stops_new_orders_at_once_and_flattens() -> None:
    tr = _long_btc()
    (stop,) = tr.sim.open_orders("BTCUSDT")
    out = tr.update([HaltTrading("cmd-1", ts_event=123, ts_init=456, reason="ops")])
    ev, exp, flat = out
    assert type(ev) is TradingStateChanged and (ev.old, ev.new) == ("active", "halted")
    assert ev.ts_event == T0 + 2 * M  # the account's clock: the last close, not the wall clock
    assert type(exp) is OrderExpired and (exp.order_id, exp.reason) == (stop.order_id, "canceled")
    assert type(flat) is Order and (flat.side, flat.qty, flat.cause) == ("sell", 2.0, "halt")
    assert flat.ts_event == T0 + 2 * M
    # re-delivered: applied once
    assert tr.update([HaltTrading("cmd-1", ts_event=123, ts_init=456, reason="ops")]) == []
    out = tr.update([sig(bar("BTCUSDT", 2, 40_100.0, o=40_050.0), 1)])
    assert [(f.order_id, f.side, f.price) for f in of(out, Fill)] == [
        (flat.order_id, "sell", 40_050.0)  # flattened at this bar's open
    ]
    assert tr.account.qty("BTCUSDT") == 0.0
    assert [d.rule for d in of(out, OrderDenied)] == ["trading_state"]  # the new entry
    # resume: the next signal trades again
    out = tr.update([ResumeTrading("cmd-2", 0, 0, reason="checked")])
    assert [(e.old, e.new, e.reason) for e in of(out, TradingStateChanged)] == [
        ("halted", "active", "resume: checked")
    ]
    assert tr.update([ResumeTrading("cmd-2", 0, 0)]) == []
    (o,) = of(tr.update([sig(bar("BTCUSDT", 3, 40_100.0), 1)]), Order)
    assert (o.side, o.cause) == ("buy", "signal")


def test_flatten_positions_closes_without_changing_the_state() -> None:
    tr = _long_btc()
    out = tr.update([FlattenPositions("f-1", 0, 0, reason="end of day")])
    assert of(out, TradingStateChanged) == []
    assert [e.reason for e in of(out, OrderExpired)] == ["canceled"]  # the stop
    (flat,) = of(out, Order)
    assert (flat.side, flat.qty, flat.order_type, flat.cause) == ("sell", 2.0, "market", "flatten")
    tr.update([(bar("BTCUSDT", 2, 40_100.0), None)])
    assert tr.account.qty("BTCUSDT") == 0.0 and tr.state.mode.value == "active"
    (o,) = of(tr.update([sig(bar("BTCUSDT", 3, 40_100.0), 1)]), Order)
    assert o.cause == "signal"  # still active: entries go on
    assert tr.update([FlattenPositions("f-1", 0, 0)]) == []


BARS_1M = SHARED / "bars_1m"


def _may_2021(sym: str, start_day: int, end_day: int) -> list[Bar]:
    path = BARS_1M / f"binance_spot_{sym.lower()}_1m_2021.parquet"
    if not path.exists():
        pytest.skip(f"{path} not present")
    df = (
        pl.scan_parquet(path)
        .filter(
            (pl.col("open_time") >= pl.datetime(2021, 5, start_day, time_zone="UTC"))
            & (pl.col("open_time") < pl.datetime(2021, 5, end_day, time_zone="UTC"))
        )
        .sort("open_time")
        .with_columns(pl.col("open_time").dt.epoch("ns").alias("ts"))
        .collect()
    )
    cols = [df[c].to_list() for c in ("ts", "open", "high", "low", "close", "volume")]
    return [Bar(sym, t, t + M, o, h, lo, c, v) for t, o, h, lo, c, v in zip(*cols, strict=True)]


@pytest.mark.parametrize(
    "risk",
    [
        {},  # examples/risk_limits.toml as it is: two black swans on the crash day
        {"state": {"black_swan_action": "halted"}},  # the first swan halts
    ],
    ids=["as-is", "tight"],
)
def test_the_state_filter_equals_observing_every_bar_on_the_may_19_2021_crash(
    risk: dict[str, Any],
) -> None:
    """Real BTCUSDT + ETHUSDT 1m bars, the week before (to fill the normal-volatility window)
    and 2021-05-19; 15 ETH minutes cut out so stale_data trips. Skipping `observe` on bars
    where `_may_change` says nothing can change gives the very same output."""
    btc, eth = _may_2021("BTCUSDT", 12, 20), _may_2021("ETHUSDT", 12, 20)
    del eth[-600:-585]
    items = merged(sma_decisions(btc), sma_decisions(eth))
    runs = []
    for every in (False, True):
        tr = new_risk_trader(risk)
        tr.observe_every_bar = every
        runs.append(tr.update(items) + tr.flush())
    assert runs[0] == runs[1]
    events = [(e.old, e.new, e.symbol) for e in of(runs[0], TradingStateChanged)]
    assert (
        "BTCUSDT volatility 3.04x normal exceeds 3x" in of(runs[0], TradingStateChanged)[0].reason
    )
    if risk:
        assert events == [("active", "halted", "")]
    else:  # swan, back within k, swan, ETH stale and fresh, back within k
        assert events == [
            ("active", "reducing", ""),
            ("reducing", "active", ""),
            ("active", "reducing", ""),
            ("active", "reducing", "ETHUSDT"),
            ("reducing", "active", "ETHUSDT"),
            ("reducing", "active", ""),
        ]
    assert len(of(runs[0], Order)) > 100


def new_risk_trader(risk: dict[str, Any]) -> AccountTrader:
    from dataflows.trader import new_trader

    cfg = config(risk=risk)
    return new_trader(cfg, cfg.symbols)


# --- margin ---------------------------------------------------------------------------------------


def test_a_leveraged_short_is_liquidated_in_a_rally_at_the_next_open() -> None:
    """112.5 BTC short (4.5x of 1M) at 40_000, maintenance 5%: at the 46_000 close equity is
    320_500 >= 258_750; at 47_000 it is 208_000 < 264_375: liquidated at the next open."""
    tr = margin_trader(
        sizing={"fraction": 4.5},
        portfolio={"maintenance_rate": 0.05, "liquidation_fee_bps": 50.0},
        risk=risk_only("take_profit"),
    )
    tr.update([sig(bar("BTCUSDT", 0, 40_000.0), -1)])
    out = tr.update([(bar("BTCUSDT", 1, 40_000.0), None)])
    (tp,) = of(out, Order)  # the short's resting take profit: a buy limit below
    assert (tp.side, tp.order_type, tp.qty) == ("buy", "limit", 112.5)
    for i, close in enumerate([44_000.0, 46_000.0], start=2):
        assert of(tr.update([(bar("BTCUSDT", i, close), None)]), Liquidation) == []
    assert tr.account.pending_liquidation == []
    tr.update([(bar("BTCUSDT", 4, 47_000.0), None)])
    assert tr.account.pending_liquidation == ["BTCUSDT"]
    # due: no new risk until it is done
    out = tr.update([sig(bar("BTCUSDT", 5, 47_600.0, o=47_500.0), 1)])
    exp, liq, snap = out[:3]
    assert type(exp) is OrderExpired and (exp.order_id, exp.reason) == (tp.order_id, "canceled")
    assert exp.ts_event == T0 + 5 * M
    assert liq == Liquidation(
        account="account",
        symbol="BTCUSDT",
        ts_event=T0 + 5 * M,
        ts_init=T0 + 6 * M,
        side="buy",
        qty=112.5,
        price=47_500.0,
        fee=pytest.approx(112.5 * 47_500.0 * 0.005),
        realized_pnl=pytest.approx(-112.5 * 7_500.0),
        equity_before=pytest.approx(1e6 - 4_500.0 - 112.5 * 7_000.0),
        maintenance_margin=pytest.approx(0.05 * 112.5 * 47_000.0),
    )
    assert type(snap) is PositionSnapshot and snap.qty == 0.0
    assert tr.account.qty("BTCUSDT") == 0.0
    assert tr.account.cash == pytest.approx(1e6 - 4_500.0 - 843_750.0 - 26_718.75)
    assert tr.monitor.consecutive_losses == 1
    # the account is solvent again after it: the signal at this close may trade (only it works)
    (o,) = of(out, Order)
    assert (o.side, o.cause) == ("buy", "signal")
    assert [w.order_id for w in tr.sim.open_orders("BTCUSDT")] == [o.order_id]


# --- the day's counters ---------------------------------------------------------------------------

DAY = T0 + NS_PER_DAY  # 2024-01-02 00:00 UTC: bar 1440 opens then


class Tape:
    """BTCUSDT bars one minute apart, each opening at the last close (a decision at a close
    fills at exactly that price)."""

    def __init__(self, tr: AccountTrader, price: float = 40_000.0) -> None:
        self.tr, self.i, self.last = tr, 0, price

    def step(self, close: float, direction: int | None = None) -> list[Any]:
        b = bar("BTCUSDT", self.i, close, o=self.last)
        self.i, self.last = self.i + 1, close
        return self.tr.update([sig(b, direction) if direction is not None else (b, None)])

    def idle(self, until: int) -> None:
        """Quiet bars at the last price until bar `until` (excluded) is next."""
        while self.i < until:
            self.step(self.last)


def _round_trips(tape: Tape, n: int, pnl: float = 0.0) -> list[Any]:
    """n entries at 40_000 (2 BTC, 8% of 1M) closed one bar later at 40_000 + pnl."""
    out: list[Any] = []
    for _ in range(n):
        out += tape.step(40_000.0, 1)
        out += tape.step(40_000.0 + pnl, 0)
    return out


def test_max_trades_per_day_counts_entries_and_resets_at_midnight_utc() -> None:
    tape = Tape(margin_trader(risk=risk_only(max_trades_per_day={"max_trades": 2})))
    tape.idle(1_440 - 8)
    out = _round_trips(tape, 2)  # decided 23:53 ... 23:56
    assert len([o for o in of(out, Order) if o.side == "buy"]) == 2
    assert tape.tr.monitor.trades_today == 2  # the exits reduce risk: not counted
    (d,) = of(tape.step(40_000.0, 1), OrderDenied)  # decided 23:57
    assert (d.rule, d.value, d.limit) == ("max_trades_per_day", 3.0, 2.0)
    assert d.reason == "trade 3 today exceeds 2 per day"
    # the bar closing at 00:00 belongs to the day it ends: still denied
    tape.idle(1_439)
    (d,) = of(tape.step(40_000.0, 1), OrderDenied)
    assert d.ts_event == DAY and d.rule == "max_trades_per_day"
    # the bar opening at 00:00 is the new day's first: a fresh count
    (o,) = of(tape.step(40_000.0, 1), Order)
    assert o.ts_event == DAY + M and tape.tr.monitor.trades_today == 1


def test_loss_cooldown_after_n_losing_round_trips() -> None:
    tape = Tape(
        margin_trader(risk=risk_only(loss_cooldown={"max_consecutive": 2, "cooldown_ns": 10 * M}))
    )
    _round_trips(tape, 1, pnl=+100.0)  # +200 gross, 160.2 of fees: a win
    assert tape.tr.monitor.consecutive_losses == 0
    _round_trips(tape, 2, pnl=-10.0)  # -20 gross and the fees: two losses
    assert tape.tr.monitor.consecutive_losses == 1  # the 2nd exit fills at the next open
    out = tape.step(40_000.0, 1)  # bar 6: the exit fills at its open, then the entry is asked
    assert (tape.tr.monitor.consecutive_losses, tape.tr.monitor.last_loss_ts) == (2, T0 + 6 * M)
    (d,) = of(out, OrderDenied)
    assert (d.rule, d.value, d.limit) == ("loss_cooldown", float(M), float(10 * M))
    assert d.reason == "2 consecutive losses: cooling down 60s of 600s"
    tape.idle(14)
    (d,) = of(tape.step(40_000.0, 1), OrderDenied)  # decided at 15 min: 9 after the loss
    assert d.value == float(9 * M)
    (o,) = of(tape.step(40_000.0, 1), Order)  # 10 min after it: the cooldown is over
    assert o.side == "buy"


def test_max_daily_loss_against_start_of_day_equity() -> None:
    tape = Tape(margin_trader(sizing={"fraction": 4.0}, risk=risk_only("max_daily_loss")))
    tape.step(40_000.0, 1)  # 100 BTC at 40_000 (4_000 fee)
    tape.step(39_600.0, 0)  # -1% on BTC, -4% of the account: close it
    out = tape.step(39_600.0, 1)  # closed at this open (3_960 fee), then a new entry is asked
    equity = tape.tr.account.equity
    assert equity == pytest.approx(1e6 - 4_000.0 - 40_000.0 - 3_960.0)
    loss = (1e6 - equity) / 1e6  # 4.796%
    (d,) = of(out, OrderDenied)
    assert (d.rule, d.value, d.limit) == ("max_daily_loss", pytest.approx(loss), 0.02)
    assert d.reason == f"daily loss {loss:.2%} exceeds 2.00%"
    # the next UTC day starts from the equity at its 00:00 close: a fresh budget
    tape.idle(1_440)
    assert tape.tr.monitor.sod_equity == 1e6
    (o,) = of(tape.step(39_600.0, 1), Order)
    assert tape.tr.monitor.sod_equity == pytest.approx(equity) and o.side == "buy"
