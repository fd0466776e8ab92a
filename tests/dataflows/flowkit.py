"""Helpers to run build_flow in-process with bytewax.testing on 1 or 2 workers."""

from __future__ import annotations

from typing import Any

import msgspec
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from dataflows.flow import FlowSinks, build_flow
from schemas.config import Config, load_config


def sma_config(symbols: list[str] | None = None, **over: Any) -> Config:
    from tests.paths import ROOT

    cfg = load_config(ROOT / "examples" / "sma_cross.toml")
    base = cfg.model_dump()
    # a section given as a dict overrides only its keys: the rest keep the example's values
    upd = {k: {**base[k], **v} if isinstance(v, dict) else v for k, v in over.items()}
    return Config.model_validate({**base, "symbols": symbols or cfg.symbols, **upd})


def run_flow(
    cfg: Config,
    source: Any,
    *,
    kind: str,
    workers: int = 1,
    symbols: list[str] | None = None,
) -> list[Any]:
    """Run the flow; return every emitted message."""
    out: list[Any] = []
    flow = build_flow(cfg, source, FlowSinks(events=TestingSink(out)), kind=kind, symbols=symbols)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return out


def batches(items: list[Any], size: int) -> TestingSource:
    """A TestingSource whose items are batches (lists), as real sources emit."""
    return TestingSource([items[i : i + size] for i in range(0, len(items), size)])


ACCOUNT_TYPES = (
    "Fill",
    "Order",
    "OrderDenied",
    "OrderExpired",
    "Liquidation",
    "TradingStateChanged",
    "PositionSnapshot",
    "EquityPoint",
)


def streams(events: list[Any]) -> tuple[list[Any], list[Any]]:
    """The flow's two ordered streams (docs/adr/0009): market messages (bars, signals, feature
    rows, dead letters, metrics), each symbol's messages of one kind in that symbol's order, and
    the account's (fills, orders, denials, positions, equity) in its defined order. How kinds
    and symbols interleave is not defined (a batch's feature rows follow its bars as one block,
    each producer's predictions as another), so the market stream comes grouped by (symbol,
    kind, producer), each group in its order."""
    market = sorted(
        (e for e in events if type(e).__name__ not in ACCOUNT_TYPES),
        key=lambda e: (
            str(getattr(e, "symbol", "")),
            type(e).__name__,
            str(getattr(e, "producer", "")),
        ),
    )
    account = [e for e in events if type(e).__name__ in ACCOUNT_TYPES]
    return market, account


def canonical(events: list[Any]) -> list[bytes]:
    """Events as comparable bytes (feature rows hold NaN during warm-up, and NaN != NaN)."""
    return [type(e).__name__.encode() + b":" + msgspec.json.encode(e) for e in events]
