"""`cryptoflow report RUN_ID` and `cryptoflow compare RUN_A RUN_B ...`: a stored run's analysis
as one self-contained HTML page plus JSON/CSV (dataflows/analytics.py, report_files.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dataflows.cli_common import _cfg, _console

# Rows of the console table: key, label, format
HEADLINE = (
    ("total_return", "total return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"),
    ("max_drawdown", "max drawdown", "pct"),
    ("psr", "probabilistic Sharpe", "pct"),
    ("n_trades", "round trips", "int"),
    ("win_rate", "win rate", "pct"),
    ("profit_factor", "profit factor", "num"),
    ("fees", "fees", "money"),
    ("fees_share", "fees / gross PnL", "pct"),
    ("exposure", "time in market", "pct"),
)


def fmt(v: Any, kind: str) -> str:
    if v is None:
        return "n/a"
    if kind == "pct":
        return f"{v * 100:.2f}%"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "money":
        return f"{v:,.2f}"
    return f"{v:.3f}"


def print_headline(doc: dict[str, Any], console: Console) -> None:
    t = Table(title=f"{doc['run']['mode']} {doc['run']['run_id']} vs buy-and-hold")
    for col in ("metric", "strategy", "buy & hold"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    s, b = doc["metrics"]["strategy"], doc["metrics"]["benchmark"]
    for key, label, kind in HEADLINE:
        t.add_row(label, fmt(s.get(key), kind), fmt(b.get(key), kind) if key in b else "")
    console.print(t)


def sweep_trials(path: Path) -> tuple[int, float]:
    """(points tried, variance of their in-sample annualised Sharpe ratios) of a sweep.json."""
    import json
    import statistics

    try:
        doc = json.loads(path.read_text())
        sharpes = [
            p["is_sharpe"]
            for p in doc["points"]
            if not p.get("skipped") and p.get("is_sharpe") is not None
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"--sweep {path}: not a sweep.json of `cryptoflow sweep` ({exc})"
        ) from None
    if len(sharpes) < 2:
        raise ValueError(f"--sweep {path}: needs >= 2 points with an in-sample Sharpe ratio")
    return len(sharpes), statistics.variance(sharpes)


def cmd_report(args: argparse.Namespace) -> int:
    from dataflows.report_files import analyse_run

    trials, sr_var = args.trials, args.sharpe_var or 0.0
    if args.sweep:
        if args.trials != 1 or args.sharpe_var is not None:
            raise ValueError(
                "--sweep gives the trials and their variance: drop --trials/--sharpe-var"
            )
        trials, sr_var = sweep_trials(Path(args.sweep))

    cfg = _cfg(args)
    out = Path(args.out or f"out/report-{args.run_id}")
    console = _console()
    with Console(stderr=True).status(
        f"analysing {args.run_id}: metrics, round trips, {args.mc_runs:,} Monte Carlo runs x 2"
    ):
        doc = analyse_run(
            cfg,
            args.run_id,
            out,
            mc_runs=args.mc_runs,
            seed=args.seed,
            trials=trials,
            sr_var=sr_var,
        )
    print_headline(doc, console)
    for w in doc["warnings"]:
        console.print(f"warning: {w}", style="yellow", markup=False, highlight=False)
    console.print(
        f"report: {out / 'report.html'} (open it in a browser; report.json and CSVs beside it)",
        markup=False,
        highlight=False,
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from dataflows.report_files import analyse_run, write_comparison

    if len(args.run_ids) < 2 or len(set(args.run_ids)) != len(args.run_ids):
        raise ValueError("compare needs two or more different run ids")
    cfg = _cfg(args)
    docs = [analyse_run(cfg, r, None, mc_runs=0) for r in args.run_ids]
    path = Path(args.out)
    written = write_comparison(docs, path)
    console = _console()
    t = Table(title="runs side by side")
    t.add_column("metric")
    for d in docs:
        t.add_column(d["run"]["run_id"], justify="right")
    for key, label, kind in HEADLINE:
        t.add_row(label, *(fmt(d["metrics"]["strategy"].get(key), kind) for d in docs))
    t.add_row(
        "buy & hold return", *(fmt(d["metrics"]["benchmark"]["total_return"], "pct") for d in docs)
    )
    console.print(t)
    console.print(f"compare: {', '.join(str(p) for p in written)}", markup=False, highlight=False)
    return 0


def add_report_verbs(
    sub: Any,
    verb: Callable[..., argparse.ArgumentParser],
    config_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    s = verb(
        sub,
        "report",
        "a stored run's analysis: one self-contained HTML page, JSON and CSVs",
        "cryptoflow report bt-0123456789abcdef --out out/report",
        description="Metrics versus buy-and-hold, round trips, monthly/daily returns, Monte "
        "Carlo bands, equity/drawdown/price plots, config and lineage of one stored run "
        "(backtest or paper). The round trips are also written to the `round_trips` table.",
    )
    s.add_argument("run_id", help="a run id, as `cryptoflow runs list` shows it")
    s.add_argument("--out", help="output directory (default: out/report-RUN_ID)")
    s.add_argument(
        "--mc-runs", type=int, default=1000, help="Monte Carlo runs per method (0: none)"
    )
    s.add_argument("--seed", type=int, default=0, help="Monte Carlo seed")
    s.add_argument(
        "--trials",
        type=int,
        default=1,
        help="strategy variants tried to pick this one, for the deflated Sharpe ratio "
        "(with --sharpe-var)",
    )
    s.add_argument(
        "--sharpe-var",
        type=float,
        help="variance of the trials' annualised Sharpe ratios (with --trials N > 1)",
    )
    s.add_argument(
        "--sweep",
        metavar="SWEEP_JSON",
        help="take --trials and --sharpe-var from a `cryptoflow sweep` result (its in-sample "
        "Sharpe ratios)",
    )
    config_args(s)
    s.set_defaults(fn=cmd_report)

    s = verb(
        sub,
        "compare",
        "stored runs side by side: metrics table and overlaid equity",
        "cryptoflow compare bt-aaaa bt-bbbb --out out/compare.html",
    )
    s.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="two or more run ids")
    s.add_argument("--out", default="out/compare.html", help="HTML file (a .csv beside it)")
    config_args(s)
    s.set_defaults(fn=cmd_compare)
