"""Replay is the backtest: run `build_flow` over a bounded slice of history (a Kafka topic or a
file), store everything in ClickHouse under a run id, and report from what was stored."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from rich.console import Console

from dataflows.flow import build_flow
from dataflows.io.files import FileSource, Kind
from dataflows.io.progress import counted
from dataflows.report import build_report, load_run, print_summary, write_outputs
from dataflows.runner import execute, execute_cluster, flow_sinks, record_run, topic_kind
from infra.clickhouse import close_all, connect, ensure_tables
from operators.performance import Summary
from schemas.config import Config
from schemas.messages import RunInfo


def parse_time(s: str | None) -> int | None:
    """ISO date or datetime (UTC unless an offset is given) -> int ns."""
    if not s:
        return None
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


@dataclass(frozen=True)
class BacktestSpec:
    source: str  # "kafka:<topic>" or "file:<path>"
    symbols: tuple[str, ...]
    start_ns: int | None = None
    end_ns: int | None = None
    speed: float | None = None  # None = as fast as possible
    workers: int = 1  # Bytewax worker threads per process
    processes: int = 1  # >1: a Bytewax multi-process cluster on this machine
    publish: bool | None = None  # orders/fills/dlq to Kafka; default: when the source is Kafka

    @property
    def scheme(self) -> str:
        scheme, _, rest = self.source.partition(":")
        if scheme not in ("kafka", "file") or not rest:
            raise ValueError(f"--source must be kafka:<topic> or file:<path>, got {self.source!r}")
        return scheme

    @property
    def target(self) -> str:
        return self.source.partition(":")[2]


def run_id_for(spec: BacktestSpec, cfg: Config) -> str:
    """Deterministic: the same inputs and strategy config give the same run id, so a rerun
    replaces its own rows (ReplacingMergeTree) instead of adding a second copy."""
    trading = json.loads(cfg.trading_json())
    doc = {
        "source": spec.source,
        "symbols": sorted(spec.symbols),
        "start": spec.start_ns,
        "end": spec.end_ns,
        "config": trading,
    }
    return "bt-" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def replay_source(spec: BacktestSpec, cfg: Config) -> tuple[Any, Kind, str]:
    """-> (bytewax source, kind, source name)."""
    if spec.scheme == "file":
        src = FileSource(
            spec.target,
            list(spec.symbols),
            spec.start_ns,
            spec.end_ns,
            speed=spec.speed,
            batch_size=cfg.kafka.batch_size,
        )
        return src, src.kind, spec.source
    from dataflows.io.kafka import KafkaRangeSource

    topic = spec.target
    kafka = KafkaRangeSource(
        cfg.kafka.bootstrap,
        topic,
        start_ms=None if spec.start_ns is None else spec.start_ns // 1_000_000,
        end_ms=None if spec.end_ns is None else spec.end_ns // 1_000_000,
        batch_size=cfg.kafka.batch_size,
        tail=False,  # a backtest is bounded: stop at the end offsets seen at start
        speed=spec.speed,
        outage_s=cfg.kafka.outage_s,
    )
    return kafka, topic_kind(topic), topic


def _publish(spec: BacktestSpec) -> bool:
    return spec.publish if spec.publish is not None else spec.scheme == "kafka"


def _replay_flow(
    cfg: Config, spec: BacktestSpec, run_id: str, src: Any, kind: Kind, source_name: str
) -> Dataflow:
    sinks = flow_sinks(cfg, run_id, _publish(spec))
    return build_flow(
        cfg,
        src,
        sinks,
        kind=kind,
        symbols=spec.symbols,
        source_name=source_name,
        # A record stamped inside the range whose payload says otherwise is a dead letter.
        replay_range=(spec.start_ns, spec.end_ns),
    )


def _cluster_flow(cfg: Config, spec: BacktestSpec, run_id: str) -> Dataflow:
    """Built inside each cluster process (module-level, so it pickles)."""
    return _replay_flow(cfg, spec, run_id, *replay_source(spec, cfg))


def _run_here(
    cfg: Config,
    spec: BacktestSpec,
    run_id: str,
    console: Console,
    progress: bool,
) -> None:
    """In this process, on `spec.workers` threads, with a progress bar."""
    src, kind, source_name = replay_source(spec, cfg)
    with counted(src, f"[bold]replay[/] {kind}", console, progress) as counted_src:
        execute(_replay_flow(cfg, spec, run_id, counted_src, kind, source_name), spec.workers)


def run_backtest(
    cfg: Config,
    spec: BacktestSpec,
    out_dir: Path | None = None,
    *,
    run_id: str | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> tuple[str, Summary]:
    console = console or Console(stderr=True)
    # Bad input fails before anything is opened or written.
    if spec.scheme == "file" and not Path(spec.target).is_file():
        raise FileNotFoundError(f"no such file: {spec.target}")
    if spec.processes < 1 or spec.workers < 1:
        raise ValueError("--processes and --workers must be >= 1")
    run_id = run_id or run_id_for(spec, cfg)
    ch = cfg.clickhouse
    client = connect(ch.dsn, ch.database)
    ensure_tables(client, ch.database)

    if spec.processes > 1:
        # chDB locks its directory per process: let the cluster's sink owner open it.
        close_all()
        execute_cluster(partial(_cluster_flow, cfg, spec, run_id), spec.processes, spec.workers)
        client = connect(ch.dsn, ch.database)
    else:
        _run_here(cfg, spec, run_id, console, progress)

    selected = sorted(spec.symbols)
    per = cfg.sleeve_cash(len(selected))
    fills, equity = load_run(client, ch.database, run_id)
    summary, ts, eq = build_report(fills, equity, {s: per for s in selected})
    info = {
        "run_id": run_id,
        "source": spec.source,
        "symbols": selected,
        "start": spec.start_ns,
        "end": spec.end_ns,
    }
    record_run(
        client,
        ch.database,
        RunInfo(
            run_id=run_id,
            ts_init=int(ts[0]) if len(ts) else 0,
            mode="backtest",
            source=spec.source,
            start=spec.start_ns or 0,
            end=spec.end_ns or 0,
            symbols=",".join(selected),
            config_json=cfg.trading_json(),
            summary_json=json.dumps(summary.to_dict(), sort_keys=True),
        ),
    )
    if out_dir is not None:
        write_outputs(Path(out_dir), summary, fills, ts, eq, info)
    print_summary(summary, run_id, Console())
    return run_id, summary
