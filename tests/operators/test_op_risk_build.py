"""The risk operators built from config (operators/risk/build.py): defaults give docs/risk.md's
defaults, disabled rules are absent, every configured value reaches its instance, risk off gives
nothing, and a disabled breaker never trips the state machine."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest

from operators.risk import build
from operators.risk.black_swan import BlackSwan
from operators.risk.context import BINANCE_SPOT_SPECS, MarketView, RiskContext, SymbolSpec
from operators.risk.drawdown_breaker import DrawdownBreaker
from operators.risk.engine import RiskEngine, default_rules
from operators.risk.stale_data import StaleData
from operators.risk.state import Mode
from operators.risk.stop_loss import StopLoss
from operators.risk.take_profit import TakeProfit
from operators.risk.trailing_stop import TrailingStop
from schemas.config import Config, load_config
from schemas.risk_config import CHECK_SECTIONS, EXIT_SECTIONS, MarketConfig, RiskConfig
from tests.paths import ROOT

TS = 1_704_067_200_000_000_000
SECTIONS = (*CHECK_SECTIONS, *EXIT_SECTIONS)
STATE_ATTR = {"drawdown_breaker": "drawdown", "black_swan": "black_swan", "stale_data": "stale"}

# a non-default value for every configurable field of every rule (and the state machine)
CHANGED: dict[str, dict[str, object]] = {
    "min_notional": {"min_notional": 12.5},
    "price_band": {"max_bps": 250.0},
    "max_order_notional": {"max_notional": 20_000.0},
    "max_position_pct": {"max_pct": 0.12},
    "max_leverage": {"max_leverage": 2.5},
    "max_daily_loss": {"max_pct": 0.03},
    "max_trades_per_day": {"max_trades": 40},
    "loss_cooldown": {"max_consecutive": 3, "cooldown_ns": 900_000_000_000},
    "gross_exposure": {"max_pct": 2.0},
    "net_exposure": {"max_pct": 0.5},
    "per_asset_cap": {"max_pct": 0.3, "caps": (("BTC", 0.4), ("ETH", 0.2))},
    "max_open_positions": {"max_positions": 3},
    "drawdown_breaker": {"max_drawdown": 0.1},
    "black_swan": {"k": 4.5},
    "stale_data": {"max_age_ns": 300_000_000_000},
    "min_sharpe": {"min_sharpe": -0.25},
    "stop_loss": {"pct": 0.02},
    "take_profit": {"pct": 0.05},
    "trailing_stop": {"pct": 0.03},
}


def _risk(**sections: dict[str, object]) -> RiskConfig:
    return RiskConfig.model_validate(sections)


def _fields(obj: object) -> dict[str, object]:
    assert dataclasses.is_dataclass(obj) and not isinstance(obj, type)
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def test_every_rule_field_is_a_config_field() -> None:
    """Nothing configurable is silently dropped, nothing configured is ignored."""
    assert tuple(build.CHECKS) == CHECK_SECTIONS and tuple(build.EXITS) == EXIT_SECTIONS
    for name, rule in (*build.CHECKS.items(), *build.EXITS.items()):
        assert isinstance(rule, type) and dataclasses.is_dataclass(rule)
        assert rule.name == name  # type: ignore[attr-defined]
        section = type(getattr(RiskConfig(), name))
        dataclass_fields = {f.name for f in dataclasses.fields(rule)}
        assert dataclass_fields == set(section.model_fields) - {"enabled"}, name
        assert set(CHANGED.get(name, {})) == dataclass_fields, f"CHANGED misses {name}"


def test_defaults_build_every_rule_with_the_docs_defaults() -> None:
    risk = RiskConfig()
    assert build.check_rules(risk) == default_rules()  # same values, docs order
    assert build.risk_engine(risk).rules == RiskEngine().rules
    assert build.exit_rules(risk) == (StopLoss(), TakeProfit(), TrailingStop())
    state = build.trading_state(risk)
    assert state is not None
    assert type(state.drawdown) is DrawdownBreaker and state.drawdown == DrawdownBreaker()
    assert type(state.black_swan) is BlackSwan and state.black_swan == BlackSwan()
    assert type(state.stale) is StaleData and state.stale == StaleData()
    assert state.black_swan_action is Mode.REDUCING and state.flatten_on_halt is True
    assert state.mode is Mode.ACTIVE


def test_configured_values_reach_the_instances() -> None:
    risk = _risk(**CHANGED, state={"black_swan_action": "halted", "flatten_on_halt": False})
    built = {r.name: r for r in (*build.check_rules(risk), *build.exit_rules(risk))}
    assert set(built) == set(SECTIONS)
    for name, values in CHANGED.items():
        assert _fields(built[name]) == values, name
    state = build.trading_state(risk)
    assert state is not None
    assert state.drawdown == built["drawdown_breaker"]
    assert state.black_swan == built["black_swan"]
    assert state.stale == built["stale_data"]
    assert state.black_swan_action is Mode.HALTED and state.flatten_on_halt is False


def test_the_engine_keeps_docs_order_within_a_tier() -> None:
    rules = build.risk_engine(RiskConfig()).rules
    assert [r.name for r in rules] == list(CHECK_SECTIONS)  # docs order is tier order
    tiers = [r.tier for r in rules]
    assert tiers == sorted(tiers)


@pytest.mark.parametrize("name", SECTIONS)
def test_a_disabled_rule_is_absent(name: str) -> None:
    risk = _risk(**{name: {"enabled": False}})
    names = [r.name for r in (*build.risk_engine(risk).rules, *build.exit_rules(risk))]
    assert names == [n for n in SECTIONS if n != name]


def test_everything_disabled_but_risk_on() -> None:
    risk = _risk(**{n: {"enabled": False} for n in SECTIONS})
    assert build.risk_engine(risk).rules == () and build.exit_rules(risk) == ()
    assert build.trading_state(risk) is not None  # the kill switch still works
    state = build.trading_state(risk)
    assert state is not None and state.halt(TS, "operator").events


def test_risk_off_builds_nothing() -> None:
    risk = _risk(enabled=False)  # every rule section still says enabled = true
    engine = build.risk_engine(risk)
    assert engine == RiskEngine(()) and engine.rules == ()
    assert build.exit_rules(risk) == ()
    assert build.trading_state(risk) is None
    ctx = RiskContext.build(ts=TS, symbol="BTCUSDT", side="buy", qty=math.nan, price=-1.0)
    assert engine.check(ctx) is None  # an empty engine passes everything


def _book(**kw: object) -> RiskContext:
    common: dict[str, object] = {
        "ts": TS,
        "symbol": "BTCUSDT",
        "side": "buy",
        "qty": 0.0,
        "price": 40_000.0,
        "equity": 100.0,
        "peak_equity": 100.0,
        "positions": {"BTCUSDT": 0.001},
        "marks": {"BTCUSDT": 40_000.0},
        "market": {
            "BTCUSDT": MarketView(40_000.0, realized_vol=0.01, normal_vol=0.01, last_bar_ts=TS)
        },
    }
    common.update(kw)
    return RiskContext.build(**common)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("section", "ctx"),
    [
        ("drawdown_breaker", _book(equity=50.0)),  # 50% below peak
        ("drawdown_breaker", _book(peak_equity=0.0)),  # a trip even a huge limit would not skip
        (
            "black_swan",
            _book(market={"BTCUSDT": MarketView(4e4, 1.0, 0.01, TS)}),  # 100x normal vol
        ),
        ("stale_data", _book(market={"BTCUSDT": MarketView(4e4, 0.01, 0.01, TS - 10**12)})),
        ("stale_data", _book(market={})),  # no bar seen at all
    ],
    ids=["drawdown", "no-peak", "black-swan", "stale", "no-bar"],
)
def test_a_disabled_breaker_never_trips_the_state_machine(section: str, ctx: RiskContext) -> None:
    on = build.trading_state(RiskConfig())
    assert on is not None
    moved = on.observe(ctx)
    assert moved.events, "the enabled breaker should trip on this book"
    off = build.trading_state(_risk(**{section: {"enabled": False}}))
    assert off is not None
    quiet = off.observe(ctx)
    assert quiet.events == () and quiet.exits == ()
    assert off.mode is Mode.ACTIVE and not off.reduce_only("BTCUSDT")
    # the disabled variant keeps the configured values and pickles (recovery snapshots)
    breaker = getattr(off, STATE_ATTR[section])
    assert type(breaker).__name__.startswith("Disabled")
    assert isinstance(breaker, type(getattr(on, STATE_ATTR[section])))
    assert _fields(breaker) == _fields(getattr(on, STATE_ATTR[section]))
    clone = pickle.loads(pickle.dumps(breaker))
    assert clone == breaker and type(clone) is type(breaker)


def test_disabled_breakers_keep_the_others_working() -> None:
    off = build.trading_state(_risk(black_swan={"enabled": False}, stale_data={"enabled": False}))
    assert off is not None
    moved = off.observe(_book(equity=50.0))
    assert off.mode is Mode.HALTED and moved.events[0].new is Mode.HALTED
    assert moved.exits and moved.exits[0].symbol == "BTCUSDT"  # flatten_on_halt


def test_symbol_specs() -> None:
    assert build.symbol_specs(Config().markets) == dict(BINANCE_SPOT_SPECS)
    specs = build.symbol_specs(
        {"XRPUSDT": MarketConfig(tick_size=0.0001, lot_size=0.1, min_notional=5.0)}
    )
    assert specs == {"XRPUSDT": SymbolSpec(tick_size=0.0001, lot_size=0.1, min_notional=5.0)}
    ctx = RiskContext.build(
        ts=TS, symbol="XRPUSDT", side="buy", qty=10.0, price=0.5, spec=specs["XRPUSDT"]
    )
    assert (ctx.tick_size, ctx.lot_size, ctx.min_notional) == (0.0001, 0.1, 5.0)


def test_the_example_profiles() -> None:
    limits = load_config(ROOT / "examples" / "risk_limits.toml")
    assert [r.name for r in build.risk_engine(limits.risk).rules] == list(CHECK_SECTIONS)
    assert len(build.exit_rules(limits.risk)) == 3
    assert build.trading_state(limits.risk) is not None
    assert build.symbol_specs(limits.markets)["ETHUSDT"] == BINANCE_SPOT_SPECS["ETHUSDT"]
    ref = load_config(ROOT / "examples" / "sma_cross.toml")
    assert build.risk_engine(ref.risk).rules == () and build.exit_rules(ref.risk) == ()
    assert build.trading_state(ref.risk) is None
