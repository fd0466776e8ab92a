"""One account across symbols: hand-worked spot and margin books, refusals, exposure, margin
liquidation (by hand and on a real 2021 BTC rally), an exact (Fraction) plain-loop reference over
real bars with random fills, the equity identity as a property, and pickling."""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.account import Account, AccountError
from operators.execution_sim import ExecutionSim, SimConfig
from schemas.messages import NS_PER_MINUTE, Bar, Fill, Liquidation, OrderIntent, SubmitOrder
from tests.operators.opdata import real_bars
from tests.paths import BTC_1M_2021


def fill(side: str, qty: float, price: float, fee: float = 0.0, symbol: str = "BTCUSDT") -> Fill:
    return Fill("f", "o", symbol, 1, 1, side, price, qty, fee)  # type: ignore[arg-type]


def intent(side: str, qty: float = 0.0, budget: float = 0.0, symbol: str = "BTCUSDT") -> Any:
    return OrderIntent("i", symbol, 1, 1, side, qty, budget)  # type: ignore[arg-type]


def identity(a: Account) -> float:
    return a.initial_cash + a.realized_pnl + a.unrealized_pnl - a.fees


# --- spot ----------------------------------------------------------------------------------------


def test_spot_books_by_hand() -> None:
    a = Account("main", 10_000.0)
    a.apply_fill(fill("buy", 1.0, 100.0, fee=0.1))
    assert a.cash == pytest.approx(9_899.9) and a.qty("BTCUSDT") == 1.0
    a.mark("BTCUSDT", 110.0, 5)
    assert a.unrealized_pnl == pytest.approx(10.0) and a.equity == pytest.approx(10_009.9)
    assert a.apply_fill(fill("sell", 0.5, 120.0, fee=0.06)) == pytest.approx(10.0)
    assert a.cash == pytest.approx(9_899.9 + 60.0 - 0.06)
    pos = a.positions["BTCUSDT"]
    assert (pos.qty, pos.avg_price) == (0.5, 100.0)
    # a fill marks its symbol at the fill price
    assert a.equity == pytest.approx(9_959.84 + 60.0) == pytest.approx(10_000 + 10 + 10 - 0.16)
    assert a.equity == pytest.approx(identity(a), rel=1e-15)
    a.apply_fill(fill("sell", 0.5, 90.0))
    assert a.qty("BTCUSDT") == 0.0 and a.positions["BTCUSDT"].avg_price == 0.0
    assert a.realized_pnl == pytest.approx(5.0) and a.equity == pytest.approx(a.cash)
    s = a.snapshot(7)
    assert s.positions == () and s.ts_init == 7 and s.fees == pytest.approx(0.16)
    assert s.initial_margin == 0.0 and s.maintenance_margin == 0.0


def test_spot_average_price_and_multiple_symbols() -> None:
    a = Account("main", 10_000.0)
    a.apply_fill(fill("buy", 1.0, 100.0))
    a.apply_fill(fill("buy", 3.0, 120.0))
    a.apply_fill(fill("buy", 10.0, 20.0, symbol="ETHUSDT"))
    assert a.positions["BTCUSDT"].avg_price == pytest.approx(115.0)
    a.mark("BTCUSDT", 130.0, 1)
    a.mark("ETHUSDT", 25.0, 1)
    assert a.gross_exposure == a.position_value == pytest.approx(4 * 130 + 10 * 25)
    assert a.cash == pytest.approx(10_000 - 460 - 200)
    assert a.equity == pytest.approx(10_000 + 60 + 50)
    s = a.snapshot(2, 3)
    assert [p.symbol for p in s.positions] == ["BTCUSDT", "ETHUSDT"]
    assert s.positions[1].notional == pytest.approx(250.0)
    ps = a.position_snapshot("ETHUSDT", 2, 3)
    assert (ps.qty, ps.avg_price, ps.cash, ps.mark_price) == (10.0, 20.0, a.cash, 25.0)
    ep = a.equity_point(2, 3)
    assert ep.equity == a.equity and ep.position_value == pytest.approx(770.0)


def test_spot_refuses_buys_beyond_cash_and_sells_beyond_the_position() -> None:
    a = Account("main", 1_000.0)
    a.mark("BTCUSDT", 100.0, 1)
    assert a.can_afford(intent("buy", qty=10.0)) is None
    assert "exceeds cash" in str(a.can_afford(intent("buy", qty=10.0), fee_rate=0.001))
    assert a.can_afford(intent("buy", budget=1_000.0), fee_rate=0.001) is None
    assert "exceeds cash" in str(a.can_afford(intent("buy", budget=1_000.01)))
    assert "exceeds the position" in str(a.can_afford(intent("sell", qty=0.1)))
    assert a.can_afford(intent("buy", qty=1.0, symbol="ETHUSDT")) == "no price for ETHUSDT"
    assert a.can_afford(intent("buy", qty=1.0, symbol="ETHUSDT"), price=5.0) is None
    a.apply_fill(fill("buy", 2.0, 100.0))
    assert a.can_afford(intent("sell", qty=2.0)) is None
    assert "exceeds the position" in str(a.can_afford(intent("sell", qty=2.01)))
    with pytest.raises(AccountError, match="exceeds the position"):
        a.apply_fill(fill("sell", 2.5, 100.0))
    with pytest.raises(AccountError, match="exceeds cash"):
        a.apply_fill(fill("buy", 9.0, 100.0))
    with pytest.raises(AccountError, match="qty > 0"):
        a.apply_fill(fill("buy", 0.0, 100.0))


def test_spot_all_in_buy_and_full_sell_are_never_refused_for_float_residue() -> None:
    a = Account("main", 1_000.0)
    price, fee = 42_123.45, 0.001
    qty = 1_000.0 / (price * (1 + fee))
    a.apply_fill(fill("buy", qty, price, fee=qty * price * fee))
    assert abs(a.cash) < 1e-9
    a.apply_fill(fill("sell", qty * (1 + 1e-13), price * 1.01))
    assert a.qty("BTCUSDT") == 0.0


def test_account_config_is_checked() -> None:
    with pytest.raises(ValueError, match="spot"):
        Account("a", 1.0, kind="spot", max_leverage=3.0)
    with pytest.raises(ValueError, match="maintenance_rate"):
        Account("a", 1.0, kind="margin", max_leverage=10.0, maintenance_rate=0.2)
    with pytest.raises(ValueError, match="initial_cash"):
        Account("a", 0.0)


# --- margin --------------------------------------------------------------------------------------


def margin(cash: float = 10_000.0, lev: float = 5.0, mmr: float = 0.05, **kw: Any) -> Account:
    return Account("m", cash, kind="margin", max_leverage=lev, maintenance_rate=mmr, **kw)


def test_margin_short_then_flip_long_by_hand() -> None:
    a = margin()
    a.apply_fill(fill("sell", 2.0, 100.0, fee=0.2))
    assert a.cash == pytest.approx(9_999.8) and a.qty("BTCUSDT") == -2.0  # notional borrowed
    a.mark("BTCUSDT", 90.0, 1)
    assert a.unrealized_pnl == pytest.approx(20.0) and a.equity == pytest.approx(10_019.8)
    assert a.position_value == pytest.approx(-180.0) and a.gross_exposure == pytest.approx(180.0)
    assert a.initial_margin == pytest.approx(36.0) and a.maintenance_margin == pytest.approx(9.0)
    assert a.apply_fill(fill("buy", 3.0, 95.0, fee=0.3)) == pytest.approx(10.0)  # closes 2, +1
    pos = a.positions["BTCUSDT"]
    assert (pos.qty, pos.avg_price) == (1.0, 95.0)
    assert a.cash == pytest.approx(10_000 - 0.2 + 10 - 0.3)
    a.mark("BTCUSDT", 97.0, 2)
    assert a.equity == pytest.approx(10_009.5 + 2.0) == pytest.approx(identity(a))


def test_margin_net_and_gross_exposure_across_symbols() -> None:
    a = margin()
    a.apply_fill(fill("buy", 1.0, 100.0))
    a.apply_fill(fill("sell", 10.0, 10.0, symbol="ETHUSDT"))
    s = a.snapshot(1)
    assert (s.gross_exposure, s.net_exposure) == (200.0, 0.0)
    assert s.initial_margin == 40.0 and s.maintenance_margin == 10.0


def test_margin_can_afford_up_to_max_leverage_and_always_reducing() -> None:
    a = margin(cash=1_000.0, lev=5.0)
    a.mark("BTCUSDT", 100.0, 1)
    assert a.can_afford(intent("sell", qty=50.0)) is None  # 5,000 = 5x
    assert "initial margin" in str(a.can_afford(intent("sell", qty=50.01)))
    assert "initial margin" in str(a.can_afford(intent("buy", qty=50.0), fee_rate=0.001))
    a.apply_fill(fill("sell", 50.0, 100.0))
    a.mark("BTCUSDT", 110.0, 2)  # equity 500, gross 5,500: over 5x
    assert "initial margin" in str(a.can_afford(intent("sell", qty=1.0)))
    assert a.can_afford(intent("buy", qty=50.0)) is None  # reducing is always allowed
    assert "initial margin" in str(a.can_afford(intent("buy", qty=80.0)))  # flips to 30 long
    assert a.can_afford(intent("buy", qty=60.0)) is None  # flips to 10 long: 1,100 <= 5 * 500


def test_margin_liquidation_by_hand() -> None:
    a = margin(cash=1_000.0, lev=10.0, mmr=0.05, liquidation_fee_rate=0.001)
    a.apply_fill(fill("sell", 50.0, 100.0))  # 5x short
    a.apply_fill(fill("buy", 1.0, 20.0, symbol="ETHUSDT"))
    assert a.check_liquidation({"BTCUSDT": 114.0, "ETHUSDT": 20.0}, 1) == []
    # equity 1,000 - 700 = 300 >= 0.05 * (5,700 + 20) = 286
    assert a.check_liquidation({"BTCUSDT": 115.0, "ETHUSDT": 20.0}, 2) == ["BTCUSDT", "ETHUSDT"]
    # equity 250 < 0.05 * 5,770 = 288.5: everything goes, at the next prices
    assert a.can_afford(intent("buy", qty=1.0, symbol="XRPUSDT"), price=1.0) == (
        "liquidation pending"
    )
    assert a.can_afford(intent("buy", qty=10.0)) is None  # reducing still allowed
    liq = a.liquidate("BTCUSDT", 116.0, 3, 4)
    assert liq == Liquidation(
        "m", "BTCUSDT", 3, 4, "buy", 50.0, 116.0, pytest.approx(5.8), -800.0, 250.0, 288.5
    )
    assert a.qty("BTCUSDT") == 0.0 and a.pending_liquidation == ["ETHUSDT"]
    with pytest.raises(ValueError, match="not due"):
        a.liquidate("BTCUSDT", 116.0, 3, 4)
    a.liquidate("ETHUSDT", 21.0, 3, 4)
    assert a.cash == pytest.approx(1_000 - 800 - 5.8 + 1 - 0.021) == pytest.approx(a.equity)
    assert a.check_liquidation({"BTCUSDT": 200.0}, 5) == []  # flat: nothing to liquidate


def test_spot_never_liquidates() -> None:
    a = Account("s", 100.0)
    a.apply_fill(fill("buy", 1.0, 100.0))
    assert a.check_liquidation({"BTCUSDT": 0.01}, 1) == []


def _jan_2021_btc() -> tuple[Bar, ...]:
    if not BTC_1M_2021.exists():
        pytest.skip(f"{BTC_1M_2021} not present")
    df = (
        pl.scan_parquet(BTC_1M_2021)
        .filter(pl.col("open_time") < pl.datetime(2021, 2, 1, time_zone="UTC"))
        .sort("open_time")
        .with_columns(pl.col("open_time").dt.epoch("ns").alias("ts"))
        .collect()
    )
    cols = [df[c].to_list() for c in ("ts", "open", "high", "low", "close", "volume")]
    return tuple(
        Bar("BTCUSDT", ts, ts + NS_PER_MINUTE, o, h, lo, c, v)
        for ts, o, h, lo, c, v in zip(*cols, strict=True)
    )


def test_leveraged_short_through_the_real_january_2021_rally_is_liquidated() -> None:
    """Short 3x BTC at the first open of 2021 (~28.9k) through the rally to ~40k: the account is
    liquidated at the first close where equity < 5% of the notional, at the next bar's open."""
    bars = _jan_2021_btc()
    sim = ExecutionSim(SimConfig(taker_fee_bps=7.5, slippage_bps=1.0))
    acct = margin(cash=10_000.0, lev=5.0, mmr=0.05, liquidation_fee_rate=0.0005)
    qty = 3 * 10_000.0 / bars[0].open
    sim.submit(SubmitOrder("short", "BTCUSDT", bars[0].ts_event, bars[0].ts_event, "sell", qty))
    events: list[Any] = []
    due = False
    for b in bars:
        if due:
            events.append(acct.liquidate("BTCUSDT", b.open, b.ts_event, b.ts_init))
            break
        for f in sim.on_bar(b):
            acct.apply_fill(f)
            events.append(f)
        due = bool(acct.check_liquidation({"BTCUSDT": b.close}, b.ts_close))
    entry = events[0]
    assert entry.qty == pytest.approx(qty) and entry.price < bars[0].open
    # the plain loop: first close where cash + unrealized < mmr * notional
    cash0 = 10_000.0 - entry.fee
    k = next(
        i
        for i, b in enumerate(bars)
        if cash0 + (entry.price - b.close) * qty < 0.05 * qty * b.close
    )
    liq = events[-1]
    assert isinstance(liq, Liquidation) and liq.ts_event == bars[k + 1].ts_event
    assert liq.price == bars[k + 1].open and liq.side == "buy" and liq.qty == pytest.approx(qty)
    assert 36_000 < bars[k].close < 37_500  # 6 Jan 2021, 23:43 UTC: 36,725
    assert liq.equity_before < liq.maintenance_margin
    assert liq.realized_pnl == pytest.approx((entry.price - liq.price) * qty)
    assert acct.qty("BTCUSDT") == 0.0 and 0.0 < acct.equity < liq.maintenance_margin
    # what was left at the trigger, moved by the close-to-next-open gap, less the penalty fee
    gap = (bars[k].close - liq.price) * qty
    assert acct.equity == pytest.approx(liq.equity_before + gap - liq.fee, rel=1e-9)
    assert liq.fee == pytest.approx(qty * liq.price * 0.0005)
    assert acct.equity == pytest.approx(identity(acct), rel=1e-12)


# --- an exact plain-loop reference over real bars with random fills ------------------------------


@dataclass
class RefBook:
    """Exact rational books: cash, per symbol (qty, cost basis of the open qty), realized, fees."""

    kind: str
    cash: Fraction
    qty: dict[str, Fraction] = field(default_factory=dict)
    basis: dict[str, Fraction] = field(default_factory=dict)  # signed qty * avg entry
    realized: Fraction = Fraction(0)
    fees: Fraction = Fraction(0)

    def fill(self, sym: str, side: str, qty: float, price: float, fee: float) -> None:
        q, p, f = Fraction(qty), Fraction(price), Fraction(fee)
        dq = q if side == "buy" else -q
        old = self.qty.get(sym, Fraction(0))
        basis = self.basis.get(sym, Fraction(0))
        if old == 0 or (old > 0) == (dq > 0):
            basis += dq * p
            realized = Fraction(0)
        else:
            avg = basis / old
            closed = min(abs(dq), abs(old))
            sign = 1 if old > 0 else -1
            realized = (p - avg) * closed * sign
            rest = abs(old) - closed
            basis = avg * rest * sign
            if abs(dq) > abs(old):
                basis = (old + dq) * p
        new = old + dq
        if new == 0 or abs(new) <= Fraction(1, 10**12) * max(abs(old), abs(dq)):
            new, basis = Fraction(0), Fraction(0)
        self.qty[sym], self.basis[sym] = new, basis
        self.realized += realized
        self.fees += f
        self.cash += (-dq * p if self.kind == "spot" else realized) - f

    def equity(self, marks: dict[str, float]) -> Fraction:
        value = sum((q * Fraction(marks[s]) for s, q in self.qty.items()), Fraction(0))
        if self.kind == "spot":
            return self.cash + value
        return self.cash + value - sum(self.basis.values(), Fraction(0))


@pytest.mark.parametrize("kind", ["spot", "margin"])
def test_books_equal_an_exact_plain_loop_over_real_bars_with_random_fills(kind: str) -> None:
    rng = random.Random(2024 if kind == "spot" else 2025)
    n = 4_000
    streams = {s: real_bars(s)[:n] for s in ("BTCUSDT", "ETHUSDT")}
    init = 100_000.0
    acct = (
        Account("a", init)
        if kind == "spot"
        else Account("a", init, kind="margin", max_leverage=5.0, maintenance_rate=0.02)
    )
    ref = RefBook(kind, Fraction(init))
    marks: dict[str, float] = {}
    n_fills = 0
    for i in range(n):
        for sym, bars in streams.items():
            b = bars[i]
            if rng.random() < 0.15:
                side = rng.choice(("buy", "sell"))
                price = rng.uniform(b.low, b.high)
                held = acct.qty(sym)
                if kind == "spot" and side == "sell":
                    qty = held * rng.choice((1.0, rng.random()))
                else:
                    qty = rng.uniform(0.0, 0.2) * init / price
                fee = qty * price * rng.choice((0.0, 1e-4, 7.5e-4))
                ok = kind == "margin" or side == "sell" or qty * price + fee <= acct.cash
                if qty > 0.0 and ok:
                    f = Fill(f"f{i}", "o", sym, b.ts_event, b.ts_init, side, price, qty, fee)  # type: ignore[arg-type]
                    acct.apply_fill(f)
                    ref.fill(sym, side, qty, price, fee)
                    marks[sym] = price
                    n_fills += 1
            acct.mark(sym, b.close, b.ts_close)
            marks[sym] = b.close
        if i % 97 == 0 or i == n - 1:
            s = acct.snapshot(i)
            assert float(ref.cash) == pytest.approx(s.cash, rel=1e-9, abs=1e-6)
            assert float(ref.realized) == pytest.approx(s.realized_pnl, rel=1e-9, abs=1e-6)
            assert float(ref.fees) == pytest.approx(s.fees, rel=1e-12, abs=1e-9)
            assert float(ref.equity(marks)) == pytest.approx(s.equity, rel=1e-12)
            assert s.equity == pytest.approx(identity(acct), rel=1e-12)
            for p in s.positions:
                assert float(ref.qty[p.symbol]) == pytest.approx(p.qty, rel=1e-9, abs=1e-12)
                avg = ref.basis[p.symbol] / ref.qty[p.symbol]
                assert float(avg) == pytest.approx(p.avg_price, rel=1e-9)
    assert n_fills > 800


# --- properties and pickling ---------------------------------------------------------------------

fill_st = st.tuples(
    st.sampled_from(("BTCUSDT", "ETHUSDT")),
    st.sampled_from(("buy", "sell")),
    st.floats(1e-6, 100.0),
    st.floats(1.0, 1e5),
    st.floats(0.0, 1e-3),
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(("spot", "margin")),
    seq=st.lists(fill_st, max_size=40),
    marks=st.tuples(st.floats(1.0, 1e5), st.floats(1.0, 1e5)),
)
def test_property_equity_identity_after_any_fills(
    kind: str, seq: list[tuple[str, str, float, float, float]], marks: tuple[float, float]
) -> None:
    acct = (
        Account("a", 1e7)
        if kind == "spot"
        else Account("a", 1e7, kind="margin", max_leverage=3.0, maintenance_rate=0.1)
    )
    for sym, side, qty, price, fee_rate in seq:
        f = fill(side, qty, price, fee=qty * price * fee_rate, symbol=sym)
        reason = acct.can_afford(intent(side, qty, symbol=sym), price, fee_rate)
        if kind == "spot" and reason is not None:  # refused before the trade <=> after it
            with pytest.raises(AccountError):
                acct.apply_fill(f)
            continue
        acct.apply_fill(f)
        assert kind == "margin" or (acct.qty(sym) >= 0.0 and acct.cash >= -1e-9 * 1e7)
    acct.mark("BTCUSDT", marks[0], 1)
    acct.mark("ETHUSDT", marks[1], 1)
    scale = acct.initial_cash + sum(
        abs(p.qty) * (p.avg_price + p.mark_price) for p in acct.positions.values()
    )
    assert acct.equity == pytest.approx(identity(acct), rel=1e-12, abs=1e-12 * scale)
    s = acct.snapshot(1)
    assert s.gross_exposure >= abs(s.net_exposure)


def test_pickled_mid_stream_continues_identically() -> None:
    rng = random.Random(5)
    bars = real_bars("BTCUSDT")[:2_000]
    script = [
        (b, rng.random() < 0.2, rng.choice(("buy", "sell")), rng.uniform(0.01, 1.0)) for b in bars
    ]

    def run(a: Account, part: list[Any]) -> list[Any]:
        out: list[Any] = []
        for b, trade, side, q in part:
            if trade:
                a.apply_fill(fill(side, q, b.open, fee=q * b.open * 1e-4))
            out.append(a.check_liquidation({"BTCUSDT": b.close}, b.ts_close))
            out.append(a.snapshot(b.ts_close))
        return out

    whole = run(margin(cash=50_000.0, lev=3.0, mmr=0.02), script)
    a = margin(cash=50_000.0, lev=3.0, mmr=0.02)
    head = run(a, script[:1_000])
    tail = run(pickle.loads(pickle.dumps(a)), script[1_000:])
    assert head + tail == whole
