"""`cryptoflow data list`: what a source holds, per symbol — first and last time, count, and the
gaps in bar series (like freqtrade's `list-data`). Also used to say what a source does hold when
a requested range or symbol finds nothing (`describe`).

Sources are the backtest's: `file:PATH_OR_GLOB` (parquet/CSV bars or trades, read with polars)
and `kafka:TOPIC` (every partition from its log start to the high watermark, keys = symbol and
record timestamps = event time only; a `*.trades.*` topic holds trades, any other bars)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from rich.console import Console
from rich.table import Table

from schemas.config import Config

NO_KEY = "(no key)"  # Kafka records without a key (never produced by `cryptoflow ingest`)


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
    venue: str = ""  # trade files with a venue column: whose trades these are ("" otherwise)


def utc_text(ns: int) -> str:
    """int ns -> "YYYY-MM-DD HH:MM:SS" (UTC), as every message of this module prints times."""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


_utc = utc_text


def summarize(symbol: str, ts: npt.NDArray[np.int64], bars: bool) -> SymbolData:
    """One symbol's record times (any order, not empty) -> its `SymbolData`."""
    ts = np.sort(np.asarray(ts, dtype=np.int64))
    d = np.diff(ts)
    pos = d[d > 0]
    interval = int(pos.min()) if len(pos) and bars else 0
    gaps = missing = dups = 0
    if bars:
        dups = int((d == 0).sum())
        if interval:
            big = pos[pos > interval]
            gaps = len(big)
            missing = int(((big // interval) - 1).sum())
    return SymbolData(symbol, int(ts[0]), int(ts[-1]), len(ts), interval, gaps, missing, dups)


def _by_symbol(df: pl.DataFrame, bars: bool) -> list[SymbolData]:
    """Columns symbol (str), ts (int ns)[, venue] -> one `SymbolData` per symbol (and venue),
    sorted by symbol, then venue."""
    if "venue" not in df.columns:
        out = [
            summarize(str(sym), part["ts"].to_numpy(), bars)
            for (sym,), part in df.group_by(["symbol"], maintain_order=True)
        ]
        return sorted(out, key=lambda s: s.symbol)
    out = [
        replace(summarize(str(sym), part["ts"].to_numpy(), bars), venue=str(venue))
        for (sym, venue), part in df.group_by(["symbol", "venue"], maintain_order=True)
    ]
    return sorted(out, key=lambda s: (s.symbol, s.venue))


def file_inventory(path: str, venue: str | None = None) -> tuple[list[SymbolData], str]:
    """(per-symbol data, kind) of a bar or trade file (globs allowed, as `--source file:`).
    A file with a venue column: every venue's data, one entry per (symbol, venue), or only
    `venue`'s (what a backtest of a config with that `venue` replays)."""
    from dataflows.io.files import detect_kind, normalized, scan

    lf = scan(path)
    kind = detect_kind(lf)
    has_venue = "venue" in lf.collect_schema().names()
    cols = ["symbol", pl.col("ts_event").alias("ts"), *(["venue"] if has_venue else [])]
    df = normalized(lf, kind, venue=venue).select(cols)
    return _by_symbol(df.collect(), kind == "bars"), kind


def kafka_inventory(
    bootstrap: str,
    topic: str,
    *,
    outage_s: float = 30.0,
    batch_size: int = 100_000,
    config: dict[str, Any] | None = None,
) -> tuple[list[SymbolData], str]:
    """(per-symbol data, kind) of a topic: every partition from its log start to the high
    watermark seen now, keys (symbol) and record timestamps (event time, ms) only. A missing
    topic or an unreachable broker is a kafka `Fault` (one line), not a hang."""
    from dataflows.runner import topic_kind
    from infra.kafka.client import TopicReader, topic_watermarks

    kind = topic_kind(topic)
    marks = topic_watermarks(bootstrap, topic, config=config)
    starts = {p: lo for p, (lo, hi) in marks.items() if hi > lo}
    ends = {p: hi for p, (lo, hi) in marks.items() if hi > lo}
    keys: list[bytes | None] = []
    stamps: list[int] = []
    reader = TopicReader(
        bootstrap, topic, starts, ends, batch_size=batch_size, outage_s=outage_s, config=config
    )
    try:
        while not reader.done:
            for m in reader.read(0.2):
                keys.append(m.key())
                stamps.append(m.timestamp()[1])
    finally:
        reader.close()
    names = {k: (NO_KEY if k is None else k.decode("utf-8", "replace")) for k in set(keys)}
    df = pl.DataFrame(
        {
            "symbol": [names[k] for k in keys],
            "ts": np.asarray(stamps, dtype=np.int64) * 1_000_000,
        },
        schema={"symbol": pl.String, "ts": pl.Int64},
    )
    return _by_symbol(df, kind == "bars"), kind


def inventory(source: str, cfg: Config) -> tuple[list[SymbolData], str]:
    """What `source` (`kafka:TOPIC` or `file:PATH_OR_GLOB`) holds: (per-symbol data sorted by
    symbol, kind "bars" or "trades"). Bad source strings are a ValueError, a missing file a
    FileNotFoundError, a missing topic or broker a kafka `Fault`."""
    scheme, _, target = source.partition(":")
    if scheme == "file" and target:
        return file_inventory(target)
    if scheme == "kafka" and target:
        return kafka_inventory(cfg.kafka.bootstrap, target, outage_s=cfg.kafka.outage_s)
    raise ValueError(f"--source must be kafka:<topic> or file:<path>, got {source!r}")


def describe(
    data: list[SymbolData], symbols: list[str] | None = None, unit: str = "records"
) -> str:
    """One clause per symbol (all, or only those in `symbols`), for error messages:
    "BTCUSDT: 44,640 bars from 2024-01-01 00:00:00 to 2024-01-31 23:59:00 UTC"."""
    if symbols is not None:
        data = [d for d in data if d.symbol in symbols]
    if not data:
        return "nothing"
    return "; ".join(
        f"{d.symbol}{f' ({d.venue})' if d.venue else ''}: {d.count:,} {unit} from "
        f"{_utc(d.first_ns)} to {_utc(d.last_ns)} UTC"
        for d in data
    )


def print_inventory(data: list[SymbolData], title: str, console: Console) -> None:
    t = Table(title=title)
    venues = any(d.venue for d in data)  # a trade file naming its venues: one row per venue
    for col in (
        "symbol",
        *(["venue"] if venues else []),
        "first (UTC)",
        "last (UTC)",
        "count",
        "interval",
        "gaps",
        "missing",
        "duplicates",
    ):
        t.add_column(col, justify="left" if col in ("symbol", "venue") else "right")
    for d in data:
        bars = bool(d.interval_ns)
        t.add_row(
            d.symbol,
            *([d.venue] if venues else []),
            _utc(d.first_ns),
            _utc(d.last_ns),
            f"{d.count:,}",
            f"{d.interval_ns / 1e9:g} s" if bars else "-",
            f"{d.gaps:,}" if bars else "-",
            f"{d.missing:,}" if bars else "-",
            f"{d.duplicates:,}" if bars else "-",
        )
    console.print(t)
    if not data:
        console.print("the source holds no records")


__all__ = [
    "SymbolData",
    "describe",
    "file_inventory",
    "inventory",
    "kafka_inventory",
    "print_inventory",
    "summarize",
    "utc_text",
]
