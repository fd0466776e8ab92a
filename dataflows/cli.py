"""`cryptoflow` — one command, a verb per job (`cryptoflow VERB --help`)."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from dataflows.cli_common import (
    DEMO_BARS,
    _cfg,
    _console,
    _probe_topic,
    _range,
    _speed,
    _symbols,
    _time,
    _version,
    _wide_pipes,
)
from dataflows.cli_control import add_control
from dataflows.cli_models import add_models_verb
from dataflows.cli_report import add_report_verbs
from dataflows.cli_sweep import add_sweep_verbs
from dataflows.cli_train import add_train_verb
from dataflows.diagnostics import EXIT_USAGE, Diagnostics, pop_debug, report, watchdog
from schemas.config import data_dir


def cmd_infra(args: argparse.Namespace) -> int:
    from infra.kafka import broker

    cfg = _cfg(args)
    kdir = data_dir()
    console = _console()
    if args.action == "up":
        bootstrap = broker.up(cfg.kafka.bootstrap, kdir, cfg.kafka.partitions)
        console.print(f"kafka up at [bold]{bootstrap}[/]")
    elif args.action == "down":
        if broker.down(kdir):
            console.print("kafka down")
        else:  # say so: a broker started under another data dir is still running
            console.print(
                f"no broker of ours was running under {kdir} (one started with another "
                "CRYPTOFLOW_DATA_DIR is stopped with that one)",
                markup=False,
                highlight=False,
            )
    else:
        st = broker.status(cfg.kafka.bootstrap, kdir)
        console.print(st)
        return 0 if st.get("running") else 1
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from dataflows.ingest import ingest_file
    from dataflows.io.files import detect_kind, normalized, scan
    from schemas.topics import BARS, TRADES

    cfg = _cfg(args)
    start_ns, end_ns = _range(args)
    lf = scan(args.path)
    kind = args.kind or detect_kind(lf)
    normalized(lf, kind)  # the file's columns fit, before asking the broker
    _probe_topic(
        cfg, f"kafka:{args.topic or (TRADES if kind == 'trades' else BARS).name}", "--topic"
    )
    n = ingest_file(
        args.path,
        cfg.kafka.bootstrap,
        args.kind,
        topic=args.topic,
        symbols=list(_symbols(args)) or None,
        start_ns=start_ns,
        end_ns=end_ns,
        venue=None if args.venue == "all" else (args.venue or cfg.venue),
        progress=not args.no_progress,
        outage_s=cfg.kafka.outage_s,
        interval_ns=cfg.bars.interval_ns,
    )
    _console().print(f"delivered {n} messages")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from dataflows.backtest import BacktestSpec, run_backtest

    cfg = _cfg(args)
    start_ns, end_ns = _range(args)
    _probe_topic(cfg, args.source)
    spec = BacktestSpec(
        source=args.source,
        symbols=_symbols(args, (), cfg),  # none given: the config's, as far as the source has them
        start_ns=start_ns,
        end_ns=end_ns,
        speed=args.speed,
        workers=args.workers,
        processes=args.processes,
        publish=args.publish,
    )
    if args.walk_forward:
        from dataflows.walkforward import run_walk_forward

        if args.out is None or args.run_id:
            raise ValueError(
                "--walk-forward needs --out DIR (its training set, per-window models and "
                "report go there) and takes no --run-id (it follows the trained models)"
            )
        run_walk_forward(
            cfg,
            spec,
            args.out,
            args.walk_forward,
            args.embargo,
            dataset=args.dataset,
            progress=not args.no_progress,
        )
        return 0
    if args.dataset or args.embargo != "0":
        raise ValueError("--dataset and --embargo belong to --walk-forward")
    run_backtest(cfg, spec, args.out, run_id=args.run_id, progress=not args.no_progress)
    return 0


def cmd_paper(args: argparse.Namespace) -> int:
    from dataflows.paper import run_paper

    cfg = _cfg(args)
    topic = args.source.removeprefix("kafka:")
    if not args.source.startswith("kafka:") or not topic:
        raise ValueError(
            f"--source: paper trading tails a Kafka topic, not {args.source!r}; "
            "use --source kafka:<topic>, e.g. kafka:md.trades.v1"
        )
    symbols = _symbols(args, cfg.symbols, cfg)
    start_ns = _time(args, "start")
    _probe_topic(cfg, args.source)
    run_paper(
        cfg,
        topic,
        symbols,
        start_ns=start_ns,
        run_id=args.run_id,
        workers=args.workers,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dataflows.demo import cmd_demo as run_demo

    return run_demo(args)


def cmd_dataset(args: argparse.Namespace) -> int:
    from offline.dataset import DatasetSpec, build_dataset

    cfg = _cfg(args)
    start_ns, end_ns = _range(args)
    _probe_topic(cfg, args.source)
    spec = DatasetSpec(
        source=args.source,
        symbols=_symbols(args, (), cfg),  # none given: the config's, as far as the source has them
        feature_set=args.feature_set or cfg.features.set,
        labels=tuple(args.label or ()),
        out=Path(args.out),
        start_ns=start_ns,
        end_ns=end_ns,
        workers=args.workers,
        store=args.store,
    )
    res = build_dataset(cfg, spec, progress=not args.no_progress)
    rate = res.rows / res.seconds if res.seconds > 0 else 0.0
    _console().print(
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


def cmd_data_list(args: argparse.Namespace) -> int:
    from dataflows.datalist import inventory, print_inventory
    from schemas.topics import BARS, TRADES

    cfg = _cfg(args)
    sources = [args.source] if args.source else [f"kafka:{BARS.name}", f"kafka:{TRADES.name}"]
    console = _console()
    for source in sources:
        _probe_topic(cfg, source)
        data, kind = inventory(source, cfg)
        at = f" on {cfg.kafka.bootstrap}" if source.startswith("kafka:") else ""
        print_inventory(data, f"{source}{at}: {kind}", console)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from dataflows.runs import load_runs, print_run, print_runs

    cfg = _cfg(args)
    dsn, database = cfg.clickhouse.dsn, cfg.clickhouse.database
    console = _console()
    if args.action == "list":
        print_runs(load_runs(dsn, database), console)
        return 0
    rows = load_runs(dsn, database, args.run_id)
    if not rows:
        known = [r["run_id"] for r in load_runs(dsn, database)]
        near = difflib.get_close_matches(args.run_id, known, n=1, cutoff=0.5)
        near += [k for k in known if k.startswith(args.run_id) and k not in near]
        hint = f"did you mean {near[0]}? " if near else ""
        raise ValueError(
            f"no run {args.run_id!r} in {database} at {dsn}; {hint}"
            "`cryptoflow runs list` shows the stored runs"
        )
    print_run(rows[0], console)
    return 0


# --------------------------------------------------------------------------- the parser


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (unless the help already says it), examples as
    written (epilog), wide enough for the option names."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=min(_term_width(), 120))

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or action.default in (None, False, argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def _term_width() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line that names the option and where to read more."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _verb(sub: Any, name: str, help: str, example: str, **kw: Any) -> argparse.ArgumentParser:
    """A sub-command with the shared help format and an example in its epilog."""
    return sub.add_parser(  # type: ignore[no-any-return]
        name,
        help=help,
        description=kw.pop("description", help),
        epilog=f"example:\n  {example}",
        formatter_class=_Help,
        **kw,
    )


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cryptoflow",
        description=__doc__,
        formatter_class=_Help,
        epilog="example:\n  cryptoflow backtest --source file:examples/data/"
        "binance_spot_btc_eth_1m_2024-01.parquet --config examples/sma_cross.toml",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument(
        "--debug",
        action="store_true",
        help="on failure, show the full traceback and component output (Rust, librdkafka, "
        "chDB) on the terminal instead of one line and a log file",
    )
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def config_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("--config", help="TOML config file (default: the built-in defaults)")
        s.add_argument(
            "--set",
            action="append",
            metavar="SECTION.KEY=VALUE",
            help="override one config field, repeatable; the value is TOML (1e3, true, "
            '"x", [1, 2]; a bare word is a string), e.g. --set strategy.fast=20 '
            "(default: none)",
        )

    def replay_args(s: argparse.ArgumentParser, source_help: str) -> None:
        """The history slice a replay reads (backtest, dataset)."""
        s.add_argument("--source", required=True, help=source_help)
        s.add_argument(
            "--start", help="UTC date/time, inclusive, YYYY-MM-DD[THH:MM[:SS]] (default: all)"
        )
        s.add_argument("--end", help="UTC date/time, exclusive (default: all)")
        s.add_argument("--symbols", help="comma-separated (default: the config's symbols)")

    s = _verb(
        sub, "infra", "manage the local Kafka broker (KRaft, single node)", "cryptoflow infra up"
    )
    s.add_argument("action", choices=["up", "down", "status"])
    config_args(s)
    s.set_defaults(fn=cmd_infra)

    s = _verb(
        sub,
        "ingest",
        "publish market data to Kafka",
        "cryptoflow ingest file examples/data/binance_spot_btc_eth_1m_2024-01.parquet",
    )
    isub = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    f = _verb(
        isub,
        "file",
        "publish a parquet/CSV file of trades or bars",
        "cryptoflow ingest file bars.parquet --symbols BTCUSDT --start 2024-01-01",
    )
    f.add_argument("path", help="parquet or CSV file")
    f.add_argument("--kind", choices=["trades", "bars"], help="default: detected from the columns")
    f.add_argument("--topic", help="default: md.trades.v1 or md.bars.v1, by kind")
    f.add_argument("--symbols", help="comma-separated filter (default: every symbol)")
    f.add_argument("--start", help="UTC date/time, inclusive (default: the file's first)")
    f.add_argument("--end", help="UTC date/time, exclusive (default: the file's last)")
    f.add_argument(
        "--venue",
        help="trade files: only this venue's trades (default: the config's `venue`), or 'all' "
        "(refused when a symbol trades on several: those are different instruments)",
    )
    config_args(f)
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.set_defaults(fn=cmd_ingest)

    s = _verb(
        sub,
        "backtest",
        "replay history through the trading flow and report",
        "cryptoflow backtest --source kafka:md.bars.v1 --start 2024-01-01 --end 2024-02-01 "
        "--config examples/sma_cross.toml --set strategy.fast=20 --out out/bt",
    )
    replay_args(s, "kafka:<topic> or file:<path>")
    config_args(s)
    s.add_argument(
        "--out", type=Path, help="write fills.csv, equity.csv, summary.json here (default: none)"
    )
    s.add_argument(
        "--speed",
        type=_speed,
        default=None,
        help="1, 60, ... x real time, or max (default: max)",
    )
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
    s.add_argument(
        "--walk-forward",
        metavar="train=D,test=D[,step=D]",
        help="train the trading producer's model per window ([producers.train]) and trade each "
        "test window with its own model (docs/models.md; default: off)",
    )
    s.add_argument("--embargo", default="0", help="walk-forward embargo, e.g. 1h (default: 0)")
    s.add_argument(
        "--dataset",
        type=Path,
        help="walk-forward: an `offline dataset` parquet of this source and range "
        "(default: built into --out)",
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_backtest)

    s = _verb(
        sub,
        "paper",
        "paper-trade: tail Kafka through the same flow, simulated fills; "
        "SIGINT/SIGTERM stop cleanly, --run-id resumes",
        "cryptoflow paper --source kafka:md.trades.v1 --start 2024-01-31 "
        "--config examples/sma_cross.toml",
    )
    s.add_argument("--source", required=True, help="kafka:<topic>, e.g. kafka:md.trades.v1")
    s.add_argument("--symbols", help="comma-separated (default: the config's symbols)")
    config_args(s)
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
    s.add_argument("--workers", type=int, default=1, help="Bytewax worker threads")
    s.set_defaults(fn=cmd_paper)
    add_control(sub, _verb, config_args)

    s = _verb(
        sub,
        "offline",
        "training sets and feature checks",
        "cryptoflow offline lookahead-check rsi_14",
    )
    osub = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    d = _verb(
        osub,
        "dataset",
        "replay history through the live flow's features into parquet + ClickHouse",
        "cryptoflow offline dataset --source file:examples/data/"
        "binance_spot_btc_eth_1m_2024-01.parquet --feature-set full "
        "--label forward:h=1,5 --out out/jan.parquet",
    )
    replay_args(
        d, "kafka:<topic> or file:<path> (parquet, csv, feather or Binance .zip; globs allowed)"
    )
    d.add_argument("--feature-set", help="built-in or [feature_sets] name (default: config's)")
    d.add_argument(
        "--label",
        action="append",
        help="label spec, repeatable: forward:h=1,5 | threshold:h=10,thr=0.002 | "
        "triple_barrier:pt=0.004,sl=0.004,h=60[,vol=<feature column>] (default: none)",
    )
    d.add_argument("--out", required=True, help="output .parquet file")
    config_args(d)
    d.add_argument("--workers", type=int, default=1, help="Bytewax worker threads")
    d.add_argument(
        "--store",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write the ClickHouse features table (default: %(default)s)",
    )
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(fn=cmd_dataset)
    c = _verb(
        osub,
        "lookahead-check",
        "prove features do not look ahead (truncated recompute) and report warm-up",
        "cryptoflow offline lookahead-check full --bars 2000",
    )
    c.add_argument("feature", help="spec (rsi_14), set name (full) or module:Name of your own")
    c.add_argument("--data", default=str(DEMO_BARS), help="bar parquet file")
    c.add_argument("--symbol", default="ETHUSDT", help="symbol checked")
    c.add_argument("--ref-symbol", default="BTCUSDT", help="reference symbol for pair features")
    c.add_argument("--bars", type=int, default=5_000, help="history length checked")
    c.add_argument(
        "--cuts", type=int, default=60, help="random truncation points, on top of the fixed ones"
    )
    c.add_argument("--seed", type=int, default=0, help="seed of the random truncation points")
    c.set_defaults(fn=cmd_lookahead)
    add_train_verb(osub)

    s = _verb(
        sub,
        "data",
        "what market data a source holds",
        "cryptoflow data list --source file:examples/data/binance_spot_btc_eth_1m_2024-01.parquet",
    )
    dsub = s.add_subparsers(dest="what", required=True, metavar="WHAT")
    d = _verb(
        dsub,
        "list",
        "per symbol: first and last time, count, gaps",
        "cryptoflow data list --source kafka:md.bars.v1",
    )
    d.add_argument(
        "--source",
        help="kafka:<topic> or file:<path or glob: parquet, csv, feather, Binance .zip> "
        "(default: the md.bars.v1 and md.trades.v1 topics on the configured broker)",
    )
    config_args(d)
    d.set_defaults(fn=cmd_data_list)

    s = _verb(sub, "runs", "past runs stored in ClickHouse", "cryptoflow runs list")
    rsub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = _verb(
        rsub, "list", "every stored run, oldest first, with its results", "cryptoflow runs list"
    )
    config_args(r)
    r.set_defaults(fn=cmd_runs)
    r = _verb(
        rsub,
        "show",
        "one run: range, symbols, results and its config",
        "cryptoflow runs show bt-0123456789abcdef",
    )
    r.add_argument("run_id", help="a run id, as `cryptoflow runs list` shows it")
    config_args(r)
    r.set_defaults(fn=cmd_runs)
    add_models_verb(sub, _verb, config_args)
    add_report_verbs(sub, _verb, config_args)
    add_sweep_verbs(sub, _verb, config_args)

    s = _verb(
        sub,
        "demo",
        "start Kafka, ingest shipped real data, replay, report",
        "cryptoflow demo --out out/demo",
    )
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
    with diag, _wide_pipes():
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
