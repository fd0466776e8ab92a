"""The one account of a run, built from its config: account kind, execution simulator, sizing,
market rules, risk engine, exits, trading state and risk monitor (operators/account_trader.py)."""

from __future__ import annotations

from collections.abc import Sequence

from operators.account import Account
from operators.account_trader import ACCOUNT, AccountTrader
from operators.execution_sim import ExecutionSim, SimConfig
from operators.risk.brackets import Brackets
from operators.risk.build import exit_rules, risk_engine, symbol_specs, trading_state
from operators.risk.monitor import RiskMonitor
from operators.sizing import FixedNotional, FractionOfEquity, Sizer, VolTarget
from schemas.config import Config
from schemas.messages import NS_PER_DAY, NS_PER_SECOND

BPS = 1e-4


def sizer(cfg: Config) -> Sizer:
    s = cfg.sizing
    if s.mode == "fixed_notional":
        return FixedNotional(s.notional)
    if s.mode == "vol_target":
        bars_per_year = 365 * NS_PER_DAY / (cfg.bars.interval_s * NS_PER_SECOND)
        return VolTarget(s.target_vol, s.max_fraction, bars_per_year)
    return FractionOfEquity(s.fraction)


def new_trader(cfg: Config, symbols: Sequence[str]) -> AccountTrader:
    """A fresh account for `symbols` (ValueError naming the problem for a config it cannot run)."""
    p, x, risk = cfg.portfolio, cfg.execution, cfg.risk
    specs = symbol_specs(cfg.markets)
    account = Account(
        ACCOUNT,
        p.initial_cash,
        kind=p.kind,
        max_leverage=p.max_leverage,
        maintenance_rate=p.maintenance_rate,
        liquidation_fee_rate=p.liquidation_fee_bps * BPS,
    )
    lots = (
        tuple((s, specs[s].lot_size) for s in sorted(symbols) if s in specs)
        if cfg.sizing.round_to_lot
        else ()
    )
    sim = ExecutionSim(
        SimConfig(
            maker_fee_bps=x.maker_fee(),
            taker_fee_bps=x.fee_bps,
            slippage_bps=x.slippage_bps,
            k_size_bps=x.k_size_bps,
            k_vol_bps=x.k_vol_bps,
            latency_ns=round(x.latency_ms * 1_000_000),
            max_volume_share=x.max_volume_share,
            lot_sizes=lots,
        )
    )
    exits = {r.name: r for r in exit_rules(risk)}
    stops = tuple(exits[n] for n in ("stop_loss", "trailing_stop") if n in exits)
    m = risk.monitor
    monitor = RiskMonitor(
        p.initial_cash,
        vol_window=m.vol_window,
        normal_window=m.normal_window,
        sharpe_window=m.sharpe_window,
        bar_interval_ns=cfg.bars.interval_s * NS_PER_SECOND,
        # measure only what something reads (each is a per-bar cost)
        track_vol=risk.enabled and risk.black_swan.enabled,
        track_sharpe=risk.enabled and risk.min_sharpe.enabled,
        forecast_window=cfg.sizing.vol_window if cfg.sizing.mode == "vol_target" else None,
    )
    return AccountTrader(
        symbols,
        account,
        sim=sim,
        sizer=sizer(cfg),
        engine=risk_engine(risk),
        state=trading_state(risk),
        brackets=Brackets(stops, exits.get("take_profit")),
        monitor=monitor,
        specs=specs,
        round_to_lot=cfg.sizing.round_to_lot,
        allow_short=p.kind == "margin" and not cfg.strategy.long_only,
        time_in_force=x.time_in_force,
    )
