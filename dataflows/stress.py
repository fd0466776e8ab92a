"""`cryptoflow stress`: the strategy through named real crash windows, next to buy-and-hold.

Each window is one `run_backtest` over the shared real Binance 1m bars
(`../shared/data/bars_1m/binance_spot_<symbol>_1m_<year>.parquet`, beside the repository) for
the config's symbols. The benchmark is computed from the same raw bars, not from what the flow
stored: equal-weight buy-and-hold of the config's symbols bought at each one's first close in
the window (paying the config's fee), marked at every close
(`operators.analytics.benchmark.buy_and_hold`), evaluated at the strategy's equity times so
both drawdowns see the same instants. A window starts cold: the strategy warms up inside it,
exactly as a backtest of that range would.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from dataflows.sweep_params import utc_text
from schemas.config import Config


def parse_time(s: str) -> int:
    from dataflows.backtest import parse_time as parse

    v = parse(s)
    assert v is not None
    return v


# Beside the repository, as tests/paths.py finds it (CI clones ../shared next to the repo).
SHARED_BARS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bars_1m"


@dataclass(frozen=True)
class StressWindow:
    name: str
    start: str  # UTC date, inclusive
    end: str  # UTC date, exclusive
    what: str

    @property
    def start_ns(self) -> int:
        return parse_time(self.start)

    @property
    def end_ns(self) -> int:
        return parse_time(self.end)


# Whole UTC days; the end is the day after the last named one.
WINDOWS = (
    StressWindow("china-ban-2021-05-19", "2021-05-19", "2021-05-20", "China ban crash"),
    StressWindow("luna-2022-05", "2022-05-07", "2022-05-15", "LUNA/UST collapse"),
    StressWindow("3ac-celsius-2022-06-13", "2022-06-13", "2022-06-14", "Celsius freeze, 3AC"),
    StressWindow("ftx-2022-11", "2022-11-08", "2022-11-11", "FTX collapse"),
)
BY_NAME = {w.name: w for w in WINDOWS}


def pick_windows(names: list[str] | None) -> list[StressWindow]:
    if not names:
        return list(WINDOWS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(
            f"--window {', '.join(unknown)}: unknown; the stress windows are {', '.join(BY_NAME)}"
        )
    return [BY_NAME[n] for n in dict.fromkeys(names)]


def window_source(w: StressWindow, symbols: list[str], root: Path = SHARED_BARS) -> str:
    """The `file:` source of a window: a glob over its year's per-symbol files, each checked."""
    year = w.start[:4]
    if parse_time(f"{int(year) + 1}-01-01") < w.end_ns:
        raise ValueError(f"stress window {w.name} spans two years; the files are per year")
    missing = [
        p
        for p in (root / f"binance_spot_{s.lower()}_1m_{year}.parquet" for s in symbols)
        if not p.is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"stress window {w.name}: no real 1m bars at {', '.join(map(str, missing))} "
            "(../shared/data beside the repository, see its README.md; the config's symbols "
            "need one file per symbol and year)"
        )
    return f"file:{root}/binance_spot_*usdt_1m_{year}.parquet"


def raw_closes(
    source: str, symbols: list[str], start_ns: int, end_ns: int, interval_s: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """symbol -> (close times ns, closes) of the raw bars opened in [start, end)."""
    import polars as pl

    from dataflows.io.files import scan

    df = (
        scan(source.removeprefix("file:"))
        .select("symbol", pl.col("open_time").dt.epoch("ns").alias("t"), "close")
        .filter(
            pl.col("symbol").is_in(symbols),
            pl.col("t") >= start_ns,
            pl.col("t") < end_ns,
        )
        .sort("symbol", "t")
        .collect()
    )
    out = {}
    for s in symbols:
        part = df.filter(pl.col("symbol") == s)
        t = part["t"].to_numpy().astype(np.int64) + interval_s * 1_000_000_000
        out[s] = (t, part["close"].to_numpy().astype(np.float64))
    return out


def max_drawdown(curve: np.ndarray, initial: float) -> float:
    c = np.concatenate(([initial], curve))
    return float(np.max(1.0 - c / np.maximum.accumulate(c)))


def stress_window(cfg: Config, w: StressWindow, root: Path = SHARED_BARS) -> dict[str, Any]:
    """One window: the strategy's backtest and buy-and-hold over the same raw bars."""
    from dataflows.backtest import BacktestSpec
    from dataflows.report import account_initial, build_report, load_run
    from dataflows.sweep import run_point
    from infra.clickhouse import connect
    from operators.analytics.benchmark import buy_and_hold

    symbols = list(cfg.symbols)
    source = window_source(w, symbols, root)
    run = run_point(cfg, BacktestSpec(source, tuple(symbols), w.start_ns, w.end_ns))
    ch = cfg.clickhouse
    fills, equity = load_run(connect(ch.dsn, ch.database), ch.database, run["run_id"])
    initial = sum(account_initial(cfg).values())
    _, ts, _ = build_report(fills, equity, account_initial(cfg))
    closes = raw_closes(source, symbols, w.start_ns, w.end_ns, cfg.bars.interval_s)
    _, bench = buy_and_hold(closes, initial, fee_rate=cfg.execution.fee_bps / 1e4, at=ts)
    return {
        "window": w.name,
        "what": w.what,
        "start": utc_text(w.start_ns),
        "end": utc_text(w.end_ns),
        "run_id": run["run_id"],
        "strategy_return": run["total_return"],
        "strategy_max_drawdown": run["max_drawdown"],
        "fills": run["n_trades"],
        "round_trips": run["n_round_trips"],
        "benchmark_return": float(bench[-1] / initial - 1.0),
        "benchmark_max_drawdown": max_drawdown(bench, initial),
        "bars": {s: len(closes[s][0]) for s in symbols},
    }


def run_stress(
    cfg: Config,
    names: list[str] | None,
    out_dir: Path,
    *,
    root: Path = SHARED_BARS,
    console: Console | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every named window (default: all), then `<out>/stress.{csv,json}` and the table."""
    from rich.progress import Progress

    windows = pick_windows(names)
    for w in windows:  # every file is there before the first replay
        window_source(w, list(cfg.symbols), root)
    rows = []
    with Progress(
        console=console or Console(stderr=True), transient=True, disable=not progress
    ) as bar:
        task = bar.add_task("stress windows", total=len(windows))
        for w in windows:
            bar.update(task, description=f"stress: {w.name}")
            rows.append(stress_window(cfg, w, root))
            bar.update(task, advance=1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stress.json").write_text(json.dumps(rows, indent=2) + "\n")
    keys = [k for k in rows[0] if k != "bars"]
    with (out_dir / "stress.csv").open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        wr.writeheader()
        wr.writerows(rows)
    print_stress(rows, Console(), out_dir)
    return rows


def print_stress(rows: list[dict[str, Any]], out: Console, out_dir: Path) -> None:
    t = Table(title="stress windows: strategy vs buy-and-hold (same real bars)")
    heads = ("window", "UTC [start, end)", "return", "max dd", "fills", "B&H return", "B&H max dd")
    for h in heads:
        t.add_column(h, justify="left" if h[0] in "wU" else "right", no_wrap=True)
    for r in rows:
        t.add_row(
            r["window"],
            f"{r['start'][:10]} .. {r['end'][:10]}",
            f"{r['strategy_return'] * 100:+.2f}%",
            f"{r['strategy_max_drawdown'] * 100:.2f}%",
            str(r["fills"]),
            f"{r['benchmark_return'] * 100:+.2f}%",
            f"{r['benchmark_max_drawdown'] * 100:.2f}%",
        )
    out.print(t)
    out.print(
        f"results: {out_dir / 'stress.csv'}, {out_dir / 'stress.json'} "
        "(`cryptoflow report RUN_ID` analyses one window's run)",
        markup=False,
        highlight=False,
    )
