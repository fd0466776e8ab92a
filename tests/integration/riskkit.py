"""Helpers of the risk integration tests (test_risk_crash_windows.py,
test_risk_liquidation_rally.py): the real shared 1m bars sliced to a window, configs on top of
examples/risk_limits.toml, and views of a run's account stream (equity, positions, orders),
each computed from the emitted messages and the bars, never from the trader's internals."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from dataflows.io.files import normalized, scan, to_messages
from schemas.config import Config, load_config
from schemas.messages import (
    NS_PER_MINUTE,
    Bar,
    EquityPoint,
    Fill,
    Liquidation,
    Order,
    OrderDenied,
    OrderExpired,
    PositionSnapshot,
    TradingStateChanged,
)
from tests.dataflows.flowkit import batches, run_flow
from tests.paths import ROOT, SHARED

BARS_1M = SHARED / "bars_1m"
RISK_LIMITS = ROOT / "examples" / "risk_limits.toml"
# Everything the one account emits: one key, so its order is defined on any worker count.
ACCOUNT_TYPES = (
    Fill,
    Order,
    OrderDenied,
    OrderExpired,
    PositionSnapshot,
    EquityPoint,
    TradingStateChanged,
    Liquidation,
)
BPS = 1e-4
MAX_SLIPPAGE_BPS = 5_000.0  # docs/execution.md: the simulator's sanity cap


def bar_file(symbol: str, year: int) -> Path:
    return BARS_1M / f"binance_spot_{symbol.lower()}_1m_{year}.parquet"


def needs_files(*paths: Path) -> pytest.MarkDecorator:
    missing = [p.name for p in paths if not p.exists()]
    return pytest.mark.skipif(bool(missing), reason=f"needs the shared 1m bar files {missing}")


def ns(when: str) -> int:
    """'2021-05-19' or '2021-05-19T13:00' (UTC) -> int ns."""
    return int(datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


@cache
def window_bars(symbols: tuple[str, ...], year: int, start: str, end: str) -> tuple[Bar, ...]:
    """The real bars of `symbols` with open time in [start, end), read as `cryptoflow backtest`
    reads a file (dataflows.io.files), in (open time, symbol) order like a merged feed."""
    lo, hi = ns(start), ns(end)
    out: list[Bar] = []
    for sym in symbols:
        df = normalized(scan(bar_file(sym, year)), "bars", [sym], lo, hi).collect()
        assert df.height == (hi - lo) // NS_PER_MINUTE, f"{sym} has gaps in {start}..{end}"
        out += to_messages(df, "bars")
    return tuple(sorted(out, key=lambda b: (b.ts_event, b.symbol)))


def bar_index(bars: tuple[Bar, ...]) -> dict[tuple[str, int], Bar]:
    """(symbol, open time) -> bar."""
    return {(b.symbol, b.ts_event): b for b in bars}


def _deep(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        sub = base.get(k)
        out[k] = _deep(sub, v) if isinstance(v, Mapping) and isinstance(sub, dict) else v
    return out


def risk_config(**over: Any) -> Config:
    """examples/risk_limits.toml with `over` merged in section by section: nested dicts override
    only the keys they name, e.g. risk={"stop_loss": {"enabled": False}}."""
    base = load_config(RISK_LIMITS).model_dump()
    return Config.model_validate(_deep(base, over))


def run(cfg: Config, bars: tuple[Bar, ...], workers: int = 1) -> list[Any]:
    """The whole flow (decode, guard, features, strategy, account) in-process."""
    return run_flow(cfg, batches(list(bars), 2_000), kind="bars", workers=workers)


def of(events: list[Any], cls: type) -> list[Any]:
    return [e for e in events if type(e) is cls]


def account_stream(events: list[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, ACCOUNT_TYPES)]


def assert_same_run(one: list[Any], two: list[Any]) -> None:
    """Two runs emitted the same messages, and the account's own stream in the same order (how
    the per-symbol streams interleave with it is not defined, docs/adr/0009)."""
    assert len(one) == len(two)
    assert account_stream(one) == account_stream(two)
    assert sorted(map(repr, one)) == sorted(map(repr, two))


def equity_curve(events: list[Any]) -> list[EquityPoint]:
    pts = sorted(of(events, EquityPoint), key=lambda p: p.ts_event)
    assert len({p.ts_event for p in pts}) == len(pts), "one account equity point per close"
    return pts


def drawdowns(points: list[EquityPoint], initial_cash: float) -> list[tuple[int, float, float]]:
    """(close time, drawdown from the running peak, that peak) per equity point; the peak starts
    at the initial cash, as the risk monitor's does."""
    peak = initial_cash
    out = []
    for p in points:
        peak = max(peak, p.equity)
        out.append((p.ts_event, (peak - p.equity) / peak, peak))
    return out


def snapshots(events: list[Any], symbol: str | None = None) -> list[PositionSnapshot]:
    """Position snapshots (one after every fill or liquidation, taken at that bar's open, plus
    the final ones) in emission order, which is account order."""
    return [s for s in of(events, PositionSnapshot) if symbol is None or s.symbol == symbol]


def positions_before(events: list[Any], ts: int) -> dict[str, float]:
    """Each symbol's signed quantity after every fill with ts_event < ts: what the account held
    at the close `ts` (fills are stamped with the open time of the bar they filled in)."""
    held: dict[str, float] = {}
    for s in snapshots(events):
        if s.ts_event < ts:
            held[s.symbol] = s.qty
    return {k: v for k, v in held.items() if v != 0.0}


def orders(events: list[Any], cause: str | None = None) -> list[Order]:
    return [o for o in of(events, Order) if cause is None or o.cause == cause]


def taker_slippage_bps(cfg: Config, bar: Bar, qty: float) -> float:
    """docs/execution.md: fixed + k_size x fill qty / bar volume + k_vol x bar range / open."""
    x = cfg.execution
    bps = (
        x.slippage_bps
        + x.k_size_bps * qty / bar.volume
        + x.k_vol_bps * (bar.high - bar.low) / bar.open
    )
    return min(bps, MAX_SLIPPAGE_BPS)


def market_fill_price(cfg: Config, bar: Bar, side: str, qty: float) -> float:
    """Where a market order of `qty` fills in `bar`: its open, slipped against the trader."""
    s = taker_slippage_bps(cfg, bar, qty) * BPS
    return bar.open * (1.0 + s) if side == "buy" else bar.open * (1.0 - s)
