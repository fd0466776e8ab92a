"""A run's analysis on disk and in ClickHouse: report.html (one self-contained file), report.json
(the whole document the page shows) and CSVs of its tables; the round trips also go to the
`round_trips` table, so SQL users and the report read the same trips."""

from __future__ import annotations

import csv
import difflib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dataflows.html_report import write_compare, write_report
from infra.clickhouse import BatchWriter
from schemas.messages import RoundTrip

TRADE_COLUMNS = (
    "trip_id",
    "symbol",
    "side",
    "ts_entry",
    "ts_exit",
    "qty",
    "entry_price",
    "exit_price",
    "gross_pnl",
    "fees",
    "pnl",
    "ret",
    "duration_ns",
    "exit_reason",
    "producer",
    "model_version",
    "entry_order_id",
    "exit_order_id",
)
FILES = (
    "report.html",
    "report.json",
    "metrics.csv",
    "trades.csv",
    "per_symbol.csv",
    "monthly.csv",
    "daily.csv",
    "montecarlo.csv",
)


def store_round_trips(client: Any, database: str, run_id: str, trips: Sequence[RoundTrip]) -> None:
    """Idempotent: a trip's key is (run, symbol, trip_id), the same on every rerun."""
    if not trips:
        return
    writer = BatchWriter(client, database, run_id)
    writer.add("round_trips", list(trips))
    writer.flush()


def _cell(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else ("" if v is None else v)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([_cell(v) for v in r])


def write_analysis(out_dir: Path, doc: dict[str, Any]) -> list[Path]:
    """Everything the report shows, as files (same run, same bytes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    strat, bench = doc["metrics"]["strategy"], doc["metrics"]["benchmark"]
    keys = list(strat) + [k for k in bench if k not in strat]
    _write_csv(
        out_dir / "metrics.csv",
        ("metric", "strategy", "benchmark"),
        ((k, strat.get(k), bench.get(k)) for k in keys),
    )
    _write_csv(
        out_dir / "trades.csv",
        TRADE_COLUMNS,
        ([t.get(c) for c in TRADE_COLUMNS] for t in doc["trades"]),
    )
    ps_cols = ("symbol", "n_trades", "pnl", "win_rate", "fees", "benchmark_return")
    _write_csv(
        out_dir / "per_symbol.csv", ps_cols, ([r[c] for c in ps_cols] for r in doc["per_symbol"])
    )
    p_cols = ("period", "ret", "start_ns", "end_ns", "start_equity", "end_equity", "n_bars")
    for name, key in (("monthly.csv", "month"), ("daily.csv", "day")):
        rows = doc["periods"][key]
        _write_csv(out_dir / name, p_cols, ([r[c] for c in p_cols] for r in rows))
    mc_rows = []
    for method, mc in sorted(doc["montecarlo"].items()):
        if not mc:
            continue
        for metric, band in sorted(mc["bands"].items()):
            mc_rows.append([method, metric, mc["n_runs"], mc["seed"]] + [band[q] for q in QS])
    _write_csv(out_dir / "montecarlo.csv", ("method", "metric", "n_runs", "seed", *QS), mc_rows)
    write_report(doc, out_dir / "report.html")
    return [out_dir / f for f in FILES]


QS = ("p5", "p25", "p50", "p75", "p95", "mean")


def write_comparison(docs: Sequence[dict[str, Any]], path: Path) -> list[Path]:
    """compare.html plus compare.csv (one row per metric, one column per run) beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_compare(list(docs), path)
    ids = [d["run"]["run_id"] for d in docs]
    keys: list[str] = []
    for d in docs:
        keys += [k for k in d["metrics"]["strategy"] if k not in keys]
    table = path.with_suffix(".csv")
    _write_csv(
        table,
        ("metric", *ids),
        ([k, *(d["metrics"]["strategy"].get(k) for d in docs)] for k in keys),
    )
    return [path, table]


def analyse_run(
    cfg: Any,
    run_id: str,
    out_dir: Path | None,
    *,
    mc_runs: int = 1000,
    seed: int = 0,
    trials: int = 1,
    sr_var: float = 0.0,
    client: Any = None,
) -> dict[str, Any]:
    """Load, analyse, store the round trips, write the files (when `out_dir`)."""
    from dataflows.analytics import RunNotFound, analyze, load_run_data
    from dataflows.runs import load_runs
    from infra.clickhouse import connect, ensure_tables

    ch = cfg.clickhouse
    if client is None:
        client = connect(ch.dsn, ch.database)
        ensure_tables(client, ch.database)
    try:
        data = load_run_data(client, ch.database, run_id)
    except RunNotFound as exc:
        known = [r["run_id"] for r in load_runs(ch.dsn, ch.database)]
        near = difflib.get_close_matches(run_id, known, n=1, cutoff=0.5)
        near += [k for k in known if k.startswith(run_id) and k not in near]
        raise RunNotFound(f"{exc}{f'; did you mean {near[0]}?' if near else ''}") from None
    doc, trips = analyze(data, mc_runs=mc_runs, seed=seed, trials=trials, sr_var=sr_var)
    store_round_trips(client, ch.database, run_id, trips)
    if out_dir is not None:
        write_analysis(out_dir, doc)
    return doc
