"""Round trips and trade statistics: hand-worked cases, and a property against a plain ledger."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.analytics.round_trips import round_trips
from operators.analytics.trade_stats import per_symbol, trade_stats, turnover_notional
from schemas.messages import Fill, Liquidation, Order, RoundTrip

S = "BTCUSDT"


class Book:
    """Orders and fills of a test, one fill per order, order ids numbered like the account."""

    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.orders: dict[str, Order] = {}
        self.n: dict[str, int] = {}

    def fill(
        self,
        ts: int,
        side: str,
        qty: float,
        price: float,
        fee: float = 0.0,
        cause: str = "signal",
        sym: str = S,
        producer: str = "",
        model_version: str = "",
    ) -> str:
        self.n[sym] = self.n.get(sym, 0) + 1
        oid = f"{sym}-{self.n[sym]}"
        self.orders[oid] = Order(
            oid, sym, ts, ts, side, qty=qty, cause=cause, producer=producer,  # type: ignore[arg-type]
            model_version=model_version,
        )  # fmt: skip
        self.fills.append(
            Fill(f"{oid}-1", oid, sym, ts, ts, side, price, qty, fee)  # type: ignore[arg-type]
        )
        return oid

    def trips(self, **kw: object) -> list[RoundTrip]:
        return round_trips(self.fills, self.orders, **kw)  # type: ignore[arg-type]


def test_long_with_partial_close_and_scale_in() -> None:
    b = Book()
    o1 = b.fill(1, "buy", 1.0, 100.0, fee=0.1, producer="sma", model_version="v1")
    b.fill(2, "buy", 1.0, 110.0, fee=0.11)
    b.fill(3, "sell", 0.5, 120.0, fee=0.06)
    o4 = b.fill(5, "sell", 1.5, 90.0, fee=0.135, cause="stop_loss")
    (t,) = b.trips()
    # entry 2 @ 105 (210), exit 0.5 @ 120 + 1.5 @ 90 = 60 + 135 = 195 -> gross -15
    assert t.side == "long" and t.qty == 2.0
    assert t.entry_price == pytest.approx(105.0) and t.exit_price == pytest.approx(97.5)
    assert t.gross_pnl == pytest.approx(-15.0)
    assert t.fees == pytest.approx(0.405)
    assert t.pnl == pytest.approx(-15.405) and t.ret == pytest.approx(-15.405 / 210.0)
    assert (t.ts_entry, t.ts_exit, t.ts_event, t.duration_ns) == (1, 5, 5, 4)
    assert t.exit_reason == "stop_loss" and t.producer == "sma" and t.model_version == "v1"
    assert (t.entry_order_id, t.exit_order_id, t.trip_id) == (o1, o4, f"{S}-1")


def test_short_then_flip_splits_qty_and_fee() -> None:
    b = Book()
    b.fill(1, "sell", 2.0, 100.0, fee=0.2)
    flip = b.fill(2, "buy", 3.0, 90.0, fee=0.27, cause="take_profit")  # closes 2, opens 1 long
    b.fill(3, "sell", 1.0, 95.0, fee=0.095)
    short, long_ = b.trips()
    assert short.side == "short" and short.qty == 2.0
    assert short.gross_pnl == pytest.approx(20.0)  # sold 200, bought back 180
    assert short.fees == pytest.approx(0.2 + 0.18)  # 2/3 of the flip's fee
    assert short.exit_reason == "take_profit" and short.exit_order_id == flip
    assert long_.side == "long" and long_.qty == pytest.approx(1.0)
    assert long_.entry_order_id == flip and long_.ts_entry == 2 and long_.trip_id == f"{S}-2"
    assert long_.gross_pnl == pytest.approx(5.0)
    assert long_.fees == pytest.approx(0.09 + 0.095)
    assert long_.pnl == pytest.approx(5.0 - 0.185)


def test_open_trip_marked_or_nan() -> None:
    b = Book()
    b.fill(1, "buy", 2.0, 100.0, fee=0.2)
    b.fill(2, "sell", 1.0, 110.0, fee=0.11)
    (t,) = b.trips(marks={S: (9, 120.0)})
    # realised 1 @ 110, the other 1 at the mark 120: gross 10 + 20, no closing fee for the mark
    assert t.exit_reason == "open" and t.ts_exit == 9 and t.exit_order_id == ""
    assert t.gross_pnl == pytest.approx(30.0) and t.pnl == pytest.approx(30.0 - 0.31)
    assert t.exit_price == pytest.approx(115.0)
    (u,) = b.trips()
    assert u.exit_reason == "open" and math.isnan(u.pnl) and math.isnan(u.exit_price)
    with pytest.raises(ValueError, match="before its last fill"):
        b.trips(marks={S: (1, 120.0)})


def test_liquidation_closes_once() -> None:
    b = Book()
    b.fill(1, "sell", 1.0, 100.0, fee=0.1)
    liq = Liquidation("account", S, 5, 5, "buy", 1.0, 130.0, 0.65, -30.0, 4.0, 5.0)
    b.fill(5, "sell", 0.5, 131.0, fee=0.05)  # same bar, after the liquidation: a new trip
    first, second = b.trips(liquidations=[liq], marks={S: (6, 131.0)})
    assert first.exit_reason == "liquidation" and first.exit_order_id == ""
    assert first.gross_pnl == pytest.approx(-30.0) and first.fees == pytest.approx(0.75)
    assert second.exit_reason == "open" and second.ts_entry == 5 and second.side == "short"
    with pytest.raises(ValueError, match="fills are missing"):
        round_trips([], {}, liquidations=[liq])


def test_bad_input_is_refused() -> None:
    b = Book()
    b.fill(1, "buy", 1.0, 100.0)
    with pytest.raises(ValueError, match="not in `orders`"):
        round_trips(b.fills, {})
    with pytest.raises(ValueError, match="twice"):
        round_trips(b.fills * 2, b.orders)


def test_dust_counts_as_flat_and_natural_order() -> None:
    b = Book()
    for _ in range(9):
        b.fill(0, "buy", 0.1, 100.0)  # ids BTCUSDT-1 .. -9 in one bar
    b.fill(0, "sell", 0.9, 100.0)  # BTCUSDT-10: in string order it would come first
    (t,) = b.trips()
    assert t.exit_reason == "signal" and t.qty == pytest.approx(0.9)  # 0.1 * 9 != 0.9 exactly
    assert t.exit_order_id == f"{S}-10"


def _ledger(fills: list[Fill], marks: dict[str, float]) -> float:
    """Cash PnL net of fees plus open positions at their marks, written without trips."""
    cash, pos = 0.0, {}
    for f in fills:
        sgn = 1.0 if f.side == "buy" else -1.0
        cash += -sgn * f.qty * f.price - f.fee
        pos[f.symbol] = pos.get(f.symbol, 0.0) + sgn * f.qty
    return cash + sum(q * marks[s] for s, q in pos.items())


def _crossings(fills: list[Fill]) -> dict[str, int]:
    """Closed trips per symbol: times the (integer) position returns to or crosses 0."""
    out: dict[str, int] = {}
    pos: dict[str, float] = {}
    for f in sorted(fills, key=lambda f: (f.ts_event, f.symbol)):
        q0 = pos.get(f.symbol, 0.0)
        q1 = q0 + (f.qty if f.side == "buy" else -f.qty)
        if q0 != 0.0 and (q1 == 0.0 or (q0 > 0) != (q1 > 0)):
            out[f.symbol] = out.get(f.symbol, 0) + 1
        pos[f.symbol] = q1
    return out


step = st.tuples(
    st.sampled_from(["AAA", "BBB"]),
    st.sampled_from(["buy", "sell"]),
    st.integers(1, 5),
    st.floats(50.0, 150.0),
    st.floats(0.0, 1.0),
    st.sampled_from(["signal", "stop_loss", "halt"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(step, min_size=1, max_size=30), st.floats(50.0, 150.0))
def test_trips_add_up_to_the_ledger(steps: list[tuple], mark: float) -> None:
    b = Book()
    for ts, (sym, side, q, px, fee, cause) in enumerate(steps):
        b.fill(ts, side, float(q), px, fee, cause, sym)
    marks = {s: (len(steps), mark) for s in ("AAA", "BBB")}
    trips = b.trips(marks=marks)
    assert math.fsum(t.pnl for t in trips) == pytest.approx(
        _ledger(b.fills, {s: m for s, (_, m) in marks.items()}), abs=1e-6
    )
    assert math.fsum(t.fees for t in trips) == pytest.approx(math.fsum(f.fee for f in b.fills))
    closed = [t for t in trips if t.exit_reason != "open"]
    by: dict[str, int] = {}
    for t in closed:
        by[t.symbol] = by.get(t.symbol, 0) + 1
    assert by == _crossings(b.fills)
    assert [(t.ts_exit, t.symbol) for t in trips] == sorted((t.ts_exit, t.symbol) for t in trips)
    for t in trips:  # trips of a symbol do not overlap
        later = [u for u in trips if u.symbol == t.symbol and u.ts_entry > t.ts_entry]
        assert all(u.ts_entry >= t.ts_exit for u in later)


# ----------------------------------------------------------------------------- trade stats


def _trip(pnl: float, gross: float, reason: str = "signal", sym: str = S, dur: int = 10):
    return RoundTrip(
        f"{sym}-x", sym, dur, dur, "long", 0, dur, 1.0, 100.0, 100.0, gross, gross - pnl, pnl,
        pnl / 100.0, dur, reason, "", "", "", "",
    )  # fmt: skip


def test_trade_stats_hand_worked() -> None:
    trips = [
        _trip(10.0, 12.0, dur=10),
        _trip(-4.0, -3.0, "stop_loss", dur=20),
        _trip(6.0, 7.0, dur=30),
        _trip(-2.0, -1.0, "stop_loss", dur=40),
        _trip(0.0, 1.0, "halt", dur=50),
        _trip(99.0, 99.0, "open", "ETHUSDT"),
    ]
    s = trade_stats(trips)
    assert (s.n_trades, s.n_open) == (5, 1)
    assert s.win_rate == pytest.approx(2 / 5)
    assert s.profit_factor == pytest.approx(16.0 / 6.0)
    assert s.expectancy == pytest.approx(10.0 / 5)
    assert (s.avg_win, s.avg_loss) == (pytest.approx(8.0), pytest.approx(-3.0))
    assert (s.largest_win, s.largest_loss) == (10.0, -4.0)
    assert s.avg_holding_ns == pytest.approx(30.0)
    assert s.gross_pnl == pytest.approx(16.0) and s.fees == pytest.approx(6.0)
    assert s.fees_share == pytest.approx(6.0 / 16.0) and s.net_pnl == pytest.approx(10.0)
    assert s.exit_reasons == {"halt": 1, "signal": 2, "stop_loss": 2}
    assert s.to_dict()["exit_reasons"] == s.exit_reasons
    ps = per_symbol(trips)
    assert list(ps) == ["BTCUSDT", "ETHUSDT"]
    assert ps["ETHUSDT"].n_trades == 0 and ps["ETHUSDT"].n_open == 1
    assert ps["ETHUSDT"].win_rate is None and ps["ETHUSDT"].expectancy is None


def test_trade_stats_no_losses_and_gross_loss() -> None:
    s = trade_stats([_trip(5.0, 6.0)])
    assert s.profit_factor is None and s.avg_loss is None and s.fees_share == pytest.approx(1 / 6)
    assert trade_stats([_trip(-5.0, -4.0)]).fees_share is None


def test_turnover() -> None:
    b = Book()
    b.fill(1, "buy", 2.0, 100.0)
    b.fill(2, "sell", 0.5, 120.0)
    liq = Liquidation("account", S, 3, 3, "sell", 1.5, 80.0, 0.0, 0.0, 0.0, 0.0)
    assert turnover_notional(b.fills) == pytest.approx(260.0)
    assert turnover_notional(b.fills, [liq]) == pytest.approx(380.0)
