"""Hand-worked boundaries of every risk rule (== limit passes, just over denies), the engine's
order and fail-closed behaviour, the property that nothing the engine approves breaches a
configured limit (the trading state machine: test_op_risk_state.py)."""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.risk.black_swan import BlackSwan
from operators.risk.context import (
    Denial,
    MarketView,
    RiskContext,
    SymbolSpec,
    Tier,
    base_asset,
    floor_to_step,
)
from operators.risk.drawdown_breaker import DrawdownBreaker
from operators.risk.engine import RiskEngine
from operators.risk.exits import Position
from operators.risk.gross_exposure import GrossExposure
from operators.risk.loss_cooldown import LossCooldown
from operators.risk.lot_tick import LotTick
from operators.risk.max_daily_loss import MaxDailyLoss
from operators.risk.max_leverage import MaxLeverage
from operators.risk.max_open_positions import MaxOpenPositions
from operators.risk.max_order_notional import MaxOrderNotional
from operators.risk.max_position_pct import MaxPositionPct
from operators.risk.max_trades_per_day import MaxTradesPerDay
from operators.risk.min_notional import MinNotional
from operators.risk.min_sharpe import MinSharpe
from operators.risk.net_exposure import NetExposure
from operators.risk.per_asset_cap import PerAssetCap
from operators.risk.price_band import PriceBand
from operators.risk.reduce_only import ReduceOnly
from operators.risk.stale_data import StaleData
from operators.risk.stop_loss import StopLoss
from operators.risk.take_profit import TakeProfit
from operators.risk.trailing_stop import TrailingStop

T0 = 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC
MIN = 60 * 10**9
UP = math.inf


def ctx(
    *,
    symbol: str = "BTCUSDT",
    side: str = "buy",
    qty: float = 1.0,
    price: float = 100.0,
    positions: Mapping[str, float] | None = None,
    marks: Mapping[str, float] | None = None,
    last: float | None = None,
    **kw: Any,
) -> RiskContext:
    """A healthy context: equity 1000 all day, fresh bars at `last` (default: `price`)."""
    pos = dict(positions or {})
    mk = {s: price for s in pos} | dict(marks or {})
    market = {
        s: MarketView(last_price=mk.get(s, price), last_bar_ts=T0 - MIN) for s in {symbol, *pos}
    }
    market[symbol] = MarketView(last_price=price if last is None else last, last_bar_ts=T0 - MIN)
    base: dict[str, Any] = dict(equity=1000.0, cash=1000.0, sod_equity=1000.0, peak_equity=1000.0)
    base["market"] = market
    base.update(kw)
    return RiskContext.build(
        ts=T0,
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        qty=qty,
        price=price,
        positions=pos,
        marks=mk,
        **base,
    )


# "just over" is one ulp where the rule compares the input itself, one lot or tick where the
# compared value is a sum (an ulp of an addend can vanish in the sum)
def below(x: float) -> float:
    return math.nextafter(x, -UP)


def above(x: float) -> float:
    return math.nextafter(x, UP)


def denied(rule: Any, c: RiskContext) -> Denial:
    d = rule.check(c)
    assert d is not None, "expected a denial"
    assert d.rule == rule.name
    return d


# -- order tier ----------------------------------------------------------------------------------


def test_min_notional_boundary() -> None:
    r = MinNotional()
    assert r.check(ctx(qty=0.05, price=100.0)) is None  # 5.0 == Binance's 5 USDT
    d = denied(r, ctx(qty=0.05, price=100.0, notional=below(5.0)))
    assert d.limit == 5.0 and d.value < 5.0
    assert MinNotional(10.0).check(ctx(notional=10.0)) is None
    assert MinNotional(10.0).check(ctx(notional=below(10.0))) is not None
    assert r.check(ctx(notional=math.nan)) is not None
    # the order tier rejects a reducing order the exchange would reject
    assert r.check(ctx(side="sell", qty=0.01, positions={"BTCUSDT": 1.0})) is not None


def test_lot_tick_boundary() -> None:
    r = LotTick()
    assert r.check(ctx(qty=0.00003, price=42_000.0)) is None  # 3 BTC lots of 0.00001
    assert r.check(ctx(qty=0.000035, price=42_000.0)) is not None
    assert r.check(ctx(symbol="ETHUSDT", qty=0.3)) is None  # 0.3 / 0.1 is not exactly 3 in floats
    assert r.check(ctx(symbol="ETHUSDT", qty=0.30005)) is not None
    assert r.check(ctx(symbol="SOLUSDT", qty=1.001)) is None
    assert r.check(ctx(qty=0.001, limit_price=42_000.01)) is None
    d = denied(r, ctx(qty=0.001, limit_price=42_000.015))
    assert "tick" in d.reason and d.limit == 0.01
    assert r.check(ctx(qty=0.001, limit_price=None, price=42_000.015)) is None  # market order
    assert r.check(ctx(qty=0.0)) is not None and r.check(ctx(qty=math.nan)) is not None
    nogrid = ctx(symbol="XYZUSDT", qty=0.123456789)  # no metadata: step 0, no grid known
    assert nogrid.lot_size == 0.0 and r.check(nogrid) is None
    assert r.check(replace(nogrid, lot_size=math.nan)) is not None


def test_price_band_boundary() -> None:
    r = PriceBand()  # 500 bps
    assert r.check(ctx(price=105.0, last=100.0)) is None  # exactly 500 bps
    assert r.check(ctx(price=95.0, last=100.0)) is None
    assert r.check(ctx(price=above(105.0), last=100.0)) is not None
    assert r.check(ctx(price=100.0, limit_price=105.0, last=100.0)) is None
    d = denied(r, ctx(price=100.0, limit_price=105.01, last=100.0))
    assert d.value > 500.0 and d.limit == 500.0
    assert r.check(ctx(last=math.nan)) is not None
    assert r.check(replace(ctx(), market={})) is not None


def test_max_order_notional_boundary() -> None:
    r = MaxOrderNotional(1000.0)
    assert r.check(ctx(notional=1000.0)) is None
    assert r.check(ctx(notional=above(1000.0))) is not None
    assert MaxOrderNotional().max_notional == 50_000.0


# -- position tier -------------------------------------------------------------------------------


def test_max_position_pct_boundary() -> None:
    r = MaxPositionPct()  # 8% of 1000 = 80
    assert r.check(ctx(qty=0.8, price=100.0)) is None
    assert r.check(ctx(qty=0.4, price=100.0, positions={"BTCUSDT": 0.4})) is None
    d = denied(r, ctx(qty=0.8, price=above(100.0)))
    assert d.limit == 0.08 and d.value > 0.08
    # shorts count by size, a flip through zero is judged on the new side
    assert r.check(ctx(side="sell", qty=0.8)) is None
    assert r.check(ctx(side="sell", qty=1.7, positions={"BTCUSDT": 0.8})) is not None
    # a sell that shrinks an oversized long passes
    assert r.check(ctx(side="sell", qty=0.5, positions={"BTCUSDT": 5.0})) is None
    assert r.check(ctx(qty=0.1, equity=0.0)) is not None
    assert r.check(ctx(qty=0.1, equity=math.nan)) is not None


def test_max_leverage_boundary() -> None:
    r = MaxLeverage()  # 5x of 1000 = 5000 gross
    book = {"ETHUSDT": 2.0}
    marks = {"ETHUSDT": 2000.0}  # 4000
    assert r.check(ctx(qty=10.0, price=100.0, positions=book, marks=marks)) is None
    assert r.check(ctx(qty=10.0, price=100.01, positions=book, marks=marks)) is not None
    # gross counts shorts too
    short = {"ETHUSDT": -2.0}
    assert r.check(ctx(qty=10.00001, price=100.0, positions=short, marks=marks)) is not None
    # an unmarked open position makes gross unknown: deny new risk
    unmarked = RiskContext.build(
        ts=T0, symbol="BTCUSDT", side="buy", qty=0.1, price=100.0,
        positions={"ETHUSDT": 1.0}, marks={}, equity=1000.0,
    )  # fmt: skip
    assert math.isnan(unmarked.gross_exposure) and r.check(unmarked) is not None


# -- daily tier ----------------------------------------------------------------------------------


def test_max_daily_loss_boundary() -> None:
    r = MaxDailyLoss()
    assert r.check(ctx(equity=980.0)) is None  # 2.00%
    assert r.check(ctx(equity=below(980.0))) is not None
    assert r.check(ctx(equity=1200.0)) is None
    assert r.check(ctx(equity=900.0, side="sell", qty=0.5, positions={"BTCUSDT": 1.0})) is None
    assert r.check(ctx(sod_equity=0.0)) is not None


def test_max_trades_per_day_boundary() -> None:
    r = MaxTradesPerDay()
    assert r.check(ctx(trades_today=14)) is None  # this is the 15th
    d = denied(r, ctx(trades_today=15))
    assert (d.value, d.limit) == (16.0, 15.0)
    assert r.check(ctx(trades_today=40, side="sell", qty=1.0, positions={"BTCUSDT": 1.0})) is None


def test_loss_cooldown_boundary() -> None:
    r = LossCooldown()  # 8 losses -> 1 hour
    hour = 60 * MIN
    assert r.check(ctx(consecutive_losses=7, last_loss_ts=T0)) is None
    assert r.check(ctx(consecutive_losses=8, last_loss_ts=T0 - hour)) is None  # ends exactly
    assert r.check(ctx(consecutive_losses=8, last_loss_ts=T0 - hour + 1)) is not None
    assert r.check(ctx(consecutive_losses=8, last_loss_ts=None)) is not None
    assert LossCooldown(3, MIN).check(ctx(consecutive_losses=3, last_loss_ts=T0 - MIN)) is None


# -- portfolio tier ------------------------------------------------------------------------------


def test_gross_exposure_boundary() -> None:
    r = GrossExposure()  # 100% of equity
    book, marks = {"ETHUSDT": 0.25}, {"ETHUSDT": 2000.0}  # 500
    assert r.check(ctx(qty=5.0, positions=book, marks=marks)) is None  # 500 + 500
    assert r.check(ctx(qty=5.00001, positions=book, marks=marks)) is not None
    # adding to the same symbol: the old position is revalued at the order price
    assert r.check(ctx(qty=4.0, positions={"BTCUSDT": 6.0}, marks={"BTCUSDT": 90.0})) is None


def test_net_exposure_boundary() -> None:
    r = NetExposure(0.5)
    book, marks = {"ETHUSDT": -0.25}, {"ETHUSDT": 2000.0}  # net -500
    assert r.check(ctx(side="sell", qty=0.0001, positions=book, marks=marks)) is not None
    assert r.check(ctx(qty=10.0, positions=book, marks=marks)) is None  # net +500
    assert r.check(ctx(qty=10.00001, positions=book, marks=marks)) is not None
    assert NetExposure().check(ctx(qty=10.0)) is None


def test_per_asset_cap_boundary() -> None:
    r = PerAssetCap()  # 10% per base asset
    other = {"BTCUSDC": 0.001}, {"BTCUSDC": 50_000.0}  # 50 of BTC elsewhere
    assert r.check(ctx(qty=0.5, positions=other[0], marks=other[1])) is None  # 50 + 50
    d = denied(r, ctx(qty=0.50001, positions=other[0], marks=other[1]))
    assert "BTC" in d.reason
    assert r.check(ctx(symbol="ETHUSDT", qty=1.0, positions=other[0], marks=other[1])) is None
    tight = PerAssetCap(caps=(("BTC", 0.05),))
    assert tight.check(ctx(qty=0.5)) is None and tight.check(ctx(qty=0.50001)) is not None
    assert base_asset("BTCUSDT") == "BTC" and base_asset("ETHBTC") == "ETH"


def test_max_open_positions_boundary() -> None:
    r = MaxOpenPositions(3)
    two = {"ETHUSDT": 1.0, "SOLUSDT": 1.0}
    three = two | {"XRPUSDT": 1.0}
    assert r.check(ctx(qty=0.1, positions=two)) is None  # opens the 3rd
    assert r.check(ctx(qty=0.1, positions=three)) is not None  # would open a 4th
    assert r.check(ctx(qty=0.1, positions=three | {"BTCUSDT": 1.0})) is None  # adds, not opens
    assert r.check(ctx(qty=0.1, positions=three | {"BTCUSDT": 0.0})) is not None  # flat is flat


# -- system tier ---------------------------------------------------------------------------------


def test_reduce_only() -> None:
    r = ReduceOnly()
    long = {"BTCUSDT": 1.0}
    assert r.check(ctx(qty=0.1)) is None  # not reduce-only
    assert r.check(ctx(qty=0.1, reduce_only=True)) is not None
    assert r.check(ctx(side="sell", qty=1.0, positions=long, reduce_only=True)) is None  # closes
    assert r.check(ctx(side="sell", qty=0.4, positions=long, reduce_only=True)) is None
    assert r.check(ctx(side="sell", qty=1.5, positions=long, reduce_only=True)) is not None  # flip
    assert r.check(ctx(side="buy", qty=0.1, positions=long, reduce_only=True)) is not None
    cover = ctx(side="buy", qty=0.5, positions={"BTCUSDT": -1.0}, reduce_only=True)
    assert r.check(cover) is None


def test_drawdown_breaker_boundary() -> None:
    r = DrawdownBreaker()
    assert r.check(ctx(peak_equity=1000.0, equity=950.0)) is None  # 5.00%
    assert r.check(ctx(peak_equity=1000.0, equity=below(950.0))) is not None
    assert r.check(ctx(peak_equity=0.0)) is not None
    assert r.check(ctx(peak_equity=1000.0, equity=900.0, side="sell", qty=1.0,
                       positions={"BTCUSDT": 1.0})) is None  # fmt: skip


def test_black_swan_boundary() -> None:
    r = BlackSwan()

    def with_vol(vol: float | None, normal: float | None) -> RiskContext:
        c = ctx()
        view = replace(c.market["BTCUSDT"], realized_vol=vol, normal_vol=normal)
        return replace(c, market={"BTCUSDT": view})

    assert r.check(with_vol(0.03, 0.01)) is None  # 2.9999999999999996x: floats, not 3
    assert r.check(with_vol(3.0, 1.0)) is None  # exactly 3x
    assert r.check(with_vol(above(3.0), 1.0)) is not None
    assert r.check(with_vol(None, 1.0)) is None  # warming up
    assert r.check(with_vol(math.nan, 1.0)) is None
    assert r.check(with_vol(5.0, 0.0)) is None


def test_stale_data_boundary() -> None:
    r = StaleData()  # 3 min

    def aged(age: int) -> RiskContext:
        c = ctx()
        return replace(c, market={"BTCUSDT": replace(c.market["BTCUSDT"], last_bar_ts=T0 - age)})

    assert r.check(aged(3 * MIN)) is None
    assert r.check(aged(3 * MIN + 1)) is not None
    assert r.check(aged(-MIN)) is None  # a bar from the future
    assert r.check(replace(ctx(), market={})) is not None
    assert r.check(replace(aged(10 * MIN), side="sell", positions={"BTCUSDT": 2.0})) is None


def test_min_sharpe_boundary() -> None:
    r = MinSharpe()
    assert r.check(ctx(sharpe=0.0)) is None
    assert r.check(ctx(sharpe=below(0.0))) is not None
    assert r.check(ctx(sharpe=None)) is None
    assert r.check(ctx(sharpe=math.nan)) is None
    assert MinSharpe(1.0).check(ctx(sharpe=0.99)) is not None


# -- exits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("qty", [2.0, -2.0])
def test_stop_loss_boundary(qty: float) -> None:
    r = StopLoss()
    pos = Position("BTCUSDT", qty, 40_000.0)
    trigger = 40_000.0 * (1 - 0.005) if qty > 0 else 40_000.0 * (1 + 0.005)
    hit = r.exits(pos, trigger, T0)
    assert hit is not None and hit.qty == 2.0 and hit.side == ("sell" if qty > 0 else "buy")
    safe = above(trigger) if qty > 0 else below(trigger)
    assert r.exits(pos, safe, T0) is None
    assert r.exits(pos, math.nan, T0) is None
    assert r.exits(Position("BTCUSDT", 0.0, 40_000.0), 1.0, T0) is None
    intent = hit.to_order_intent("BTCUSDT-x1", T0 + 1)
    assert (intent.qty, intent.side, intent.ref_price) == (2.0, hit.side, trigger)


@pytest.mark.parametrize("qty", [1.0, -1.0])
def test_take_profit_boundary(qty: float) -> None:
    r = TakeProfit()
    pos = Position("ETHUSDT", qty, 2000.0)
    trigger = 2000.0 * (1 + 0.015) if qty > 0 else 2000.0 * (1 - 0.015)
    assert r.exits(pos, trigger, T0) is not None
    assert r.exits(pos, below(trigger) if qty > 0 else above(trigger), T0) is None


def test_trailing_stop_boundary() -> None:
    r = TrailingStop()  # 1%
    long = Position("BTCUSDT", 1.0, 100.0, best_price=120.0)
    assert r.exits(long, 120.0 * 0.99, T0) is not None
    assert r.exits(long, above(120.0 * 0.99), T0) is None
    short = Position("BTCUSDT", -1.0, 100.0, best_price=80.0)
    assert r.exits(short, 80.0 * 1.01, T0) is not None
    assert r.exits(short, below(80.0 * 1.01), T0) is None
    # no best price known: trails from the entry
    assert r.exits(Position("BTCUSDT", 1.0, 100.0), 99.0, T0) is not None
    assert r.exits(Position("BTCUSDT", 1.0, 100.0), 99.5, T0) is None


# -- engine --------------------------------------------------------------------------------------


def test_engine_returns_first_denial_in_tier_order() -> None:
    eng = RiskEngine([DrawdownBreaker(), MaxPositionPct(), MinNotional()])
    assert [r.tier for r in eng.rules] == [Tier.ORDER, Tier.POSITION, Tier.SYSTEM]
    bad = ctx(qty=0.01, price=100.0, equity=900.0)  # 1 USDT, and 10% drawdown
    assert eng.check(bad) == eng.check_all(bad)[0]
    assert [d.rule for d in eng.check_all(bad)] == ["min_notional", "drawdown_breaker"]
    assert eng.check(ctx(qty=0.5)) is None
    assert RiskEngine().check(ctx(qty=0.5)) is None  # a healthy order passes every default
    assert pickle.loads(pickle.dumps(eng)) == eng


def test_engine_fails_closed_and_rejects_duplicates() -> None:
    class Broken:
        name: ClassVar[str] = "broken"
        tier: ClassVar[Tier] = Tier.DAILY

        def check(self, c: RiskContext) -> Denial | None:
            raise ZeroDivisionError("boom")

    d = RiskEngine([Broken()]).check(ctx())
    assert d is not None and d.rule == "broken" and "ZeroDivisionError" in d.reason
    with pytest.raises(ValueError, match="duplicate"):
        RiskEngine([MinSharpe(), MinSharpe(1.0)])


def test_floor_to_step() -> None:
    assert floor_to_step(0.123456789, 0.00001) == 0.12345
    assert floor_to_step(0.3, 0.1) == 0.3
    assert floor_to_step(1.0, 0.0) == 1.0
    assert LotTick().check(ctx(qty=floor_to_step(1000 / 42_123.45, 0.00001))) is None


# -- property: approved orders breach no configured limit ---------------------------------------

PRICES = {"BTCUSDT": 40_000.0, "ETHUSDT": 2_000.0, "SOLUSDT": 100.0, "BTCUSDC": 40_000.0}
SPECS = {"BTCUSDC": SymbolSpec(0.01, 0.00001, 5.0)}
LOTS = {"BTCUSDT": 0.00001, "BTCUSDC": 0.00001, "ETHUSDT": 0.0001, "SOLUSDT": 0.001}
TOL = 1e-9


def _le(value: float, limit: float) -> bool:
    return value <= limit * (1 + TOL) + 1e-12


@st.composite
def scenario(draw: st.DrawFn) -> tuple[RiskContext, dict[str, Any]]:
    cfg: dict[str, Any] = dict(
        min_notional=draw(st.sampled_from([None, 5.0, 20.0])),
        band=draw(st.floats(10.0, 1000.0)),
        max_order=draw(st.floats(1_000.0, 200_000.0)),
        pos_pct=draw(st.floats(0.01, 0.5)),
        lev=draw(st.floats(0.5, 5.0)),
        daily=draw(st.floats(0.005, 0.1)),
        trades=draw(st.integers(1, 20)),
        streak=draw(st.integers(1, 10)),
        cooldown=draw(st.integers(0, 120)) * MIN,
        gross=draw(st.floats(0.1, 2.0)),
        net=draw(st.floats(0.1, 2.0)),
        asset=draw(st.floats(0.05, 0.5)),
        open_max=draw(st.integers(1, 4)),
        dd=draw(st.floats(0.01, 0.2)),
        k=draw(st.floats(1.0, 5.0)),
        age=draw(st.integers(1, 10)) * MIN,
        sharpe=draw(st.floats(-1.0, 0.5)),
    )
    symbol = draw(st.sampled_from(sorted(PRICES)))
    equity = draw(st.floats(1_000.0, 1e6))
    marks = {s: p * draw(st.floats(0.9, 1.1)) for s, p in PRICES.items()}
    positions = {
        s: draw(st.floats(-0.1, 0.1)) * equity / marks[s]
        for s in draw(st.sets(st.sampled_from(sorted(PRICES))))
    }
    lot = LOTS[symbol]
    price = round(marks[symbol] * (1 + draw(st.floats(-0.03, 0.03))), 2)
    qty = floor_to_step(draw(st.floats(0.0, 0.15)) * equity / price, lot)
    market = {
        s: MarketView(
            last_price=marks[s],
            realized_vol=draw(st.one_of(st.none(), st.floats(0.0, 0.03))),
            normal_vol=0.01,
            last_bar_ts=T0 - draw(st.integers(0, 4)) * MIN,
        )
        for s in PRICES
    }
    c = RiskContext.build(
        ts=T0,
        symbol=symbol,
        side=draw(st.sampled_from(["buy", "sell"])),
        qty=qty,
        price=price,
        positions=positions,
        marks=marks,
        spec=SPECS.get(symbol),
        limit_price=draw(st.one_of(st.none(), st.just(price))),
        equity=equity,
        cash=equity,
        sod_equity=equity * draw(st.floats(0.97, 1.05)),
        peak_equity=equity * draw(st.floats(1.0, 1.08)),
        market=market,
        trades_today=draw(st.integers(0, 12)),
        consecutive_losses=draw(st.integers(0, 6)),
        last_loss_ts=T0 - draw(st.integers(0, 180)) * MIN,
        sharpe=draw(st.one_of(st.none(), st.floats(-1.0, 1.0))),
        reduce_only=draw(st.sampled_from([False, False, False, True])),
    )
    return c, cfg


def _engine(cfg: dict[str, Any]) -> RiskEngine:
    return RiskEngine(
        [
            MinNotional(cfg["min_notional"]),
            LotTick(),
            PriceBand(cfg["band"]),
            MaxOrderNotional(cfg["max_order"]),
            MaxPositionPct(cfg["pos_pct"]),
            MaxLeverage(cfg["lev"]),
            MaxDailyLoss(cfg["daily"]),
            MaxTradesPerDay(cfg["trades"]),
            LossCooldown(cfg["streak"], cfg["cooldown"]),
            GrossExposure(cfg["gross"]),
            NetExposure(cfg["net"]),
            PerAssetCap(cfg["asset"]),
            MaxOpenPositions(cfg["open_max"]),
            ReduceOnly(),
            DrawdownBreaker(cfg["dd"]),
            BlackSwan(cfg["k"]),
            StaleData(cfg["age"]),
            MinSharpe(cfg["sharpe"]),
        ]
    )


def _breaches(c: RiskContext, cfg: dict[str, Any]) -> list[str]:
    """An independent reading of docs/risk.md: every limit an approved order must respect."""
    out = []
    pre = c.positions.get(c.symbol, 0.0)
    post = pre + (c.qty if c.side == "buy" else -c.qty)
    reducing = c.qty > 0 and pre != 0 and pre * post >= 0 and abs(post) < abs(pre)
    min_n = c.min_notional if cfg["min_notional"] is None else cfg["min_notional"]
    if not (c.notional >= min_n and c.notional > 0):
        out.append("min_notional")
    n = c.qty / c.lot_size
    if abs(n - round(n)) > 1e-9 * max(1.0, n):
        out.append("lot")
    last = c.market[c.symbol].last_price
    if not _le(abs(c.price - last) / last * 1e4, cfg["band"]):
        out.append("band")
    if not _le(c.notional, cfg["max_order"]):
        out.append("max_order")
    after = {s: q * c.marks[s] for s, q in c.positions.items()} | {c.symbol: post * c.price}
    opening = post != 0 and pre == 0
    if opening and sum(1 for v in after.values() if v != 0) > cfg["open_max"]:
        out.append("open_positions")
    if reducing:
        return out
    e = c.equity
    gross = sum(abs(v) for v in after.values())
    asset = sum(abs(v) for s, v in after.items() if base_asset(s) == base_asset(c.symbol))
    checks = {
        "position": _le(abs(post * c.price), cfg["pos_pct"] * e),
        "leverage": _le(gross, cfg["lev"] * e),
        "gross": _le(gross, cfg["gross"] * e),
        "net": _le(abs(sum(after.values())), cfg["net"] * e),
        "asset": _le(asset, cfg["asset"] * e),
        "daily": _le((c.sod_equity - e) / c.sod_equity, cfg["daily"]),
        "trades": c.trades_today + 1 <= cfg["trades"],
        "cooldown": not (
            c.consecutive_losses >= cfg["streak"]
            and c.last_loss_ts is not None
            and c.ts - c.last_loss_ts < cfg["cooldown"]
        ),
        "reduce_only": not c.reduce_only,
        "drawdown": _le((c.peak_equity - e) / c.peak_equity, cfg["dd"]),
        "black_swan": (v := c.market[c.symbol].realized_vol) is None or v / 0.01 <= cfg["k"],
        "stale": c.ts - (c.market[c.symbol].last_bar_ts or 0) <= cfg["age"],
        "sharpe": c.sharpe is None or c.sharpe >= cfg["sharpe"],
    }
    return out + [k for k, ok in checks.items() if not ok]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenario())
def test_engine_approvals_breach_no_limit(sc: tuple[RiskContext, dict[str, Any]]) -> None:
    c, cfg = sc
    if _engine(cfg).check(c) is None:
        assert _breaches(c, cfg) == []


def test_engine_approves_some_scenarios() -> None:
    """The property above is not vacuous: the generator reaches approvals."""
    approved = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(sc=scenario())
    def run(sc: tuple[RiskContext, dict[str, Any]]) -> None:
        approved.append(_engine(sc[1]).check(sc[0]) is None)

    run()
    assert sum(approved) >= 5, f"only {sum(approved)} of {len(approved)} approved"
