"""Paper trading: the same `build_flow` as a backtest, tailing a Kafka topic forever, with
simulated execution. Orders and fills go to Kafka and ClickHouse as they happen.

A paper run survives restarts: every stateful step (bars, features, strategy, account) and the
source position are snapshotted each `paper.epoch_s` by Bytewax recovery under
`<data dir>/recovery/<run id>`, and SIGINT/SIGTERM stop cleanly (the last epoch commits, sinks
flush; see dataflows/shutdown.py). Starting again with the same `--run-id` resumes from there
with the same state and publishes no order twice (dataflows/io/resume.py).

Operator commands (the kill switch, docs/risk.md) come from `control.commands.v1`: a fresh run
reads them from the topic's end when it was created (earlier commands are not for it), a resumed
one from its snapshot, so a halt issued while it was stopped applies when it comes back.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir
from rich.console import Console

from dataflows.backtest import ENGINE_VERSION
from dataflows.flow import build_flow, config_feature_set
from dataflows.io.control import ControlSource, control_start, topic_end
from dataflows.io.kafka import KafkaRangeSource
from dataflows.io.monitor import FlowStats, Heartbeat, MonitorSink
from dataflows.io.resume import NoRepeatSink
from dataflows.report import account_initial, build_report, load_run, print_summary
from dataflows.runner import execute, flow_sinks, record_feature_set, record_run, topic_kind
from dataflows.shutdown import StoppableSource, handle_signals
from infra import faults
from infra.clickhouse import connect, ensure_tables
from schemas.config import Config, data_dir
from schemas.messages import RunInfo
from schemas.topics import CONTROL

# The Kafka outputs a resume must not publish twice: each of their messages is unique within a
# run (order, fill, dead-letter and intent ids). Trading-state changes are not: a halt, resume,
# halt in one bar with one reason repeats its first event, which must not be dropped.
_PUBLISHED = ("orders", "fills", "dlq", "denials")


def recovery_dir(run_id: str) -> Path:
    return data_dir() / "recovery" / run_id


def _session(cfg: Config, run_id: str, topic: str, symbols: tuple[str, ...], start_ms: int):
    """(recovery dir, start_ms, first wall time, resuming) — a resumed run must be the same run:
    same source, symbols and trading config, or its snapshots would be applied to another flow."""
    rdir = recovery_dir(run_id)
    meta_path = rdir / "run.json"
    want = {
        "engine": ENGINE_VERSION,  # snapshots of another engine's steps do not fit this flow
        "topic": topic,
        "symbols": sorted(symbols),
        "config": json.loads(cfg.trading_json()),
    }
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        meta.setdefault("engine", 1)  # runs from before the version was recorded
        for field in ("engine", "topic", "symbols", "config"):
            if meta[field] != want[field]:
                raise ValueError(
                    f"paper run {run_id!r} was started with a different {field} "
                    f"({meta[field]!r}); resume it with the same --source/--symbols/--config, "
                    f"or start a new run with another --run-id (or delete {rdir})"
                )
        return rdir, int(meta["start_ms"]), int(meta["started_ns"]), True
    rdir.mkdir(parents=True, exist_ok=True)
    init_db_dir(rdir, 1)
    meta = {**want, "start_ms": start_ms, "started_ns": time.time_ns()}
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    tmp.replace(meta_path)  # written last: a half-made directory is never taken for a run
    return rdir, start_ms, int(meta["started_ns"]), False


def run_paper(
    cfg: Config,
    topic: str,
    symbols: tuple[str, ...],
    *,
    start_ns: int | None = None,
    run_id: str | None = None,
    workers: int = 1,
    console: Console | None = None,
    control_topic: str = CONTROL.name,
) -> str:
    """Runs until SIGINT/SIGTERM. `start_ns` replays history from there first (strategy warm-up);
    default: only messages from now on. An existing `run_id` resumes that run. Operator commands
    are read from `control_topic` (`cryptoflow control halt`)."""
    console = console or Console(stderr=True)
    out = Console(soft_wrap=True, highlight=False)  # one line per message, whatever the width
    now_ns = time.time_ns()  # the one wall-clock read: a paper session starts in real time
    run_id = run_id or "paper-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    start_ms = (start_ns if start_ns is not None else now_ns) // 1_000_000
    control_end = _control_end(cfg, control_topic)  # a missing topic fails before the run dir
    rdir, start_ms, started_ns, resuming = _session(cfg, run_id, topic, symbols, start_ms)
    control = ControlSource(
        cfg.kafka.bootstrap,
        control_topic,
        control_start(rdir, control_topic, control_end, resuming),
        outage_s=cfg.kafka.outage_s,
    )
    ch = cfg.clickhouse
    client = connect(ch.dsn, ch.database)
    ensure_tables(client, ch.database)
    info = RunInfo(
        run_id=run_id,
        ts_init=started_ns,
        mode="paper",
        source=f"kafka:{topic}",
        start=start_ms * 1_000_000,
        end=0,
        symbols=",".join(sorted(symbols)),
        config_json=cfg.trading_json(),
    )
    record_run(client, ch.database, info)
    # Every `features` row of the run can be labelled from ClickHouse alone.
    record_feature_set(client, ch.database, run_id, config_feature_set(cfg), started_ns)
    source = KafkaRangeSource(
        cfg.kafka.bootstrap,
        topic,
        start_ms,
        None,
        batch_size=cfg.kafka.batch_size,
        tail=True,
        outage_s=cfg.kafka.outage_s,
    )
    sinks = flow_sinks(cfg, run_id, publish=True)
    if resuming:  # outputs of an epoch that did not commit (a crash) are produced again
        for name in _PUBLISHED:
            inner = getattr(sinks, name)
            setattr(sinks, name, NoRepeatSink(inner, cfg.kafka.bootstrap, inner.topic, run_id))
    stats = FlowStats()
    sinks.monitor = MonitorSink(stats)
    flow = build_flow(
        cfg,
        StoppableSource(source),
        sinks,
        kind=topic_kind(topic),
        symbols=symbols,
        source_name=topic,
        flow_id="paper",
        clock=time.time_ns,  # live: event times ahead of the wall clock are implausible
        replay_range=(start_ms * 1_000_000, None),
        control=StoppableSource(control),  # a stop ends it too, or the flow would never end
    )
    since = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    verb = "resuming" if resuming else "starting"
    out.print(
        f"paper run {run_id}: {verb}, tailing {topic} from {since} UTC "
        f"(commands from {control_topic}; snapshots in {rdir}; Ctrl-C or SIGTERM stops "
        "cleanly)",
        highlight=False,
    )

    if not resuming and start_ns is None:
        _say_if_nothing_new(cfg, topic, start_ms, out)

    def beat(line: str) -> None:
        out.print(f"paper {run_id} | {line}", highlight=False, soft_wrap=True)

    with handle_signals(), Heartbeat(stats, cfg.paper.heartbeat_s, beat):
        execute(
            flow,
            workers,
            epoch_interval=timedelta(seconds=cfg.paper.epoch_s),
            recovery=RecoveryConfig(rdir),
        )
    beat(stats.line(time.time_ns()))
    repeats = sum(
        s.skipped
        for s in (getattr(sinks, name) for name in _PUBLISHED)
        if isinstance(s, NoRepeatSink)
    )
    if repeats:
        out.print(
            f"resume: {repeats} messages replayed from the interrupted epoch were already "
            "on Kafka: not published again"
        )
    _close(cfg, client, info, symbols, out)
    return run_id


def _control_end(cfg: Config, topic: str) -> dict[int, int]:
    """The control topic's end now; a missing topic fails in one line, saying how to fix it."""
    try:
        return topic_end(cfg.kafka.bootstrap, topic)
    except faults.Fault as fault:
        if "does not exist" not in fault.what:
            raise  # not answering: its check already says what to do
        faults.clear()
        raise faults.raise_fault(
            "kafka",
            f"{fault.what} (the operator commands topic)",
            "that the project topics exist: cryptoflow infra up creates them",
        ) from fault


def _say_if_nothing_new(cfg: Config, topic: str, start_ms: int, out: Console) -> None:
    """Tailing from now on a topic whose records are all older says so, instead of silence."""
    from infra.kafka.reader import newest_timestamp_ms

    newest = newest_timestamp_ms(cfg.kafka.bootstrap, topic)
    if newest is None:
        out.print(f"{topic} is empty: waiting for the first records", highlight=False)
    elif newest < start_ms:
        when = datetime.fromtimestamp(newest / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        out.print(
            f"the newest record on {topic} is from {when} UTC, older than this run's start: "
            "nothing to trade until newer records arrive (use --start to replay history first)",
            highlight=False,
        )


def _close(cfg: Config, client, info: RunInfo, symbols: tuple[str, ...], out: Console) -> None:
    """The run's end and summary (over every session of the run, from ClickHouse)."""
    ch = cfg.clickhouse
    fills, equity = load_run(client, ch.database, info.run_id)
    summary, _, _ = build_report(fills, equity, account_initial(cfg))
    record_run(
        client,
        ch.database,
        RunInfo(
            **{
                **{f: getattr(info, f) for f in info.__struct_fields__},
                "end": time.time_ns(),
                "summary_json": json.dumps(summary.to_dict(), sort_keys=True),
            }
        ),
    )
    out.print(f"paper run {info.run_id} stopped; resume it with --run-id {info.run_id}")
    print_summary(summary, info.run_id, out, mode="paper")
