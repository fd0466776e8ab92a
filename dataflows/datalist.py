"""`cryptoflow data list`: what a source holds, per symbol — first and last time, count, and the
gaps in bar series (like freqtrade's `list-data`). Also used to say what a source does hold when
a requested range or symbol finds nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import polars as pl
from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class SymbolData:
    symbol: str
    first_ns: int
    last_ns: int
    count: int
    interval_ns: int  # bars: smallest spacing seen (the bar interval); 0 for trades
    gaps: int  # places where the spacing exceeds the interval (bars only)
    missing: int  # bars missing in those gaps
    duplicates: int  # records sharing a timestamp with another (bars only)


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def summarize(symbol: str, ts: npt.NDArray[np.int64], bars: bool) -> SymbolData:
    ts = np.sort(ts)
    d = np.diff(ts)
    pos = d[d > 0]
    interval = int(pos.min()) if len(pos) and bars else 0
    gaps = missing = dups = 0
    if bars and interval:
        big = pos[pos > interval]
        gaps = len(big)
        missing = int(((big // interval) - 1).sum())
        dups = int((d == 0).sum())
    return SymbolData(symbol, int(ts[0]), int(ts[-1]), len(ts), interval, gaps, missing, dups)


def file_inventory(path: str) -> tuple[list[SymbolData], str]:
    """(per-symbol data, kind) of a bar or trade file (globs allowed, as `--source file:`)."""
    from dataflows.io.files import detect_kind, normalized, scan

    lf = scan(path)
    kind = detect_kind(lf)
    df = normalized(lf, kind, venue=None).select("symbol", "ts_event").collect()
    out = []
    for (sym,), part in df.group_by(["symbol"], maintain_order=True):
        out.append(summarize(str(sym), part["ts_event"].to_numpy(), kind == "bars"))
    return sorted(out, key=lambda s: s.symbol), kind


def describe(data: list[SymbolData]) -> str:
    """One line per symbol, for error messages."""
    if not data:
        return "nothing"
    return "; ".join(
        f"{d.symbol}: {d.count:,} from {_utc(d.first_ns)} to {_utc(d.last_ns)} UTC" for d in data
    )


def print_inventory(data: list[SymbolData], title: str, console: Console) -> None:
    t = Table(title=title)
    for col in (
        "symbol",
        "first (UTC)",
        "last (UTC)",
        "count",
        "interval",
        "gaps",
        "missing",
        "duplicates",
    ):
        t.add_column(col, justify="right" if col not in ("symbol",) else "left")
    for d in data:
        t.add_row(
            d.symbol,
            _utc(d.first_ns),
            _utc(d.last_ns),
            f"{d.count:,}",
            f"{d.interval_ns / 1e9:g} s" if d.interval_ns else "-",
            f"{d.gaps:,}",
            f"{d.missing:,}",
            f"{d.duplicates:,}",
        )
    console.print(t)
    if not data:
        console.print("the source holds no records")


__all__ = ["SymbolData", "describe", "file_inventory", "print_inventory", "summarize"]
_ = pl  # polars is the file reader's dependency; imported here so a missing install fails early
