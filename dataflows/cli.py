"""`cryptoflow` — one command, a verb per job (`cryptoflow VERB --help`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console

from dataflows.diagnostics import EXIT_USAGE, Diagnostics, pop_debug, report, watchdog
from schemas.config import Config, data_dir, load_config

# The demo's inputs live in the repository, wherever the command is run from.
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_BARS = EXAMPLES / "data" / "binance_spot_btc_eth_1m_2024-01.parquet"
DEMO_CONFIG = EXAMPLES / "sma_cross.toml"


def _cfg(args: argparse.Namespace) -> Config:
    from infra.clickhouse import set_retry_defaults

    cfg = load_config(getattr(args, "config", None))
    # Every connect/insert of this command (not only the flow's sink) retries as configured.
    set_retry_defaults(cfg.clickhouse.retries, cfg.clickhouse.retry_backoff_s)
    return cfg


def _symbols(args: argparse.Namespace, default: Iterable[str] = ()) -> tuple[str, ...]:
    """--symbols as upper-case names; `default` when not given."""
    raw = getattr(args, "symbols", None)
    got = tuple(s.strip().upper() for s in raw.split(",") if s.strip()) if raw else ()
    return got or tuple(default)


def _replay_args(p: argparse.ArgumentParser, source_help: str) -> None:
    """The history slice a replay reads (backtest, dataset)."""
    p.add_argument("--source", required=True, help=source_help)
    p.add_argument("--start", help="ISO date/time, UTC, inclusive")
    p.add_argument("--end", help="ISO date/time, UTC, exclusive")
    p.add_argument("--symbols", help="comma-separated; default: the config's symbols")


def cmd_infra(args: argparse.Namespace) -> int:
    from infra.kafka import broker

    cfg = _cfg(args)
    kdir = data_dir()
    if args.action == "up":
        bootstrap = broker.up(cfg.kafka.bootstrap, kdir, cfg.kafka.partitions)
        Console().print(f"kafka up at [bold]{bootstrap}[/]")
    elif args.action == "down":
        broker.down(kdir)
        Console().print("kafka down")
    else:
        st = broker.status(cfg.kafka.bootstrap, kdir)
        Console().print(st)
        return 0 if st.get("running") else 1
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from dataflows.backtest import parse_time
    from dataflows.ingest import ingest_file

    cfg = _cfg(args)
    n = ingest_file(
        args.path,
        cfg.kafka.bootstrap,
        args.kind,
        topic=args.topic,
        symbols=list(_symbols(args)) or None,
        start_ns=parse_time(args.start),
        end_ns=parse_time(args.end),
        venue=None if args.venue == "all" else args.venue,
        progress=not args.no_progress,
    )
    Console().print(f"delivered {n} messages")
    return 0


def _speed(s: str) -> float | None:
    if s == "max":
        return None
    v = float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError("speed must be > 0 or 'max'")
    return v


def cmd_backtest(args: argparse.Namespace) -> int:
    from dataflows.backtest import BacktestSpec, parse_time, run_backtest

    cfg = _cfg(args)
    spec = BacktestSpec(
        source=args.source,
        symbols=_symbols(args, cfg.symbols),
        start_ns=parse_time(args.start),
        end_ns=parse_time(args.end),
        speed=args.speed,
        workers=args.workers,
        processes=args.processes,
        publish=args.publish,
    )
    run_backtest(cfg, spec, args.out, run_id=args.run_id, progress=not args.no_progress)
    return 0


def cmd_paper(args: argparse.Namespace) -> int:
    from dataflows.backtest import parse_time
    from dataflows.paper import run_paper

    cfg = _cfg(args)
    if not args.source.startswith("kafka:"):
        raise ValueError("paper trading tails a Kafka topic: --source kafka:<topic>")
    run_paper(
        cfg,
        args.source.removeprefix("kafka:"),
        _symbols(args, cfg.symbols),
        start_ns=parse_time(args.start),
        run_id=args.run_id,
        workers=args.workers,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Shipped real data -> Kafka -> replay -> report, on the embedded defaults."""
    from dataflows.backtest import BacktestSpec, parse_time, run_backtest
    from dataflows.ingest import ingest_file
    from infra.kafka import broker
    from infra.kafka.client import partition_bounds
    from schemas.topics import BARS

    console = Console()
    cfg = load_config(DEMO_CONFIG)
    console.rule("1/3 Kafka broker")
    broker.up(cfg.kafka.bootstrap, data_dir(), cfg.kafka.partitions)
    console.rule("2/3 ingest real Binance 1m bars (Jan 2024) into md.bars.v1")
    start, end = parse_time("2024-01-01"), parse_time("2024-02-01")
    assert start is not None and end is not None
    held = partition_bounds(cfg.kafka.bootstrap, BARS.name, start // 10**6, end // 10**6)
    if sum(hi - lo for lo, hi in held.values()) > 0:
        console.print("md.bars.v1 already holds January 2024: not ingesting it twice")
    else:
        ingest_file(DEMO_BARS, cfg.kafka.bootstrap, "bars")
    console.rule("3/3 replay md.bars.v1 through the trading flow")
    spec = BacktestSpec(f"kafka:{BARS.name}", ("BTCUSDT", "ETHUSDT"), start, end)
    run_id, _ = run_backtest(cfg, spec, Path(args.out))
    console.print(f"outputs in [bold]{args.out}[/] (run {run_id}); rows in {cfg.clickhouse.dsn}")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from dataflows.backtest import parse_time
    from offline.dataset import DatasetSpec, build_dataset

    cfg = _cfg(args)
    spec = DatasetSpec(
        source=args.source,
        symbols=_symbols(args, cfg.symbols),
        feature_set=args.feature_set or cfg.features.set,
        labels=tuple(args.label or ()),
        out=Path(args.out),
        start_ns=parse_time(args.start),
        end_ns=parse_time(args.end),
        workers=args.workers,
        store=args.store,
    )
    res = build_dataset(cfg, spec, progress=not args.no_progress)
    rate = res.rows / res.seconds if res.seconds > 0 else 0.0
    Console().print(
        f"dataset [bold]{res.dataset_id}[/] (feature set version {res.version}): "
        f"{res.rows:,} rows {dict(res.rows_by_symbol)} in {res.seconds:.1f} s "
        f"({rate:,.0f} bars/s) -> {res.path}"
    )
    return 0


def cmd_lookahead(args: argparse.Namespace) -> int:
    from offline.lookahead import main as lookahead_main

    return lookahead_main(
        args.feature, args.data, args.symbol, args.ref_symbol, args.bars, args.cuts, args.seed
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cryptoflow", description=__doc__)
    p.add_argument(
        "--debug",
        action="store_true",
        help="on failure, show the full traceback and component output (Rust, librdkafka, "
        "chDB) on the terminal instead of one line and a log file",
    )
    sub = p.add_subparsers(dest="verb", required=True)

    s = sub.add_parser("infra", help="manage the local Kafka broker (KRaft, single node)")
    s.add_argument("action", choices=["up", "down", "status"])
    s.add_argument("--config", help="TOML config file")
    s.set_defaults(fn=cmd_infra)

    s = sub.add_parser("ingest", help="publish market data to Kafka")
    isub = s.add_subparsers(dest="what", required=True)
    f = isub.add_parser("file", help="publish a parquet/CSV file of trades or bars")
    f.add_argument("path")
    f.add_argument("--kind", choices=["trades", "bars"], help="default: detected from columns")
    f.add_argument("--topic", help="default: md.trades.v1 or md.bars.v1")
    f.add_argument("--symbols", help="comma-separated filter")
    f.add_argument("--start", help="ISO date/time, UTC, inclusive")
    f.add_argument("--end", help="ISO date/time, UTC, exclusive")
    f.add_argument("--venue", default="binance_spot", help="trade files: venue filter, or 'all'")
    f.add_argument("--config", help="TOML config file")
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(fn=cmd_ingest)

    s = sub.add_parser("backtest", help="replay history through the trading flow and report")
    _replay_args(s, "kafka:<topic> or file:<path>")
    s.add_argument("--config", help="TOML config file")
    s.add_argument("--out", type=Path, help="write fills.csv, equity.csv, summary.json here")
    s.add_argument("--speed", type=_speed, default=None, help="1, 60, ... x real time, or max")
    s.add_argument("--workers", type=int, default=1, help="Bytewax worker threads per process")
    s.add_argument(
        "--processes", type=int, default=1, help="Bytewax cluster processes on this machine"
    )
    s.add_argument("--run-id", help="default: derived from source, range, symbols and config")
    s.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="send orders/fills/dead letters to Kafka (default: when the source is Kafka)",
    )
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(fn=cmd_backtest)

    s = sub.add_parser(
        "paper",
        help="paper-trade: tail Kafka through the same flow, simulated fills; "
        "SIGINT/SIGTERM stop cleanly, --run-id resumes",
    )
    s.add_argument("--source", required=True, help="kafka:<topic>, e.g. kafka:md.trades.v1")
    s.add_argument("--symbols", help="comma-separated; default: the config's symbols")
    s.add_argument("--config", help="TOML config file")
    s.add_argument(
        "--start",
        help="replay history from this UTC time first (warm-up), then tail; default: now "
        "(only bars that arrive from now on)",
    )
    s.add_argument(
        "--run-id",
        help="default: paper-<UTC start time>; the id of a stopped run resumes it from its "
        "last snapshot (same source, symbols and config)",
    )
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(fn=cmd_paper)

    s = sub.add_parser("offline", help="training sets and feature checks")
    osub = s.add_subparsers(dest="what", required=True)
    d = osub.add_parser(
        "dataset", help="replay history through the live flow's features into parquet + ClickHouse"
    )
    _replay_args(d, "kafka:<topic> or file:<path> (parquet globs allowed)")
    d.add_argument("--feature-set", help="built-in or [feature_sets] name; default: config's")
    d.add_argument(
        "--label",
        action="append",
        help="label spec, repeatable: forward:h=1,5 | threshold:h=10,thr=0.002 | "
        "triple_barrier:pt=0.004,sl=0.004,h=60[,vol=<feature column>]",
    )
    d.add_argument("--out", required=True, help="output .parquet file")
    d.add_argument("--config", help="TOML config file")
    d.add_argument("--workers", type=int, default=1, help="Bytewax worker threads")
    d.add_argument(
        "--store",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write the ClickHouse features table (default: yes)",
    )
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(fn=cmd_dataset)
    c = osub.add_parser(
        "lookahead-check",
        help="prove features do not look ahead (truncated recompute) and report warm-up",
    )
    c.add_argument("feature", help="spec (rsi_14), set name (full) or module:Name of your own")
    c.add_argument("--data", default=str(DEMO_BARS), help="bar parquet file")
    c.add_argument("--symbol", default="ETHUSDT")
    c.add_argument("--ref-symbol", default="BTCUSDT", help="reference symbol for pair features")
    c.add_argument("--bars", type=int, default=5_000, help="history length checked")
    c.add_argument(
        "--cuts", type=int, default=60, help="random truncation points, on top of the fixed ones"
    )
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(fn=cmd_lookahead)

    s = sub.add_parser("demo", help="start Kafka, ingest shipped real data, replay, report")
    s.add_argument("--out", default="out/demo", help="report directory")
    s.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one verb. On failure: one line on stderr and a non-zero exit code (2 usage/input,
    3 component fault, 1 unexpected). Run as a program (`argv=None`), a failed command ends
    with `os._exit`: after a fault, normal teardown (librdkafka threads, chDB) may hang."""
    as_program = argv is None
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = pop_debug(args_list)
    args = parser().parse_args(args_list)
    debug = debug or bool(getattr(args, "debug", False))
    from infra import faults

    faults.clear()
    code = 0
    diag = Diagnostics(args.verb, debug)
    done = threading.Event()
    with diag:
        if as_program:
            threading.Thread(target=watchdog, args=(diag, done), daemon=True).start()
        try:
            code = int(args.fn(args) or 0)
        except SystemExit:
            raise
        except BaseException as exc:
            code = report(exc, diag)
        finally:
            done.set()
    if code in (0, EXIT_USAGE):
        diag.discard_if_empty()
    if code != 0 and as_program:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
