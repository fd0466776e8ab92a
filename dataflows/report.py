"""Backtest report: read a run's fills and equity back from ClickHouse (the system of record),
compute the statistics, print them, and write fills.csv, equity.csv, summary.json and an equity
plot. Everything is sorted and formatted deterministically: same run, same bytes."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from infra.clickhouse import query_df
from operators.performance import Summary, combine_equity_arrays, summarize
from schemas.messages import Fill


def load_run(client: Any, database: str, run_id: str) -> tuple[list[Fill], pl.DataFrame]:
    """A run's fills (as messages) and its equity points (as columns: one row per bar)."""
    fills_df = query_df(
        client,
        f"SELECT fill_id, order_id, symbol, toUnixTimestamp64Nano(ts_event) AS ts_event, "
        f"toUnixTimestamp64Nano(ts_init) AS ts_init, side, price, qty, fee, liquidity "
        f"FROM {database}.fills FINAL WHERE run_id = %(run)s ORDER BY ts_event, symbol, fill_id",
        {"run": run_id},
    )
    eq_df = query_df(
        client,
        f"SELECT account, toUnixTimestamp64Nano(ts_event) AS ts_event, equity "
        f"FROM {database}.equity FINAL WHERE run_id = %(run)s ORDER BY ts_event, account",
        {"run": run_id},
    )
    fills = [Fill(**r) for r in fills_df.iter_rows(named=True)]
    return fills, eq_df


def build_report(
    fills: list[Fill], equity: pl.DataFrame, initial: dict[str, float]
) -> tuple[Summary, np.ndarray, np.ndarray]:
    ts, eq = combine_equity_arrays(
        equity["ts_event"].to_numpy().astype(np.int64),
        equity["account"].to_numpy().astype(object),
        equity["equity"].to_numpy(),
        initial,
    )
    return summarize(ts, eq, fills, sum(initial.values())), ts, eq


def write_outputs(
    out_dir: Path,
    summary: Summary,
    fills: list[Fill],
    ts: np.ndarray,
    eq: np.ndarray,
    extra: dict[str, Any],
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "fills.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["ts_event", "symbol", "side", "price", "qty", "fee"])
        for f in fills:
            w.writerow([f.ts_event, f.symbol, f.side, repr(f.price), repr(f.qty), repr(f.fee)])
    with (out_dir / "equity.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["ts_event", "equity"])
        for t, e in zip(ts.tolist(), eq.tolist(), strict=True):
            w.writerow([t, repr(e)])
    doc = {**extra, **summary.to_dict()}
    (out_dir / "summary.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    _plot(out_dir / "equity.png", ts, eq, extra.get("run_id", ""))


def _plot(path: Path, ts: np.ndarray, eq: np.ndarray, title: str) -> None:
    if len(ts) < 2:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = ts.astype("datetime64[ns]")
    peak = np.maximum.accumulate(eq)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[3, 1])
    a1.plot(x, eq, lw=0.8)
    a1.set_ylabel("equity")
    a1.set_title(f"equity — {title}")
    a2.fill_between(x, 0, (eq / peak - 1.0) * 100, color="tab:red", lw=0)
    a2.set_ylabel("drawdown %")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def print_summary(
    summary: Summary, run_id: str, console: Console | None = None, mode: str = "backtest"
) -> None:
    console = console or Console()
    t = Table(title=f"{mode} {run_id}", show_header=False)
    d = summary.to_dict()

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v * 100:.2f}%"

    rows = [
        ("trades (fills)", str(d["n_trades"])),
        ("round trips", str(d["n_round_trips"])),
        ("final equity", f"{d['final_equity']:,.2f}"),
        ("total return", pct(d["total_return"])),
        ("sharpe (annualised)", f"{d['sharpe']:.3f}"),
        ("max drawdown", pct(d["max_drawdown"])),
        ("win rate", pct(d["win_rate"])),
        ("profit factor", "n/a" if d["profit_factor"] is None else f"{d['profit_factor']:.3f}"),
        ("fees", f"{d['fees']:,.2f}"),
        ("bars", str(d["n_bars"])),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
