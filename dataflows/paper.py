"""Paper trading: the same `build_flow` as a backtest, tailing a Kafka topic forever, with
simulated execution. Orders and fills go to Kafka and ClickHouse as they happen."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rich.console import Console

from dataflows.flow import build_flow
from dataflows.io.kafka import KafkaRangeSource
from dataflows.runner import execute, flow_sinks, record_run, topic_kind
from infra.clickhouse import connect, ensure_tables
from schemas.config import Config
from schemas.messages import RunInfo


def run_paper(
    cfg: Config,
    topic: str,
    symbols: tuple[str, ...],
    *,
    start_ns: int | None = None,
    run_id: str | None = None,
    workers: int = 1,
    console: Console | None = None,
) -> str:
    """Runs until interrupted. `start_ns` replays history from there first (strategy warm-up);
    default: only messages from now on."""
    console = console or Console(stderr=True)
    now_ns = time.time_ns()  # the one wall-clock read: a paper session starts in real time
    run_id = run_id or "paper-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    start_ms = (start_ns if start_ns is not None else now_ns) // 1_000_000
    ch = cfg.clickhouse
    client = connect(ch.dsn, ch.database)
    ensure_tables(client, ch.database)
    record_run(
        client,
        ch.database,
        RunInfo(
            run_id=run_id,
            ts_init=now_ns,
            mode="paper",
            source=f"kafka:{topic}",
            start=start_ms * 1_000_000,
            end=0,
            symbols=",".join(sorted(symbols)),
            config_json=cfg.trading_json(),
        ),
    )
    source = KafkaRangeSource(
        cfg.kafka.bootstrap, topic, start_ms, None, batch_size=cfg.kafka.batch_size, tail=True
    )
    flow = build_flow(
        cfg,
        source,
        flow_sinks(cfg, run_id, publish=True),
        kind=topic_kind(topic),
        symbols=symbols,
        source_name=topic,
        flow_id=run_id,
    )
    console.print(f"paper run [bold]{run_id}[/] tailing {topic} (Ctrl-C to stop)")
    try:
        execute(flow, workers)
    except KeyboardInterrupt:
        console.print(f"paper run {run_id} stopped")
    return run_id
