"""Where a whole `cryptoflow backtest` spends its time, per stage (wall clock, no profiler).

Runs the same command as bench/replay_throughput.py (file source, a year of BTCUSDT 1m bars,
examples/sma_cross.toml, embedded chDB in a temporary directory) in this process, with each
stage's entry points wrapped in perf_counter timers, and prints seconds and µs per bar by stage.
Bytewax runs the Python steps on the calling thread, so the stage times add up; what is left of
the replay ("bytewax + lambdas") is Bytewax itself and the untimed one-line steps.

    .venv/bin/python bench/replay_stages.py [--year 2024] [--symbols BTCUSDT]
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "bars_1m"
sys.path.insert(0, str(ROOT))

TIMES: dict[str, float] = defaultdict(float)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            TIMES[name] += time.perf_counter() - t0

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def patch(obj: Any, attr: str, name: str) -> None:
    setattr(obj, attr, timed(name, getattr(obj, attr)))


def install() -> None:
    """Wrap every stage's entry point (imports here are counted as start-up)."""
    import dataflows.account_step as account_step
    import dataflows.backtest as backtest
    import dataflows.flow as flow
    import dataflows.io.clickhouse as chsink
    import dataflows.io.files as files
    import dataflows.steps as steps
    import infra.clickhouse as ch

    patch(files._Partition, "next_batch", "source: file -> Bar structs")
    patch(files._Partition, "__init__", "source: read parquet")
    dec = flow._decoder
    flow._decoder = lambda *a, **kw: timed("decode/validate", dec(*a, **kw))  # type: ignore
    for cls, name in (
        (steps.BarsLogic, "bars step"),
        (steps.FeaturesLogic, "features step (guard + features + rows)"),
        (steps.SignalLogic, "strategy step"),
        (account_step.AccountLogic, "account step"),
    ):
        patch(cls, "on_item", name)
        patch(cls, "on_eof", name)
    if hasattr(flow, "_by_table"):
        patch(flow, "_by_table", "route by table")
    for fn in ("_write", "snapshot", "close"):
        patch(chsink._ClickHousePartition, fn, "sink: buffer (python)")
    insert = ch.BatchWriter._insert

    def per_table(self: Any, name: str, buf: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return insert(self, name, buf)
        finally:
            dt = time.perf_counter() - t0
            TIMES[f"sink: insert {name}"] += dt
            TIMES["sink: buffer (python)"] -= dt  # nested inside the partition's calls

    ch.BatchWriter._insert = per_table  # type: ignore[method-assign]
    for fn in ("_arrow_block", "arrow_for", "columns_for"):  # whichever the writer uses
        if hasattr(ch, fn):
            patch(ch, fn, "  of which: rows -> arrow (python)")
    for fn in ("_file_in_range", "connect", "ensure_tables", "clear_run"):
        patch(backtest, fn, f"before: {fn}")
    patch(backtest, "execute", "replay (bytewax run_main)")
    for fn in (
        "bar_counts",
        "open_positions",
        "load_run",
        "build_report",
        "record_feature_set",
        "record_run",
        "print_summary",
    ):
        patch(backtest, fn, f"after: {fn}")


REPLAY_STAGES = (
    "source: read parquet",
    "source: file -> Bar structs",
    "decode/validate",
    "bars step",
    "features step (guard + features + rows)",
    "strategy step",
    "account step",
    "route by table",
    "sink: buffer (python)",
)


def digest(database: str) -> list[str]:
    """Per table: raw rows, FINAL rows and an order-independent hash of the FINAL rows (every
    column), so two runs of different code can be compared for identical results."""
    from infra.clickhouse import TABLES, connect
    from schemas.config import load_config

    cfg = load_config(ROOT / "examples" / "sma_cross.toml")
    client = connect(cfg.clickhouse.dsn, database)
    out = []
    for name in TABLES:
        q = f"SELECT count(), sum(cityHash64(*)) FROM {database}.{name}"
        raw = client.query(q).result_rows[0][0]
        n, h = client.query(q.replace(f".{name}", f".{name} FINAL")).result_rows[0]
        out.append(f"{name:16s} raw {raw:>8} final {n:>8} hash {h}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--year", default="2024")
    ap.add_argument("--symbols", default="BTCUSDT")
    ap.add_argument("--config", default="examples/sma_cross.toml")
    ap.add_argument("--digest", action="store_true", help="print per-table digests of the rows")
    args = ap.parse_args()
    path = SHARED / f"binance_spot_{args.symbols.lower()}_1m_{args.year}.parquet"
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CRYPTOFLOW_DATA_DIR"] = tmp
        os.environ.pop("CLICKHOUSE_DSN", None)
        t_imp = time.perf_counter()
        from dataflows import cli

        install()
        TIMES["start-up: imports"] = time.perf_counter() - t_imp + (t_imp - T_START)
        argv = ["backtest", "--source", f"file:{path}", "--symbols", args.symbols]
        argv += ["--config", args.config, "--no-progress"]
        t0 = time.perf_counter()
        devnull = open(os.devnull, "w")  # noqa: SIM115
        out, sys.stdout = sys.stdout, devnull
        try:
            code = cli.main(argv)
        finally:
            sys.stdout = out
        total = time.perf_counter() - t0 + TIMES["start-up: imports"]
        if code:
            raise SystemExit(code)
        lines = digest("cryptoflow") if args.digest else []
    import polars as pl

    n = pl.scan_parquet(path).select(pl.len()).collect().item()
    replay = TIMES.pop("replay (bytewax run_main)")
    inserts = sum(v for k, v in TIMES.items() if k.startswith("sink: insert"))
    TIMES["  of which: rows -> arrow (python)"] = TIMES.pop("  of which: rows -> arrow (python)", 0)
    staged = sum(TIMES.get(k, 0.0) for k in REPLAY_STAGES) + inserts
    TIMES["bytewax + lambdas (rest of the replay)"] = replay - staged
    accounted = sum(v for k, v in TIMES.items() if not k.startswith("  of which"))
    TIMES["other (cli, config, teardown)"] = total - accounted
    print(f"{n:,} bars, whole command {total:.2f} s = {n / total:,.0f} bars/s")
    print(f"  pandas imported: {'pandas' in sys.modules} (pyarrow's pa.array loads it, ~0.4 s)")
    acct = TIMES.get("account step", 0.0)
    print(f"  without the account step: {total - acct:.2f} s = {n / (total - acct):,.0f} bars/s")
    print(f"{'stage':48s} {'s':>7s} {'µs/bar':>8s}")
    for k, v in TIMES.items():
        print(f"{k:48s} {v:7.2f} {v / n * 1e6:8.2f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
