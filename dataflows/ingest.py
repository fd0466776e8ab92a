"""Publish a market-data file (the shared parquet/CSV formats) to its Kafka topic: keyed by
symbol, exchange time as the Kafka timestamp, every delivery verified before returning."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dataflows.io.files import (
    Kind,
    check_bar_interval,
    detect_kind,
    normalized,
    scan,
    to_messages,
    venue_clashes,
)
from infra.faults import raise_fault
from infra.kafka.client import BROKER_CHECK, CheckedProducer, DeliveryError
from schemas.codec import encode
from schemas.messages import NS_PER_MINUTE
from schemas.topics import BARS, TRADES


def ingest_file(
    path: str | Path,
    bootstrap: str,
    kind: Kind | None = None,
    *,
    topic: str | None = None,
    symbols: list[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    venue: str | None = "binance_spot",
    chunk: int = 50_000,
    console: Console | None = None,
    progress: bool = True,
    outage_s: float = 30.0,
    interval_ns: int = NS_PER_MINUTE,
) -> int:
    """Returns the number of messages delivered (acknowledged by the broker). A broker that
    stays unreachable for `outage_s` ends the ingest with a kafka `Fault` naming how far it
    got (what was acknowledged before stays in the topic; a rerun of the file adds duplicates,
    which replays dead-letter as such)."""
    lf = scan(path)
    found = detect_kind(lf)  # reads the schema (a CSV is sampled): once
    kind = kind or found
    if kind != found:
        raise ValueError(f"{path} holds {found}, not {kind}")
    topic = topic or (TRADES.name if kind == "trades" else BARS.name)
    norm = normalized(lf, kind, symbols, start_ns, end_ns, venue, interval_ns)
    if venue is None and (clash := venue_clashes(norm)):
        # Keyed by symbol, one topic would interleave two instruments' tapes under one name.
        raise ValueError(
            f"{path} holds "
            + "; ".join(f"{sym} on {', '.join(vs)}" for sym, vs in clash.items())
            + ": the same name on two venues is two instruments; ingest one venue per topic "
            "(--venue VENUE, and --topic for the other)"
        )
    if kind == "bars":  # the bars go out stamped with this length: the file must agree
        check_bar_interval(norm, interval_ns, f"file:{path}")
    df = norm.collect()
    if df.height == 0:
        held = (
            sorted(lf.select(pl.col("venue").cast(pl.String).unique()).collect()["venue"])
            if venue and "venue" in lf.collect_schema().names()
            else []
        )
        hint = (
            f"; it holds {', '.join(held)} data, not {venue}'s: --venue {held[0]}"
            + (" (or another of them)" if len(held) > 1 else "")
            if held
            else ""
        )
        raise ValueError(f"nothing to ingest from {path} with the given filters{hint}")
    # Interleave symbols in time order, as an exchange feed would deliver them.
    df = df.sort("ts_event", "symbol")
    delivered = 0
    with (
        CheckedProducer(bootstrap, outage_s=outage_s) as producer,
        Progress(
            TextColumn(f"[bold]ingest[/] {kind} → {topic}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            disable=not progress,
        ) as bar,
    ):
        task = bar.add_task("ingest", total=df.height)
        for off in range(0, df.height, chunk):
            msgs = to_messages(df.slice(off, chunk), kind, interval_ns)
            producer.produce_many(
                topic, ((m.symbol, encode(m), m.ts_event // 1_000_000) for m in msgs)
            )
            try:
                delivered += producer.flush(outage_s + 5.0)
            except DeliveryError as exc:
                producer.abort()
                raise raise_fault(
                    "kafka",
                    f"{exc.failed + exc.undelivered} messages to {topic} not acknowledged "
                    f"({exc}); {delivered:,} of {df.height:,} were delivered before",
                    BROKER_CHECK,
                ) from exc
            bar.advance(task, len(msgs))
    return delivered
