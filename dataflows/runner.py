"""What backtest and paper runs share: the sinks for a run id, executing a flow on N worker
threads, and recording the run's metadata."""

from __future__ import annotations

from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main, run_main

from dataflows.flow import FlowSinks
from dataflows.io.clickhouse import ClickHouseSink
from infra.clickhouse import BatchWriter
from schemas.config import Config
from schemas.messages import RunInfo
from schemas.topics import DLQ, FILLS, ORDERS


def topic_kind(topic: str) -> str:
    return "trades" if ".trades." in f".{topic}." else "bars"


def flow_sinks(cfg: Config, run_id: str, publish: bool) -> FlowSinks:
    """ClickHouse always; orders/fills/dead letters to Kafka (header run_id) when `publish`."""
    ch = cfg.clickhouse
    kafka: dict[str, Any] = {}
    if publish:
        from dataflows.io.kafka import KafkaCheckedSink

        headers = [("run_id", run_id.encode())]
        kafka = {
            name: KafkaCheckedSink(cfg.kafka.bootstrap, topic.name, headers=headers)
            for name, topic in (("orders", ORDERS), ("fills", FILLS), ("dlq", DLQ))
        }
    return FlowSinks(
        clickhouse=ClickHouseSink(ch.dsn, ch.database, run_id, ch.batch_rows, ch.batch_seconds),
        **kafka,
    )


def execute(flow: Dataflow, workers: int) -> None:
    """Run in this process on `workers` threads (a multi-process cluster uses `bytewax.run`)."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)


def record_run(client: Any, database: str, info: RunInfo) -> None:
    writer = BatchWriter(client, database, info.run_id)
    writer.add("runs", [info])
    writer.flush()
