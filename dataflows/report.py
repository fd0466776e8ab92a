"""Backtest report: read a run's fills and equity back from ClickHouse (the system of record),
compute the statistics, print them, and write fills.csv, equity.csv, summary.json and an equity
plot. Everything is sorted and formatted deterministically: same run, same bytes.

Besides the statistics, a report says how many bars each symbol got (`bar_counts`, from the
`bars` table) and which positions are still open at the end (`open_positions`, the last
`positions` snapshot per symbol: the final one is marked at the last close)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from dataflows.datalist import utc_text
from infra.clickhouse import query_df
from operators.account_trader import ACCOUNT
from operators.performance import Summary, combine_equity_arrays, summarize
from schemas.config import Config
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


@dataclass(frozen=True)
class OpenPosition:
    """A position still held when the run ended, marked at the last close it saw."""

    symbol: str
    ts_event: int  # of the last snapshot (the final one: the last bar's close)
    qty: float
    avg_price: float
    mark_price: float
    mark_value: float  # qty * mark_price
    unrealized_pnl: float  # (mark_price - avg_price) * qty, before exit fees

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bar_counts(client: Any, database: str, run_id: str) -> dict[str, int]:
    """Bars the run stored per symbol (`bars` table, FINAL), sorted by symbol; symbols that
    got none are absent."""
    df = query_df(
        client,
        f"SELECT symbol, count() AS n FROM {database}.bars FINAL WHERE run_id = %(run)s "
        f"GROUP BY symbol ORDER BY symbol",
        {"run": run_id},
    )
    return {str(r["symbol"]): int(r["n"]) for r in df.iter_rows(named=True)}


def dead_letter_counts(client: Any, database: str, run_id: str) -> dict[str, int]:
    """Dead letters the run stored per reason (`dead_letters` table, FINAL), most first."""
    df = query_df(
        client,
        f"SELECT reason, count() AS n FROM {database}.dead_letters FINAL "
        "WHERE run_id = %(run)s GROUP BY reason ORDER BY n DESC, reason",
        {"run": run_id},
    )
    return {str(r["reason"]): int(r["n"]) for r in df.iter_rows(named=True)}


def dead_letter_note(counts: dict[str, int], table: str, run_id: str, shown: int = 5) -> str:
    """One line: how many messages the run dead-lettered, the commonest reasons, where they are."""
    reasons = [f"{r}: {n:,}" for r, n in list(counts.items())[:shown]]
    if len(counts) > shown:
        reasons.append(f"{len(counts) - shown} more reasons")
    return (
        f"{sum(counts.values()):,} messages went to dead letters ({', '.join(reasons)}), not "
        f"into the run: table {table}, run_id {run_id}"
    )


def risk_story(client: Any, database: str, run_id: str) -> dict[str, Any]:
    """What the risk engine did to a run: its trading-state changes in event order (account-wide
    ones have symbol "") and its denials per rule, most first."""
    run = {"run": run_id}
    states = query_df(
        client,
        f"SELECT toUnixTimestamp64Nano(ts_event) AS ts, symbol, old, new, reason "
        f"FROM {database}.trading_state FINAL WHERE run_id = %(run)s ORDER BY ts_event, symbol",
        run,
    )
    den = query_df(
        client,
        f"SELECT rule, count() AS n FROM {database}.order_denials FINAL WHERE run_id = %(run)s "
        f"GROUP BY rule ORDER BY n DESC, rule",
        run,
    )
    return {
        "state_changes": [
            {"ts_event": int(r["ts"]), **{k: str(r[k]) for k in ("symbol", "old", "new", "reason")}}
            for r in states.iter_rows(named=True)
        ],
        "denials": {str(r): int(n) for r, n in den.iter_rows()},
    }


def risk_note(
    story: dict[str, Any], span: tuple[int, int] | None = None
) -> tuple[str, bool] | None:
    """One line on what the risk engine did (None: nothing), and whether it is a warning: the
    account ended the run not trading (halted or reduce-only), so the result after that moment
    is the engine's, not the strategy's. `span`: the run's first and last bar times, to say how
    much of the run that was."""
    changes, denials = story["state_changes"], story["denials"]
    if not changes and not denials:
        return None
    parts: list[str] = []
    account = [c for c in changes if not c["symbol"]]
    final = account[-1]["new"] if account else "active"
    if account:
        first = next((c for c in account if c["new"] != "active"), account[0])
        at = utc_text(first["ts_event"])
        said = f"trading went {first['new'].upper()} at {at} UTC ({first['reason']})"
        if len(account) > 1:
            said += f", {len(account)} account-wide state changes in all"
        parts.append(said)
        if final != "active":
            last = account[-1]
            since = (
                ""
                if last is first
                else (f" since {utc_text(last['ts_event'])} UTC ({last['reason']})")
            )
            share = ""
            if span is not None and span[1] > span[0]:
                frac = (span[1] - last["ts_event"]) / (span[1] - span[0])
                share = f" (the last {max(0.0, min(1.0, frac)):.0%} of it)"
            parts.append(f"{final.upper()} for the rest of the run{since}{share}")
    stale = [c for c in changes if c["symbol"]]
    if stale:
        names = sorted({c["symbol"] for c in stale})
        parts.append(f"{len(stale)} per-symbol state changes ({', '.join(names)})")
    if denials:
        rules = ", ".join(f"{r} {n:,}" for r, n in list(denials.items())[:5])
        more = f", {len(denials) - 5} more rules" if len(denials) > 5 else ""
        parts.append(f"{sum(denials.values()):,} orders denied ({rules}{more})")
    return f"risk: {'; '.join(parts)}", final != "active"


def no_trades_reason(
    client: Any, database: str, run_id: str, cfg: Config, bars: dict[str, int] | None = None
) -> str:
    """The warning for a run without a fill, with what its trading producer did: signals by
    direction (for an SMA rule, whether any symbol got the bars it needs to compare, from
    `bars`: bars per symbol), for a model the highest probability of each class beside the
    decision thresholds, and the risk engine's denials by rule (a run that did nothing says
    why)."""
    producer = cfg.strategy.producer
    name = producer or cfg.strategy.rule_name
    run = {"run": run_id, "name": name}
    sig = query_df(
        client,
        f"SELECT direction, count() AS n FROM {database}.signals FINAL "
        f"WHERE run_id = %(run)s AND strategy = %(name)s GROUP BY direction ORDER BY direction",
        run,
    )
    said = {int(d): int(n) for d, n in sig.iter_rows()}
    parts = [
        f"its trading producer {name} emitted {sum(said.values()):,} signals"
        + (f" ({', '.join(f'direction {d}: {n:,}' for d, n in said.items())})" if said else "")
    ]
    if said.get(-1) and not said.get(1) and cfg.portfolio.kind == "spot":
        parts[0] += (
            "; none long, and a spot account does not short: direction -1 only closes a long "
            '(portfolio.kind = "margin" trades both ways)'
        )
    spec = next((p for p in cfg.producers if p.name == producer), None)
    rule = cfg.strategy if spec is None else spec if spec.kind == "sma_cross" else None
    slow = rule.slow if rule is not None else 0  # an SMA rule's first signal: bar slow + 1
    most = max((bars or {}).values(), default=None)
    if slow and most is not None and most <= slow:
        parts[0] += (
            f" (its first signal can come at bar {slow + 1} of a symbol; the most any symbol "
            f"got is {most:,})"
        )
    if spec is not None and spec.kind == "model":
        pred = query_df(
            client,
            f"SELECT any(classes) AS classes, maxForEach(proba) AS top, count() AS n "
            f"FROM {database}.predictions FINAL WHERE run_id = %(run)s AND producer = %(name)s",
            run,
        )
        n = int(pred["n"][0]) if pred.height else 0
        if n:
            top = ", ".join(
                f"p({c}) {p:.3f}" for c, p in zip(pred["classes"][0], pred["top"][0], strict=True)
            )
            parts.append(
                f"over {n:,} scored bars the highest were {top}, against the decision's long "
                f"{spec.decision.long} / short {spec.decision.short}"
            )
    den = query_df(
        client,
        f"SELECT rule, count() AS n FROM {database}.order_denials FINAL WHERE run_id = %(run)s "
        f"GROUP BY rule ORDER BY n DESC, rule",
        run,
    )
    if den.height:
        rules = ", ".join(f"{r} {int(n):,}" for r, n in den.iter_rows())
        parts.append(f"the risk engine denied {int(den['n'].sum()):,} orders ({rules})")
    return "the run made no trades: " + "; ".join(parts)


def open_positions(client: Any, database: str, run_id: str) -> list[OpenPosition]:
    """The last `positions` snapshot of each symbol whose quantity is not zero, by symbol."""
    df = query_df(
        client,
        f"SELECT symbol, toUnixTimestamp64Nano(max(ts_event)) AS last_ns, "
        f"argMax(qty, ts_event) AS qty, argMax(avg_price, ts_event) AS avg_price, "
        f"argMax(mark_price, ts_event) AS mark_price, "
        f"argMax(unrealized_pnl, ts_event) AS unrealized_pnl "
        f"FROM {database}.positions FINAL WHERE run_id = %(run)s GROUP BY symbol ORDER BY symbol",
        {"run": run_id},
    )
    return [
        OpenPosition(
            symbol=str(r["symbol"]),
            ts_event=int(r["last_ns"]),
            qty=float(r["qty"]),
            avg_price=float(r["avg_price"]),
            mark_price=float(r["mark_price"]),
            mark_value=float(r["qty"]) * float(r["mark_price"]),
            unrealized_pnl=float(r["unrealized_pnl"]),
        )
        for r in df.iter_rows(named=True)
        if r["qty"] != 0
    ]


def account_initial(cfg: Config) -> dict[str, float]:
    """The run's one account (docs/adr/0009) and its initial cash: what `build_report` starts
    the equity curve from."""
    return {ACCOUNT: cfg.portfolio.initial_cash}


def build_report(
    fills: list[Fill], equity: pl.DataFrame, initial: dict[str, float]
) -> tuple[Summary, np.ndarray, np.ndarray]:
    """Statistics over the equity points of the accounts in `initial` (one: "account"), each
    carried forward where it has no point; equity points of other accounts are ignored."""
    equity = equity.filter(pl.col("account").is_in(list(initial)))
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


def _plot(
    path: Path, ts: np.ndarray, eq: np.ndarray, title: str, marks: Sequence[int] = ()
) -> None:
    """Equity over drawdown; `marks` (int ns) as dashed vertical lines on both."""
    if len(ts) < 2:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = ts.astype("datetime64[ns]")
    peak = np.maximum.accumulate(eq)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[3, 1])
    a1.plot(x, eq, lw=0.8)
    for t in marks:
        for a in (a1, a2):
            a.axvline(np.datetime64(t, "ns"), color="grey", lw=0.6, ls="--")
    a1.set_ylabel("equity")
    a1.set_title(f"equity — {title}")
    a2.fill_between(x, 0, (eq / peak - 1.0) * 100, color="tab:red", lw=0)
    a2.set_ylabel("drawdown %")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def print_summary(
    summary: Summary,
    run_id: str,
    console: Console | None = None,
    mode: str = "backtest",
    *,
    bars: dict[str, int] | None = None,
    positions: list[OpenPosition] | None = None,
) -> None:
    """The statistics as a table; with `bars` (per symbol) one bar count per symbol instead of
    the number of equity timestamps, with `positions` every position still open at the end."""
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
    ]
    if bars is None:
        rows.append(("bars", str(d["n_bars"])))
    else:
        rows += [(f"bars {sym}", f"{n:,}") for sym, n in sorted(bars.items())]
    if positions is not None:
        rows += [(f"open {p.symbol}", describe_position(p)) for p in positions]
        if not positions:
            rows.append(("open positions", "none"))
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


def describe_position(p: OpenPosition) -> str:
    return (
        f"qty {p.qty:.8g} @ {p.mark_price:,.2f}: value {p.mark_value:,.2f}, "
        f"unrealized PnL {p.unrealized_pnl:+,.2f}"
    )
