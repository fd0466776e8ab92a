"""`cryptoflow sweep` (parameter sweeps confirmed out of sample, dataflows/sweep.py) and
`cryptoflow stress` (real crash windows vs buy-and-hold, dataflows/stress.py)."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dataflows.cli_common import _cfg, _console, _probe_topic, _symbols
from dataflows.sweep import METRICS, OVERFIT, SweepResult


def _pct(v: Any) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v * 100:+.2f}%"


def _num(v: Any) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{float(v):.3f}"


def _heads(paths: list[str]) -> list[str]:
    """A parameter's last key as its column, unless two share it."""
    last = [p.rsplit(".", 1)[-1] for p in paths]
    return [s if last.count(s) == 1 else p for s, p in zip(last, paths, strict=True)]


def print_results(r: SweepResult, out: Console) -> None:
    m = r.spec.metric
    fmt = _pct if m in ("total_return", "max_drawdown", "win_rate") else _num
    t = Table(title=f"sweep: {len(r.points)} points by in-sample {m} {r.spec.in_sample.text()}")
    heads = _heads([a.path for a in r.spec.axes])
    for h in ("#", *heads, f"IS {m}", "IS return", "IS fills", "IS rank"):
        t.add_column(h, justify="right")
    for h in (f"OOS {m}", "OOS return", "OOS fills", "OOS rank", "note"):
        t.add_column(h, justify="left" if h == "note" else "right")
    for p in sorted(r.points, key=lambda p: (p.is_rank or math.inf, p.index)):
        i, o = p.is_run or {}, p.oos_run or {}
        t.add_row(
            f"{'*' if p is r.chosen else ''}{p.index}",
            *(str(v) for v in p.params.values()),
            fmt(i.get(m)),
            _pct(i.get("total_return")),
            str(i.get("n_trades", "-")),
            "-" if p.is_rank is None else f"{p.is_rank:g}",
            fmt(o.get(m)),
            _pct(o.get("total_return")),
            str(o.get("n_trades", "-")),
            "-" if p.oos_rank is None else f"{p.oos_rank:g}",
            p.skipped or ("" if p.oos_run else "not confirmed"),
        )
    out.print(t)
    c = r.chosen
    ci, co = c.is_run or {}, c.oos_run or {}
    rho = "undefined" if r.rank_corr is None else f"{r.rank_corr:+.3f}"
    n_oos = sum(p.oos_run is not None for p in r.points)
    sets = " ".join(f"--set {k}={json.dumps(v)}" for k, v in c.params.items())
    out.print(
        f"chosen (the in-sample best, *): point {c.index} {c.params}: OUT OF SAMPLE {m} "
        f"{fmt(co.get(m))}, return {_pct(co.get('total_return'))} (run {co.get('run_id')}; "
        f"in sample {fmt(ci.get(m))}, {_pct(ci.get('total_return'))}). IS/OOS rank "
        f"correlation {rho} over {n_oos} confirmed points. {len(r.points)} points tried: "
        f"`cryptoflow backtest ... {sets}` then `cryptoflow report RUN --sweep "
        f"<out>/sweep.json` deflates its Sharpe for the search.",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for w in r.warnings:
        style = "bold red" if w.startswith(OVERFIT) else "yellow"
        out.print(f"warning: {w}", style=style, markup=False, highlight=False, soft_wrap=True)
    out.print(
        f"results: {r.out_dir / 'sweep.csv'}, {r.out_dir / 'sweep.json'}",
        markup=False,
        highlight=False,
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    from dataflows.sweep import SweepSpec, run_sweep
    from dataflows.sweep_params import parse_param, parse_window

    cfg = _cfg(args)
    _probe_topic(cfg, args.source)
    spec = SweepSpec(
        source=args.source,
        symbols=_symbols(args, cfg.symbols, cfg),
        in_sample=parse_window(args.in_sample, "--in-sample"),
        out_of_sample=parse_window(args.out_of_sample, "--out-of-sample"),
        axes=tuple(parse_param(p, args.optuna is not None) for p in args.param or ()),
        metric=args.metric,
        jobs=args.jobs,
        optuna=args.optuna,
        seed=args.seed,
        top_k=args.top_k,
        oos_all=args.oos_all,
    )
    result = run_sweep(cfg, spec, args.out, progress=not args.no_progress)
    print_results(result, _console())
    return 0


def cmd_stress(args: argparse.Namespace) -> int:
    from dataflows.stress import run_stress

    cfg = _cfg(args)
    run_stress(cfg, args.window, args.out, progress=not args.no_progress)
    return 0


def add_sweep_verbs(
    sub: Any,
    verb: Callable[..., argparse.ArgumentParser],
    config_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register `cryptoflow sweep` and `cryptoflow stress` (cli.py's `_verb`, `config_args`)."""
    from dataflows.stress import WINDOWS

    s = verb(
        sub,
        "sweep",
        "parameter sweep (grid or Optuna) on an in-sample window, confirmed out of sample",
        "cryptoflow sweep --config examples/sma_cross.toml --source file:examples/data/"
        "binance_spot_btc_eth_1m_2024-01.parquet --in-sample 2024-01-01:2024-01-21 "
        "--out-of-sample 2024-01-21:2024-02-01 --param strategy.fast=5,10,20 "
        "--param strategy.slow=30,60 --jobs 2",
        description="Each point is one backtest on --in-sample; the best points (all of them "
        "up to 20) are replayed on --out-of-sample. The chosen point is the in-sample best, "
        "reported with its out-of-sample number, next to the in-sample/out-of-sample rank "
        "correlation; a warning says when the in-sample optimum does not hold (ADR 0014).",
    )
    s.add_argument(
        "--source", required=True, help="file:PATH (parquet, globs allowed) or kafka:TOPIC"
    )
    s.add_argument("--symbols", help="comma-separated (default: the config's symbols)")
    s.add_argument("--in-sample", required=True, metavar="START:END", help="UTC, END exclusive")
    s.add_argument(
        "--out-of-sample",
        required=True,
        metavar="START:END",
        help="UTC, END exclusive; must not overlap --in-sample",
    )
    s.add_argument(
        "--param",
        action="append",
        metavar="PATH=V1,V2,...",
        help="a config key and its values (TOML), repeatable; with --optuna also PATH=LO:HI "
        "(default: none; at least one is needed)",
    )
    s.add_argument("--optuna", type=int, metavar="N", help="TPE search of N trials, not a grid")
    s.add_argument("--seed", type=int, default=0, help="Optuna sampler seed (default: 0)")
    s.add_argument("--metric", default="sharpe", choices=list(METRICS), help="ranks the points")
    s.add_argument("--top-k", type=int, default=5, help="points confirmed out of sample")
    s.add_argument(
        "--oos-all",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="confirm every point out of sample (default: when there are <= 20)",
    )
    s.add_argument("--jobs", type=int, default=1, help="worker processes")
    s.add_argument("--out", type=Path, default=Path("out/sweep"), help="results directory")
    config_args(s)
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_sweep)

    s = verb(
        sub,
        "stress",
        "replay named real crash windows and compare with buy-and-hold",
        "cryptoflow stress --config examples/sma_cross.toml --window ftx-2022-11",
        description="Windows (real Binance 1m bars from ../shared/data/bars_1m): "
        + "; ".join(f"{w.name} [{w.start}, {w.end}) {w.what}" for w in WINDOWS),
    )
    s.add_argument(
        "--window",
        action="append",
        choices=[w.name for w in WINDOWS],
        help="repeatable (default: all)",
    )
    s.add_argument("--out", type=Path, default=Path("out/stress"), help="results directory")
    config_args(s)
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_stress)
