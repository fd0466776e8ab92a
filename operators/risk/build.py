"""The risk operators a config asks for: the engine's checks, the exit generators, the trading
state machine and the symbols' exchange filters (schemas/risk_config.py, docs/risk.md).

Each rule gets exactly the values of its `[risk.<rule>]` section (every field but `enabled`; a
test holds the two field sets equal, so nothing configurable is dropped). `[risk] enabled =
false` gives an empty engine, no exits and no state machine.

A breaker rule switched off (`drawdown_breaker`, `black_swan`, `stale_data` with `enabled =
false`) is absent from the engine and must not trip the state machine either. `TradingState`
takes breaker instances (None means the default one, which would trip), so it gets a disabled
variant: the rule's subclass whose `breach` never reports one. A large limit would not do:
DrawdownBreaker(max_drawdown=inf) still trips on a non-positive peak, StaleData on a symbol
with no bar yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from operators.risk.black_swan import BlackSwan
from operators.risk.context import Denial, RiskCheck, RiskContext, SymbolSpec
from operators.risk.drawdown_breaker import DrawdownBreaker
from operators.risk.engine import RiskEngine
from operators.risk.exits import ExitRule
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
from operators.risk.state import Mode, TradingState
from operators.risk.stop_loss import StopLoss
from operators.risk.take_profit import TakeProfit
from operators.risk.trailing_stop import TrailingStop
from schemas.risk_config import CHECK_SECTIONS, EXIT_SECTIONS, MarketConfig, RiskConfig

# [risk.<section>] -> the rule it configures, in docs/risk.md's order
CHECKS: Mapping[str, Callable[..., RiskCheck]] = {
    "min_notional": MinNotional,
    "lot_tick": LotTick,
    "price_band": PriceBand,
    "max_order_notional": MaxOrderNotional,
    "max_position_pct": MaxPositionPct,
    "max_leverage": MaxLeverage,
    "max_daily_loss": MaxDailyLoss,
    "max_trades_per_day": MaxTradesPerDay,
    "loss_cooldown": LossCooldown,
    "gross_exposure": GrossExposure,
    "net_exposure": NetExposure,
    "per_asset_cap": PerAssetCap,
    "max_open_positions": MaxOpenPositions,
    "reduce_only": ReduceOnly,
    "drawdown_breaker": DrawdownBreaker,
    "black_swan": BlackSwan,
    "stale_data": StaleData,
    "min_sharpe": MinSharpe,
}
EXITS: Mapping[str, Callable[..., ExitRule]] = {
    "stop_loss": StopLoss,
    "take_profit": TakeProfit,
    "trailing_stop": TrailingStop,
}
assert tuple(CHECKS) == CHECK_SECTIONS and tuple(EXITS) == EXIT_SECTIONS


def symbol_specs(markets: Mapping[str, MarketConfig]) -> dict[str, SymbolSpec]:
    """`Config.markets` -> the `SymbolSpec` per symbol that `RiskContext.build` takes."""
    return {
        sym: SymbolSpec(tick_size=m.tick_size, lot_size=m.lot_size, min_notional=m.min_notional)
        for sym, m in markets.items()
    }


def _values(risk: RiskConfig, section: str) -> dict[str, object]:
    cfg = getattr(risk, section)
    return {k: v for k, v in cfg.model_dump().items() if k != "enabled"}


def _enabled(risk: RiskConfig, section: str) -> bool:
    return risk.enabled and bool(getattr(risk, section).enabled)


def check_rules(risk: RiskConfig) -> tuple[RiskCheck, ...]:
    """One instance per enabled check, with its configured values, in docs/risk.md's order."""
    return tuple(
        rule(**_values(risk, name)) for name, rule in CHECKS.items() if _enabled(risk, name)
    )


def risk_engine(risk: RiskConfig) -> RiskEngine:
    """The pre-trade engine of `[risk]`; `RiskEngine(())` (passes everything) when risk is off."""
    return RiskEngine(check_rules(risk))


def exit_rules(risk: RiskConfig) -> tuple[ExitRule, ...]:
    """The enabled exit generators (stop_loss, take_profit, trailing_stop); none when risk is
    off."""
    return tuple(
        rule(**_values(risk, name)) for name, rule in EXITS.items() if _enabled(risk, name)
    )


@dataclass(frozen=True)
class DisabledDrawdownBreaker(DrawdownBreaker):
    """`[risk.drawdown_breaker] enabled = false` for the state machine: never a breach."""

    def breach(self, ctx: RiskContext, symbol: str) -> Denial | None:
        return None


@dataclass(frozen=True)
class DisabledBlackSwan(BlackSwan):
    """`[risk.black_swan] enabled = false` for the state machine: never a breach."""

    def breach(self, ctx: RiskContext, symbol: str) -> Denial | None:
        return None


@dataclass(frozen=True)
class DisabledStaleData(StaleData):
    """`[risk.stale_data] enabled = false` for the state machine: never stale."""

    def breach(self, ctx: RiskContext, symbol: str) -> Denial | None:
        return None


def trading_state(risk: RiskConfig) -> TradingState | None:
    """The state machine of `[risk]` with the configured breakers (a disabled one never trips);
    None when risk is off."""
    if not risk.enabled:
        return None
    dd, swan, stale = risk.drawdown_breaker, risk.black_swan, risk.stale_data
    return TradingState(
        drawdown=(DrawdownBreaker if dd.enabled else DisabledDrawdownBreaker)(
            max_drawdown=dd.max_drawdown
        ),
        black_swan=(BlackSwan if swan.enabled else DisabledBlackSwan)(k=swan.k),
        stale=(StaleData if stale.enabled else DisabledStaleData)(max_age_ns=stale.max_age_ns),
        black_swan_action=Mode(risk.state.black_swan_action),
        flatten_on_halt=risk.state.flatten_on_halt,
    )
