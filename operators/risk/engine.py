"""The pre-trade risk engine: every configured check, in tier order, over one `RiskContext`.

`check` returns the first denial (tiers ORDER, POSITION, DAILY, PORTFOLIO, SYSTEM; configured
order within a tier): one intent gets one `OrderDenied`, as the account step already emits, and the
cheapest, most specific reason wins. `check_all` returns every denial for diagnostics and tests.
A rule that raises despite its contract denies (fail closed) instead of stopping the flow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from operators.risk.black_swan import BlackSwan
from operators.risk.context import Denial, RiskCheck, RiskContext
from operators.risk.drawdown_breaker import DrawdownBreaker
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


def default_rules() -> tuple[RiskCheck, ...]:
    """Every check with its documented default (docs/risk.md)."""
    return (
        MinNotional(),
        LotTick(),
        PriceBand(),
        MaxOrderNotional(),
        MaxPositionPct(),
        MaxLeverage(),
        MaxDailyLoss(),
        MaxTradesPerDay(),
        LossCooldown(),
        GrossExposure(),
        NetExposure(),
        PerAssetCap(),
        MaxOpenPositions(),
        ReduceOnly(),
        DrawdownBreaker(),
        BlackSwan(),
        StaleData(),
        MinSharpe(),
    )


@dataclass(frozen=True)
class RiskEngine:
    rules: tuple[RiskCheck, ...]

    def __init__(self, rules: Iterable[RiskCheck] | None = None) -> None:
        chosen = default_rules() if rules is None else tuple(rules)
        names = [r.name for r in chosen]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate risk rules: {sorted(names)}")
        # sorted() is stable: configured order survives within a tier
        object.__setattr__(self, "rules", tuple(sorted(chosen, key=lambda r: r.tier)))

    def check(self, ctx: RiskContext) -> Denial | None:
        for rule in self.rules:
            denial = _run(rule, ctx)
            if denial is not None:
                return denial
        return None

    def check_all(self, ctx: RiskContext) -> tuple[Denial, ...]:
        return tuple(d for d in (_run(r, ctx) for r in self.rules) if d is not None)


def _run(rule: RiskCheck, ctx: RiskContext) -> Denial | None:
    try:
        return rule.check(ctx)
    except Exception as exc:  # a broken rule must not let orders through or stop the flow
        return Denial(rule.name, f"rule error {type(exc).__name__}: {exc}", float("nan"), 0.0)
