"""Replay is the backtest: run `build_flow` over a bounded slice of history (a Kafka topic or a
file), store everything in ClickHouse under a run id, and report from what was stored.

Nothing empty passes quietly: `--end` <= `--start` fails at once; a run that replays no bar at
all, or asks for a symbol the source does not hold, fails (ValueError: the CLI's one line, exit
2) saying what the source holds per symbol, and records no run; a selected symbol that the
source holds but that got no bar in the range is a warning at the end of a run that succeeds.
A file source is checked before the replay (polars); a Kafka topic's inventory is scanned only
after a replay that found nothing for some symbol."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from rich.console import Console

from dataflows.datalist import SymbolData, describe, file_inventory, inventory, utc_text
from dataflows.flow import build_flow, config_feature_set, selected_symbols
from dataflows.io.files import FileSource, Kind
from dataflows.io.progress import counted
from dataflows.producers import in_sample_warnings, model_fingerprints, pin_models
from dataflows.report import (
    account_initial,
    bar_counts,
    build_report,
    dead_letter_counts,
    dead_letter_note,
    load_run,
    no_trades_reason,
    open_positions,
    print_summary,
    risk_note,
    risk_story,
    write_outputs,
)
from dataflows.runner import (
    execute,
    execute_cluster,
    flow_sinks,
    record_feature_set,
    record_run,
    topic_kind,
)
from infra.clickhouse import clear_run, close_all, connect, ensure_tables
from operators.performance import Summary
from schemas.config import Config
from schemas.messages import RunInfo
from schemas.risk_config import BINANCE_SPOT_MARKETS


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

    def __post_init__(self) -> None:
        if self.start_ns is not None and self.end_ns is not None and self.end_ns <= self.start_ns:
            raise ValueError(
                f"--end ({utc_text(self.end_ns)} UTC) must be after --start "
                f"({utc_text(self.start_ns)} UTC): the range [start, end) is empty"
            )

    @property
    def scheme(self) -> str:
        scheme, _, rest = self.source.partition(":")
        if scheme not in ("kafka", "file") or not rest:
            raise ValueError(f"--source must be kafka:<topic> or file:<path>, got {self.source!r}")
        return scheme

    @property
    def target(self) -> str:
        return self.source.partition(":")[2]


# Bumped whenever the same config would trade differently (2: one account, ADR 0009; 3: the
# execution simulator, risk engine and trading state, ADR 0010), so old results are never
# mistaken for new ones under the same run id.
ENGINE_VERSION = 3


def run_id_for(spec: BacktestSpec, cfg: Config, models: dict[str, str] | None = None) -> str:
    """Deterministic: the same inputs, strategy config, model files (`models`: producer ->
    sha256) and engine version give the same run id, so a rerun replaces its own rows instead
    of adding a second copy."""
    trading = json.loads(cfg.trading_json())
    doc: dict[str, object] = {
        "engine": ENGINE_VERSION,
        "source": spec.source,
        "symbols": sorted(spec.symbols),
        "start": spec.start_ns,
        "end": spec.end_ns,
        "config": trading,
    }
    if models:  # absent for rule-only configs: their run ids stay what they were
        doc["models"] = models
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
            interval_ns=cfg.bars.interval_ns,
            venue=cfg.venue,
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


def range_text(start_ns: int | None, end_ns: int | None) -> str:
    """The replay range in words, naming the flags, for messages."""
    if start_ns is None and end_ns is None:
        return "in the whole source (no --start/--end)"
    lo = f"--start {utc_text(start_ns)}" if start_ns is not None else "the first record"
    hi = f"--end {utc_text(end_ns)}" if end_ns is not None else "the last record"
    return f"between {lo} and {hi} UTC"


def public_dsn(dsn: str) -> str:
    """`dsn` with any password replaced by ***, for printing."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _unit(kind: str) -> str:
    return "bars" if kind == "bars" else "trades"


def _file_in_range(
    spec: BacktestSpec, selected: list[str], interval_ns: int, venue: str
) -> tuple[list[SymbolData], Kind, dict[str, int], list[SymbolData]]:
    """A file source before the replay: (what it holds per symbol, kind, records per selected
    symbol in the range, what other venues' data it holds). Raises FileNotFoundError for a
    missing file, ValueError for bars spaced other than `interval_ns` (the config's bar
    interval)."""
    import polars as pl

    from dataflows.io.files import check_bar_interval, detect_kind, normalized, scan

    lf = scan(spec.target)
    kind = detect_kind(lf)
    in_range = normalized(lf, kind, selected, spec.start_ns, spec.end_ns, venue)
    if kind == "bars":  # before anything is opened (FileSource, the source, checks it too)
        check_bar_interval(in_range, interval_ns, spec.source)
    held, _ = file_inventory(spec.target, venue=venue)  # what FileSource replays
    others: list[SymbolData] = []
    if "venue" in lf.collect_schema().names():
        others = [d for d in file_inventory(spec.target)[0] if d.venue != venue]
    counts = in_range.group_by("symbol").agg(pl.len().alias("n")).collect()
    got = {str(r["symbol"]): int(r["n"]) for r in counts.iter_rows(named=True)}
    return held, kind, got, others


def check_venue(
    spec: BacktestSpec,
    selected: list[str],
    held: list[SymbolData],
    others: list[SymbolData],
    venue: str,
    unit: str = "trades",
) -> None:
    """ValueError when a selected symbol's data in the file are only other venues' (a
    backtest replays the config's `venue`): the error names them and the setting to change."""
    names = {d.symbol for d in held}
    elsewhere = [d for d in others if d.symbol in selected and d.symbol not in names]
    if not elsewhere:
        return
    venues = sorted({d.venue for d in elsewhere})
    pick = venues[0] if len(venues) == 1 else "<one of them>"
    raise ValueError(
        f"{spec.source} holds {', '.join(sorted({d.symbol for d in elsewhere}))} {unit} only "
        f"from {', '.join(venues)}, not from the config's venue {venue!r} "
        f'({describe(elsewhere, unit=unit)}); to replay them set venue = "{pick}" in '
        f"the config (or --set venue={pick}) and that venue's [markets.<SYMBOL>] filters"
    )


def spot_markets_elsewhere(cfg: Config, symbols: list[str]) -> list[str]:
    """The symbols whose market rules are still Binance spot's defaults under another venue."""
    if cfg.venue == "binance_spot":
        return []
    return [
        s
        for s in symbols
        if s in BINANCE_SPOT_MARKETS and cfg.markets.get(s) == BINANCE_SPOT_MARKETS[s]
    ]


@dataclass(frozen=True)
class FilePlan:
    """What a file replay will read, decided before anything is opened or built."""

    spec: BacktestSpec  # symbols narrowed to those the file holds when none were asked for
    held: list[SymbolData]  # what the file holds (the config's venue)
    kind: Kind
    other_venues: list[SymbolData]
    absent: list[str]  # the config's symbols the file does not hold (no --symbols given)


def plan_file_replay(spec: BacktestSpec, cfg: Config, what: str = "nothing to replay") -> FilePlan:
    """Check a file source against the request. Without --symbols a file holding only some of
    the config's symbols replays those (on the whole account; the rest are named in a note);
    an asked-for symbol it does not hold, or nothing to replay at all, is a ValueError."""
    selected = sorted(selected_symbols(cfg, spec.symbols))
    held, kind, got, others = _file_in_range(spec, selected, cfg.bars.interval_ns, cfg.venue)
    names = {d.symbol for d in held}
    asked = bool(spec.symbols)
    absent: list[str] = []
    if not asked and names & set(selected):
        absent = [s for s in selected if s not in names]
        selected = [s for s in selected if s in names]
    check_venue(spec, selected, held, others, cfg.venue, _unit(kind))
    check_outcome(spec, selected, got, held, _unit(kind), what, asked)
    # the symbols replayed, named: the same run (and run id) as --symbols those
    return FilePlan(replace(spec, symbols=tuple(selected)), held, kind, others, absent)


def check_outcome(
    spec: BacktestSpec,
    selected: list[str],
    got: dict[str, int],
    held: list[SymbolData],
    unit: str,
    what: str,
    asked: bool | None = None,
) -> list[str]:
    """Judge a replay by what each selected symbol got (`got`: records or bars in the range)
    against what the source holds (`held`). Raises ValueError when a selected symbol is not in
    the source at all, or when no symbol got anything; returns one warning per symbol that the
    source holds but that got nothing in the range."""
    names = {d.symbol for d in held}
    where = range_text(spec.start_ns, spec.end_ns)
    absent = [s for s in selected if s not in names]
    if absent:
        asked = bool(spec.symbols) if asked is None else asked
        by = "--symbols" if asked else "the config's `symbols`"
        raise ValueError(
            f"{spec.source} holds no {unit} for {', '.join(absent)} ({by}); "
            f"it holds {describe(held, unit=unit)}"
        )
    empty = [s for s in selected if not got.get(s)]
    if len(empty) == len(selected):
        raise ValueError(
            f"{what} for {', '.join(selected)} {where}; "
            f"{spec.source} holds {describe(held, unit=unit)}"
        )
    return [
        f"{s} got no bars {where}; {spec.source} holds {describe(held, [s], unit)}" for s in empty
    ]


def run_backtest(
    cfg: Config,
    spec: BacktestSpec,
    out_dir: Path | None = None,
    *,
    run_id: str | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> tuple[str, Summary]:
    """Replay, store, report. Raises ValueError (nothing recorded in `runs`) when the request
    is empty or the replay found nothing; see the module docstring."""
    console = console or Console(stderr=True)
    # Bad input fails before anything is opened or written.
    spec.scheme  # noqa: B018  (validates the source string)
    if spec.processes < 1 or spec.workers < 1:
        raise ValueError("--processes and --workers must be >= 1")
    selected = sorted(selected_symbols(cfg, spec.symbols))
    asked = bool(spec.symbols)
    spec = replace(spec, symbols=tuple(selected))  # named in the run id either way
    held: list[SymbolData] | None = None
    kind: str = topic_kind(spec.target)
    not_replayed: list[SymbolData] = []
    other_venues: list[SymbolData] = []
    absent: list[str] = []
    if spec.scheme == "file":
        plan = plan_file_replay(spec if asked else replace(spec, symbols=()), cfg)
        spec, held, kind = plan.spec, plan.held, plan.kind
        other_venues, absent = plan.other_venues, plan.absent
        selected = list(spec.symbols)
        not_replayed = [d for d in held if d.symbol not in selected]
    fs = config_feature_set(cfg)
    cfg = pin_models(cfg)  # one model version for the whole replay, in the run's id and config
    run_id = run_id or run_id_for(spec, cfg, model_fingerprints(cfg))
    ch = cfg.clickhouse
    client = connect(ch.dsn, ch.database)
    ensure_tables(client, ch.database)
    clear_run(client, ch.database, run_id)  # a rerun is exactly what it writes

    if spec.processes > 1:
        # chDB locks its directory per process: let the cluster's sink owner open it.
        close_all()
        execute_cluster(partial(_cluster_flow, cfg, spec, run_id), spec.processes, spec.workers)
        client = connect(ch.dsn, ch.database)
    else:
        _run_here(cfg, spec, run_id, console, progress)

    bars = bar_counts(client, ch.database, run_id)
    warnings: list[str] = []
    if any(not bars.get(s) for s in selected):
        if held is None:  # Kafka: scan the topic only now that something is missing
            held, kind = inventory(spec.source, cfg)
            names = {d.symbol for d in held}
            if not asked and names & set(selected):  # as a file: the config's, as held
                absent = [s for s in selected if s not in names]
                selected = [s for s in selected if s in names]
        warnings = check_outcome(
            spec, selected, bars, held, _unit(kind), "the replay produced no bars", asked
        )
    per_symbol = {s: bars.get(s, 0) for s in selected}
    positions = open_positions(client, ch.database, run_id)

    dead = dead_letter_counts(client, ch.database, run_id)
    risk = risk_story(client, ch.database, run_id)
    fills, equity = load_run(client, ch.database, run_id)
    summary, ts, eq = build_report(fills, equity, account_initial(cfg))
    if not fills:
        warnings.append(no_trades_reason(client, ch.database, run_id, cfg, bars))
    if len(ts):  # a model scored on its own training bars: the classic flattering backtest
        warnings.extend(in_sample_warnings(cfg, int(ts[0]), int(ts[-1])))
    info = {
        "run_id": run_id,
        "source": spec.source,
        "symbols": selected,
        "start": spec.start_ns,
        "end": spec.end_ns,
        "bars_by_symbol": per_symbol,
        "open_positions": [p.to_dict() for p in positions],
        "warnings": warnings,
        "not_replayed": [d.symbol for d in not_replayed],
        "absent": absent,
        "other_venues": {
            v: sorted(d.symbol for d in other_venues if d.venue == v)
            for v in sorted({d.venue for d in other_venues})
        },
        "dead_letters": dead,
        "risk": risk,
    }
    record_feature_set(client, ch.database, run_id, fs)

    def run_info() -> RunInfo:
        return RunInfo(
            run_id=run_id,
            ts_init=int(ts[0]) if len(ts) else 0,
            mode="backtest",
            source=spec.source,
            start=spec.start_ns or 0,
            end=spec.end_ns or 0,
            symbols=",".join(selected),
            config_json=cfg.trading_json(),
            summary_json=json.dumps(summary.to_dict(), sort_keys=True),
        )

    record_run(client, ch.database, run_info())
    # Round trips always (the `round_trips` table and its views); the full analysis (Monte
    # Carlo, report.html) only where there is a directory to write it to.
    doc = None
    if len(ts) >= 2:
        from dataflows.analytics import MC_RUNS
        from dataflows.report_files import analyse_run

        with console.status("analysing the run (round trips, metrics, report)"):
            doc = analyse_run(
                cfg,
                run_id,
                Path(out_dir) if out_dir is not None else None,
                mc_runs=MC_RUNS if out_dir is not None else 0,
                client=client,
            )
        # The summary's trade statistics from the round trips (shorts and flips included).
        m = doc["metrics"]["strategy"]
        better = replace(
            summary,
            n_round_trips=m["n_trades"],
            win_rate=m["win_rate"],
            profit_factor=m["profit_factor"],
        )
        if better != summary:
            summary = better
            record_run(client, ch.database, run_info())
    if out_dir is not None:
        write_outputs(Path(out_dir), summary, fills, ts, eq, info)
    out = Console()
    print_summary(summary, run_id, out, bars=per_symbol, positions=positions)
    if doc is not None:
        bh = doc["metrics"]["benchmark"]
        out.print(
            f"buy & hold, same bars: return {bh['total_return'] * 100:+.2f}%, "
            f"max drawdown {bh['max_drawdown'] * 100:.2f}%",
            markup=False,
            highlight=False,
        )
    for w in warnings:
        out.print(f"warning: {w}", style="yellow", markup=False, highlight=False)
    span = (int(ts[0]), int(ts[-1])) if len(ts) else None
    said = risk_note(risk, span)
    if said is not None:  # a halt that idles most of a run must not pass for the strategy's
        text, warn = said
        where = f"tables {ch.database}.trading_state and {ch.database}.order_denials"
        out.print(
            f"{'warning' if warn else 'note'}: {text}: {where}, run_id {run_id}",
            style="yellow" if warn else None,
            markup=False,
            highlight=False,
        )
    for note in replay_notes(
        spec, cfg, kind, selected, dead, not_replayed, absent, other_venues, ch.database, run_id
    ):
        out.print(f"note: {note}", markup=False, highlight=False)
    if out_dir is not None:
        names = ("report.html", "fills.csv", "equity.csv", "summary.json", "equity.png")
        wrote = [n for n in names if (Path(out_dir) / n).exists()]
        out.print(f"outputs: {out_dir} ({', '.join(wrote)})", markup=False, highlight=False)
    out.print(
        f"rows: ClickHouse {public_dsn(ch.dsn)}, database {ch.database}, run_id {run_id} "
        "(read with FINAL)",
        markup=False,
        highlight=False,
    )
    return run_id, summary


def replay_notes(
    spec: BacktestSpec,
    cfg: Config,
    kind: str,
    selected: list[str],
    dead: dict[str, int],
    not_replayed: list[SymbolData],
    absent: list[str],
    other_venues: list[SymbolData],
    database: str,
    run_id: str,
) -> list[str]:
    """What the run did not use or assumed, each said once (never dropped silently): dead
    letters, symbols and venues the source holds but the run did not replay, the config's
    symbols it lacks, and market filters borrowed from Binance spot."""
    unit = _unit(kind)
    notes: list[str] = []
    if dead:
        notes.append(dead_letter_note(dead, f"{database}.dead_letters", run_id))
    universe = sorted(cfg.symbols)
    unselected = [d for d in not_replayed if d.symbol in universe]
    unknown = [d for d in not_replayed if d.symbol not in universe]
    for skipped, why, listed in (
        (unselected, "--symbols", selected),
        (unknown, "the config's `symbols`", universe),
    ):
        if skipped:
            notes.append(
                f"{spec.source} also holds {describe(skipped, unit=unit)}; not "
                f"replayed (not in {why}: {', '.join(listed)})"
            )
    spot_rules = spot_markets_elsewhere(cfg, selected)
    if spot_rules:  # lot, tick and min notional of another instrument: said, never assumed
        notes.append(
            f"markets {', '.join(spot_rules)} use Binance spot's filters (the defaults) but "
            f"the config's venue is {cfg.venue!r}: set [markets.<SYMBOL>] tick_size, lot_size "
            "and min_notional to that venue's"
        )
    if absent:  # the config's symbols the source lacks: the account trades the others alone
        notes.append(
            f"{spec.source} holds no {unit} of the config's "
            f"{', '.join(absent)}; replayed {', '.join(selected)} only, on the whole account "
            "(--symbols chooses; a symbol asked for there must be in the source)"
        )
    if other_venues:  # another venue's BTCUSDT is another instrument: said, not merged
        notes.append(
            f"{spec.source} also holds other venues' {unit}: "
            f"{describe(other_venues, unit=unit)}; not replayed (the config's venue is "
            f"{cfg.venue!r}: `venue`)"
        )
    return notes
