"""What backtest and paper runs share: the sinks for a run id, executing a flow on N worker
threads, and recording the run's metadata."""

from __future__ import annotations

import multiprocessing
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.testing import cluster_main, run_main

from dataflows.flow import FlowSinks
from dataflows.io.clickhouse import ClickHouseSink
from infra.clickhouse import BatchWriter
from schemas.config import Config
from schemas.messages import RunInfo
from schemas.topics import DLQ, FILLS, ORDERS

if TYPE_CHECKING:
    from dataflows.io.files import Kind


def topic_kind(topic: str) -> Kind:
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


def execute(
    flow: Dataflow,
    workers: int,
    *,
    epoch_interval: timedelta | None = None,
    recovery: RecoveryConfig | None = None,
) -> None:
    """Run in this process on `workers` threads (a multi-process cluster uses `bytewax.run`).
    `recovery` snapshots every stateful step each `epoch_interval` (paper mode resumes from it)."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    kw: dict[str, Any] = {"epoch_interval": epoch_interval, "recovery_config": recovery}
    if workers == 1:
        run_main(flow, **kw)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers, **kw)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _cluster_process(build: Callable[[], Dataflow], addresses: list[str], proc: int, workers: int):
    cluster_main(build(), addresses, proc, worker_count_per_proc=workers)


def execute_cluster(build: Callable[[], Dataflow], processes: int, workers: int = 1) -> None:
    """Run a Bytewax cluster of `processes` local processes (each with `workers` threads) that
    talk over loopback, and wait for all of them. `build` must pickle (it runs in each child).
    For machines of their own, run `cluster_main` with the same addresses on each host."""
    addresses = [f"127.0.0.1:{p}" for p in _free_ports(processes)]
    ctx = multiprocessing.get_context("spawn")  # no forked Kafka/chDB handles in the children
    procs = [
        ctx.Process(target=_cluster_process, args=(build, addresses, i, workers), daemon=True)
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise RuntimeError(
            f"cluster processes {failed} failed (exit codes {[procs[i].exitcode for i in failed]})"
        )


def record_run(client: Any, database: str, info: RunInfo) -> None:
    writer = BatchWriter(client, database, info.run_id)
    writer.add("runs", [info])
    writer.flush()
