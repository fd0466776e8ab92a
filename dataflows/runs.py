"""`cryptoflow runs list | show RUN_ID`: what the `runs` table knows about past runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from infra.clickhouse import connect, ensure_tables, query_df

_COLS = (
    "run_id, mode, source, toUnixTimestamp64Nano(ts_init) AS ts_init, "
    "toUnixTimestamp64Nano(start) AS start, toUnixTimestamp64Nano(end) AS end, symbols, "
    "config_json, summary_json"
)


def _time(ns: int) -> str:
    if not ns:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(row["summary_json"]) if row["summary_json"] else {}


def _feature_set(row: dict[str, Any]) -> str:
    try:
        return str(json.loads(row["config_json"])["features"]["set"])
    except (KeyError, ValueError, TypeError):
        return "-"


def load_runs(dsn: str, database: str, run_id: str | None = None) -> list[dict[str, Any]]:
    client = connect(dsn, database)
    ensure_tables(client, database, ["runs"])
    where = "WHERE run_id = %(run)s " if run_id else ""
    df = query_df(
        client,
        f"SELECT {_COLS} FROM `{database}`.runs FINAL {where}ORDER BY ts_init, run_id",
        {"run": run_id} if run_id else None,
    )
    return list(df.iter_rows(named=True))


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def print_runs(rows: list[dict[str, Any]], console: Console) -> None:
    if not rows:
        console.print("no runs stored yet (run `cryptoflow backtest` or `cryptoflow paper`)")
        return
    t = Table(title=f"{len(rows)} run{'' if len(rows) == 1 else 's'}")
    for col in (
        "run id",
        "mode",
        "source",
        "range (UTC)",
        "symbols",
        "features",
        "return",
        "sharpe",
        "max dd",
        "trades",
    ):
        # Ids and numbers never wrap (a run id is what `runs show` takes); a long source folds.
        t.add_column(col, overflow="fold", no_wrap=col not in ("source", "symbols"))
    for r in rows:
        s = _summary(r)
        t.add_row(
            r["run_id"],
            r["mode"],
            r["source"],
            f"{_time(r['start'])} → {_time(r['end'])}",
            r["symbols"],
            _feature_set(r),
            _pct(s.get("total_return")),
            "-" if s.get("sharpe") is None else f"{s['sharpe']:.2f}",
            _pct(s.get("max_drawdown")),
            str(s.get("n_trades", "-")),
        )
    console.print(t)


def print_run(row: dict[str, Any], console: Console) -> None:
    t = Table(title=f"run {row['run_id']}", show_header=False)
    for k, v in (
        ("mode", row["mode"]),
        ("source", row["source"]),
        ("range (UTC)", f"{_time(row['start'])} → {_time(row['end'])}"),
        ("symbols", row["symbols"]),
        ("feature set", _feature_set(row)),
        ("first event (UTC)", _time(row["ts_init"])),
    ):
        t.add_row(k, str(v))
    for k, v in sorted(_summary(row).items()):
        t.add_row(k, _number(v))
    console.print(t)
    config = json.dumps(json.loads(row["config_json"] or "{}"), indent=2, sort_keys=True)
    console.print("config:", config, markup=False)


def _number(v: Any) -> str:
    if not isinstance(v, float):
        return str(v)
    return f"{v:,.2f}" if abs(v) >= 1000 else f"{v:.6g}"
