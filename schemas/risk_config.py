"""Config of the account, sizing, execution, market rules and the risk engine (docs/risk.md,
docs/execution.md). `schemas/config.py` puts these sections into `Config`; the builders of the
operators they configure are in operators/risk/build.py.

Every `[risk.<rule>]` section has `enabled` plus exactly the fields of the rule's dataclass in
operators/risk/<rule>.py, with the same defaults and bounds (a test holds them equal). Numbers
must be finite; counts and durations (int nanoseconds, like every time in the project) must be
TOML integers.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NS_PER_MINUTE = 60 * 10**9


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Finite(_Section):
    """A section whose numbers must be finite: no `inf` / `nan` limits (use `enabled = false`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --- account ------------------------------------------------------------------------------------


class PortfolioConfig(_Finite):
    """One account shared by all symbols (ADR 0009; operators/account.py, docs/execution.md)."""

    initial_cash: float = Field(1_000_000.0, gt=0)
    currency: str = "USDT"
    kind: Literal["spot", "margin"] = "spot"
    max_leverage: float = Field(1.0, ge=1)  # spot: must be 1; margin: gross / equity cap
    maintenance_rate: float = Field(0.0, ge=0)  # spot: must be 0; margin: [0, 1/max_leverage)
    liquidation_fee_bps: float = Field(0.0, ge=0)  # of the liquidated notional, from cash

    @model_validator(mode="after")
    def _kind(self) -> PortfolioConfig:
        if self.kind == "spot":
            if self.max_leverage != 1.0:
                raise ValueError(
                    f"portfolio.max_leverage ({self.max_leverage:g}) must be 1 for a spot "
                    'account (set portfolio.kind = "margin" to trade with leverage)'
                )
            if self.maintenance_rate != 0.0:
                raise ValueError(
                    f"portfolio.maintenance_rate ({self.maintenance_rate:g}) must be 0 for a "
                    'spot account (set portfolio.kind = "margin")'
                )
        elif not self.maintenance_rate < 1.0 / self.max_leverage:
            raise ValueError(
                f"portfolio.maintenance_rate ({self.maintenance_rate:g}) must be below the "
                f"initial margin rate 1/portfolio.max_leverage ({1.0 / self.max_leverage:g})"
            )
        return self


class SizingConfig(_Finite):
    """How big an entry is (`fraction` and `max_fraction` are checked against
    `portfolio.max_leverage` by `Config`)."""

    mode: Literal["fraction", "fixed_notional", "vol_target"] = "fraction"
    fraction: float = Field(1.0, gt=0)  # fraction: of account equity per position; 1 = all-in
    notional: float = Field(10_000.0, gt=0)  # fixed_notional: quote per position
    target_vol: float = Field(0.2, gt=0)  # vol_target: annualized vol of each position
    vol_window: int = Field(60, ge=2, strict=True)  # vol_target: bars of realized vol
    max_fraction: float = Field(1.0, gt=0)  # vol_target: cap, fraction of equity
    round_to_lot: bool = True  # floor quantities to the symbol's lot size ([markets])


class ExecutionConfig(_Finite):
    """Fills, fees and slippage (operators/execution_sim.py, docs/execution.md)."""

    fee_bps: float = Field(10.0, ge=0)  # taker: market and stop fills
    maker_fee_bps: float | None = Field(None, ge=0)  # resting limit fills; unset = fee_bps
    slippage_bps: float = Field(0.0, ge=0)  # fixed part, taker fills
    k_size_bps: float = Field(0.0, ge=0)  # per unit of fill qty / bar volume
    k_vol_bps: float = Field(0.0, ge=0)  # per unit of bar range / open
    latency_ms: float = Field(0.0, ge=0)  # active at the first bar open >= submit + latency
    # of each bar's volume that a symbol's orders may fill (the rest keeps working or expires);
    # inf = no cap: every order fills in full at its price, whatever the bar's volume
    max_volume_share: float = Field(0.1, gt=0, allow_inf_nan=True)
    time_in_force: Literal["GTC", "IOC"] = "GTC"  # entry / signal orders

    @field_validator("max_volume_share")
    @classmethod
    def _share(cls, v: float) -> float:
        if not (v <= 1.0 or v == math.inf):
            raise ValueError(f"must be in (0, 1], or inf for no cap (got {v})")
        return v

    def maker_fee(self) -> float:
        """The effective maker fee in bps: `maker_fee_bps`, or `fee_bps` when unset."""
        return self.fee_bps if self.maker_fee_bps is None else self.maker_fee_bps


class MarketConfig(_Finite):
    """One symbol's exchange filters (Binance spot PRICE_FILTER, LOT_SIZE, NOTIONAL); 0 = none."""

    tick_size: float = Field(ge=0)
    lot_size: float = Field(ge=0)
    min_notional: float = Field(ge=0)


# Binance spot's real filters (exchangeInfo); operators/risk/context.BINANCE_SPOT_SPECS holds the
# same values (a test keeps them equal: schemas must not import operators).
BINANCE_SPOT_MARKETS: dict[str, MarketConfig] = {
    "BTCUSDT": MarketConfig(tick_size=0.01, lot_size=0.00001, min_notional=5.0),
    "ETHUSDT": MarketConfig(tick_size=0.01, lot_size=0.0001, min_notional=5.0),
    "SOLUSDT": MarketConfig(tick_size=0.01, lot_size=0.001, min_notional=5.0),
}


def merge_markets(value: object) -> object:
    """The built-in markets with the file's entries on top: an entry replaces the default of its
    symbol only. Symbols are upper-cased like `symbols`."""
    if not isinstance(value, dict):
        return value  # pydantic says what is wrong with it
    given: dict[str, object] = {}
    for sym, spec in value.items():
        key = sym.upper() if isinstance(sym, str) else sym
        if key in given:
            raise ValueError(f"duplicate market {key!r} (symbols are case-insensitive)")
        given[key] = spec
    return {**BINANCE_SPOT_MARKETS, **given}


# --- risk ---------------------------------------------------------------------------------------

Pct = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1, strict=True)]


class _Rule(_Finite):
    enabled: bool = True


class MinNotionalConfig(_Rule):
    min_notional: float | None = Field(None, ge=0)  # quote; unset = the symbol's [markets] filter


class LotTickConfig(_Rule):
    pass


class PriceBandConfig(_Rule):
    max_bps: float = Field(500.0, gt=0)


class MaxOrderNotionalConfig(_Rule):
    max_notional: float = Field(50_000.0, gt=0)  # quote


class MaxPositionPctConfig(_Rule):
    max_pct: Pct = 0.08  # of equity


class MaxLeverageConfig(_Rule):
    max_leverage: float = Field(5.0, gt=0)


class MaxDailyLossConfig(_Rule):
    max_pct: Pct = 0.02  # of start-of-day equity


class MaxTradesPerDayConfig(_Rule):
    max_trades: Count = 15


class LossCooldownConfig(_Rule):
    max_consecutive: Count = 8
    cooldown_ns: int = Field(60 * NS_PER_MINUTE, ge=0, strict=True)


class GrossExposureConfig(_Rule):
    max_pct: Pct = 1.0  # of equity


class NetExposureConfig(_Rule):
    max_pct: Pct = 1.0  # of equity


class PerAssetCapConfig(_Rule):
    max_pct: Pct = 0.10  # of equity, per base asset
    caps: tuple[tuple[str, Pct], ...] = ()  # per-asset overrides: caps = [["BTC", 0.2]]

    @field_validator("caps")
    @classmethod
    def _assets(cls, v: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
        caps = tuple((asset.upper(), cap) for asset, cap in v)
        assets = [a for a, _ in caps]
        if not all(assets):
            raise ValueError("per_asset_cap.caps: an asset name is empty")
        if len(set(assets)) != len(assets):
            raise ValueError(f"per_asset_cap.caps: duplicate assets in {assets}")
        return caps


class MaxOpenPositionsConfig(_Rule):
    max_positions: Count = 10


class ReduceOnlyConfig(_Rule):
    pass


class DrawdownBreakerConfig(_Rule):
    max_drawdown: float = Field(0.05, gt=0)  # of peak equity


class BlackSwanConfig(_Rule):
    k: float = Field(3.0, gt=0)  # x normal volatility


class StaleDataConfig(_Rule):
    max_age_ns: int = Field(3 * NS_PER_MINUTE, gt=0, strict=True)


class MinSharpeConfig(_Rule):
    min_sharpe: float = 0.0


class StopLossConfig(_Rule):
    pct: float = Field(0.005, gt=0, lt=1)


class TakeProfitConfig(_Rule):
    pct: float = Field(0.015, gt=0)


class TrailingStopConfig(_Rule):
    pct: float = Field(0.01, gt=0, lt=1)


class StateConfig(_Section):
    """The trading state machine (operators/risk/state.py)."""

    black_swan_action: Literal["reducing", "halted"] = "reducing"
    flatten_on_halt: bool = True


class MonitorConfig(_Section):
    """The windows of what the rules are fed: realized and normal volatility, rolling Sharpe."""

    vol_window: int = Field(60, ge=2, strict=True)  # bars: the black swan's realized vol
    normal_window: int = Field(10_080, ge=2, strict=True)  # bars: its normal level; > vol_window
    sharpe_window: int = Field(10_080, ge=2, strict=True)  # bars: min_sharpe's rolling Sharpe

    @model_validator(mode="after")
    def _windows(self) -> MonitorConfig:
        if self.normal_window <= self.vol_window:
            raise ValueError(
                f"risk.monitor.normal_window ({self.normal_window}) must be > "
                f"vol_window ({self.vol_window})"
            )
        return self


class RiskConfig(_Section):
    """`enabled = false`: no pre-trade rules, exits or breakers at all. The rule sections are in
    docs/risk.md's order (the engine's order within a tier)."""

    enabled: bool = True
    min_notional: MinNotionalConfig = MinNotionalConfig()
    lot_tick: LotTickConfig = LotTickConfig()
    price_band: PriceBandConfig = PriceBandConfig()
    max_order_notional: MaxOrderNotionalConfig = MaxOrderNotionalConfig()
    max_position_pct: MaxPositionPctConfig = MaxPositionPctConfig()
    max_leverage: MaxLeverageConfig = MaxLeverageConfig()
    max_daily_loss: MaxDailyLossConfig = MaxDailyLossConfig()
    max_trades_per_day: MaxTradesPerDayConfig = MaxTradesPerDayConfig()
    loss_cooldown: LossCooldownConfig = LossCooldownConfig()
    gross_exposure: GrossExposureConfig = GrossExposureConfig()
    net_exposure: NetExposureConfig = NetExposureConfig()
    per_asset_cap: PerAssetCapConfig = PerAssetCapConfig()
    max_open_positions: MaxOpenPositionsConfig = MaxOpenPositionsConfig()
    reduce_only: ReduceOnlyConfig = ReduceOnlyConfig()
    drawdown_breaker: DrawdownBreakerConfig = DrawdownBreakerConfig()
    black_swan: BlackSwanConfig = BlackSwanConfig()
    stale_data: StaleDataConfig = StaleDataConfig()
    min_sharpe: MinSharpeConfig = MinSharpeConfig()
    stop_loss: StopLossConfig = StopLossConfig()
    take_profit: TakeProfitConfig = TakeProfitConfig()
    trailing_stop: TrailingStopConfig = TrailingStopConfig()
    state: StateConfig = StateConfig()
    monitor: MonitorConfig = MonitorConfig()


CHECK_SECTIONS: tuple[str, ...] = (
    "min_notional",
    "lot_tick",
    "price_band",
    "max_order_notional",
    "max_position_pct",
    "max_leverage",
    "max_daily_loss",
    "max_trades_per_day",
    "loss_cooldown",
    "gross_exposure",
    "net_exposure",
    "per_asset_cap",
    "max_open_positions",
    "reduce_only",
    "drawdown_breaker",
    "black_swan",
    "stale_data",
    "min_sharpe",
)
EXIT_SECTIONS: tuple[str, ...] = ("stop_loss", "take_profit", "trailing_stop")
