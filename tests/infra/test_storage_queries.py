"""docs/storage.md is true: its table list is the DDL (`infra.clickhouse.TABLES`, as ClickHouse
itself reports it), and its example queries, run exactly as written (the database name replaced),
give on two real backtests and a real training set what the report files and an independent
Python computation give. No mocks: real Binance bars, the real flow, the session's chDB."""

from __future__ import annotations

import csv
import json
import math
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from dataflows.backtest import BacktestSpec, parse_time, run_backtest
from infra.clickhouse import TABLES, connect, count_final, ensure_tables, query_df, table_columns
from infra.clickhouse_views import VIEWS
from offline.dataset import DatasetSpec, build_dataset
from operators.features import feature_set
from operators.performance import round_trips
from schemas.messages import Fill
from tests.dataflows.flowkit import sma_config
from tests.paths import BARS_2024_01, ROOT

DOC = ROOT / "docs" / "storage.md"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
START, END = parse_time("2024-01-01"), parse_time("2024-01-08")
FAST = (10, 20)  # strategy.fast of run a and run b (slow stays 50)


# --------------------------------------------------------------------------- the doc


def doc_text() -> str:
    return DOC.read_text()


def doc_tables(text: str) -> dict[str, tuple[tuple[str, ...], list[tuple[str, str]]]]:
    """{table: (ORDER BY columns, [(column, type), ...])} from the `## Tables` section."""
    section = text.split("\n## Tables\n", 1)[1].split("\n## ", 1)[0]
    out: dict[str, tuple[tuple[str, ...], list[tuple[str, str]]]] = {}
    for m in re.finditer(r"^### `(\w+)`\n(.*?)(?=^### |\Z)", section, re.M | re.S):
        name, body = m.group(1), m.group(2)
        key = re.search(r"^Key \(`ORDER BY`\): `([^`]*)`$", body, re.M)
        assert key is not None, f"docs/storage.md: table {name} has no 'Key (`ORDER BY`)' line"
        cols = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", body, re.M)
        out[name] = (tuple(k.strip() for k in key.group(1).split(",")), cols)
    return out


def doc_queries(text: str) -> dict[str, str]:
    """{name: sql} of the ```sql blocks that start with `-- query: <name>`."""
    return dict(re.findall(r"```sql\n-- query: (\w+)\n(.*?)```", text, re.S))


def as_written(sql: str, database: str) -> str:
    """The doc's query for another database: only the `cryptoflow.` table prefix changes."""
    return re.sub(r"\bcryptoflow\.", f"{database}.", sql)


def test_doc_lists_every_table_with_the_ddls_columns_and_key(ch_dsn: str, ch_db: str) -> None:
    tables = doc_tables(doc_text())
    assert list(tables) == list(TABLES), "docs/storage.md: tables missing, extra or reordered"
    for name, (key, cols) in tables.items():
        assert key == TABLES[name].order_by, f"docs/storage.md: key of {name}"
        assert cols == table_columns(name), f"docs/storage.md: columns of {name}"
    # ... and that is what ClickHouse really creates: engine, sorting key, columns and types.
    client = connect(ch_dsn, ch_db)
    ensure_tables(client, ch_db)
    created = query_df(
        client,
        "SELECT name, engine, sorting_key FROM system.tables WHERE database = {db:String}",
        {"db": ch_db},
    )
    assert {r[0]: r[1:] for r in created.rows() if r[1] != "View"} == {
        name: ("ReplacingMergeTree", ", ".join(key)) for name, (key, _) in tables.items()
    }
    # the analytics views (docs/analytics.md) come with the tables
    assert sorted(r[0] for r in created.rows() if r[1] == "View") == sorted(VIEWS)
    columns = query_df(
        client,
        "SELECT table, name, type FROM system.columns WHERE database = {db:String} "
        "ORDER BY table, position",
        {"db": ch_db},
    )
    for name, (_, cols) in tables.items():
        got = [(c, t) for tab, c, t in columns.rows() if tab == name]
        assert got == cols, name


def test_doc_queries_read_every_table_with_final() -> None:
    queries = doc_queries(doc_text())
    assert set(queries) == {"named_features", "equity_curve", "round_trips", "compare_runs"}
    for name, sql in queries.items():
        refs = re.findall(r"\bcryptoflow\.(\w+)((?: AS \w+)? FINAL)?", sql)
        assert refs, name
        for table, final in refs:
            assert table in TABLES, (name, table)
            assert final, f"query {name} reads {table} without FINAL"


# --------------------------------------------------------------------------- real runs


@dataclass(frozen=True)
class Run:
    run_id: str
    fast: int
    out: Path

    def summary(self) -> dict[str, Any]:
        return dict(json.loads((self.out / "summary.json").read_text()))

    def equity_csv(self) -> tuple[list[int], list[float]]:
        with (self.out / "equity.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        return [int(r["ts_event"]) for r in rows], [float(r["equity"]) for r in rows]

    def fills_csv(self) -> list[Fill]:
        """The report's fills.csv as messages (ids made up, in file order)."""
        with (self.out / "fills.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        return [
            Fill(
                fill_id=f"{i:08d}",
                order_id=f"{i:08d}",
                symbol=r["symbol"],
                ts_event=int(r["ts_event"]),
                ts_init=int(r["ts_event"]),
                side="buy" if r["side"] == "buy" else "sell",
                price=float(r["price"]),
                qty=float(r["qty"]),
                fee=float(r["fee"]),
            )
            for i, r in enumerate(rows)
        ]


@dataclass(frozen=True)
class Stored:
    dsn: str
    database: str
    a: Run
    b: Run
    dataset_id: str
    dataset: Path

    def query(self, name: str, **params: str) -> pl.DataFrame:
        sql = as_written(doc_queries(doc_text())[name], self.database)
        return query_df(connect(self.dsn, self.database), sql, params)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def stored(ch_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    """Two backtests (strategy.fast 10 and 20) over a week of real BTCUSDT and ETHUSDT 1m bars,
    and a `core` training set of the same week, in one fresh database."""
    database = f"test_storage_{uuid.uuid4().hex[:12]}"
    tmp = tmp_path_factory.mktemp("storage")
    base = sma_config(clickhouse={"dsn": ch_dsn, "database": database})
    spec = BacktestSpec(f"file:{BARS_2024_01}", SYMBOLS, START, END)
    runs = []
    for fast in FAST:
        cfg = base.model_copy(update={"strategy": base.strategy.model_copy(update={"fast": fast})})
        run_id, _ = run_backtest(cfg, spec, tmp / f"fast{fast}", progress=False)
        runs.append(Run(run_id, fast, tmp / f"fast{fast}"))
    ds = DatasetSpec(f"file:{BARS_2024_01}", SYMBOLS, "core", (), tmp / "core.parquet", START, END)
    result = build_dataset(base, ds, progress=False)
    try:
        yield Stored(ch_dsn, database, runs[0], runs[1], result.dataset_id, result.path)
    finally:
        connect(ch_dsn, database).command(f"DROP DATABASE IF EXISTS `{database}`")


def _ns(series: pl.Series) -> list[int]:
    return series.dt.epoch("ns").to_list()


def test_equity_curve_is_the_reports_equity(stored: Stored) -> None:
    for run in (stored.a, stored.b):
        df = stored.query("equity_curve", run_id=run.run_id)
        ts, equity = run.equity_csv()
        assert len(ts) == 7 * 1440
        assert _ns(df["ts_event"]) == ts
        np.testing.assert_allclose(df["equity"].to_numpy(), equity, rtol=1e-12, atol=0)
        np.testing.assert_allclose(
            df["equity"].to_numpy(), (df["cash"] + df["position_value"]).to_numpy(), rtol=1e-12
        )
        assert math.isclose(df["equity"][-1], run.summary()["final_equity"], rel_tol=1e-12)


def test_round_trips_match_an_independent_computation(stored: Stored) -> None:
    for run in (stored.a, stored.b):
        df = stored.query("round_trips", run_id=run.run_id)
        fills = run.fills_csv()
        assert df.height == len(fills) == run.summary()["n_trades"] > 100
        # The fills themselves, in the report's order.
        assert _ns(df["ts_event"]) == [f.ts_event for f in fills]
        for c in ("symbol", "side", "price", "qty", "fee"):
            assert df[c].to_list() == [getattr(f, c) for f in fills], c
        # Position and trip number per fill, recomputed per symbol.
        position: dict[str, float] = {}
        trip: dict[str, int] = {}
        expect_pos, expect_trip = [], []
        for f in fills:
            trip.setdefault(f.symbol, 1)
            expect_trip.append(trip[f.symbol])
            q = position.get(f.symbol, 0.0) + (f.qty if f.side == "buy" else -f.qty)
            position[f.symbol] = q
            expect_pos.append(q)
            if abs(q) <= 1e-12 * max(f.qty, 1.0):
                trip[f.symbol] += 1
        np.testing.assert_allclose(df["position"].to_numpy(), expect_pos, rtol=0, atol=1e-9)
        assert df["trip"].to_list() == expect_trip
        # Trip PnL on each closing fill = operators.performance.round_trips, in the same order.
        pnl = df["trip_pnl"].drop_nulls().to_list()
        expect = round_trips(fills)
        assert len(pnl) == len(expect) == run.summary()["n_round_trips"] > 50
        np.testing.assert_allclose(pnl, expect, rtol=1e-9, atol=1e-6)
        closing = df.filter(pl.col("trip_pnl").is_not_null())
        np.testing.assert_allclose(closing["position"].to_numpy(), 0.0, atol=1e-9)
        wins = sum(p > 0 for p in pnl)
        assert math.isclose(wins / len(pnl), run.summary()["win_rate"], rel_tol=1e-12)


def test_compare_runs_matches_both_summaries(stored: Stored) -> None:
    df = stored.query("compare_runs", run_a=stored.a.run_id, run_b=stored.b.run_id)
    assert df["run_id"].to_list() == [stored.a.run_id, stored.b.run_id]
    for row, run in zip(df.iter_rows(named=True), (stored.a, stored.b), strict=True):
        s = run.summary()
        assert json.loads(row["strategy"])["fast"] == run.fast
        assert row["initial_equity"] == s["initial_equity"] == 1_000_000.0
        assert math.isclose(row["final_equity"], s["final_equity"], rel_tol=1e-12)
        assert math.isclose(row["total_return"], s["total_return"], rel_tol=1e-9, abs_tol=1e-12)
        fills = run.fills_csv()
        assert row["fills"] == s["n_trades"] == len(fills)
        assert math.isclose(row["fees"], math.fsum(f.fee for f in fills), rel_tol=1e-12)
        assert math.isclose(row["fees"], s["fees"], rel_tol=1e-12)
        assert row["bars"] == 7 * 1440
    assert df["fills"][0] != df["fills"][1]  # two different runs, really


def _named(df: pl.DataFrame) -> tuple[list[list[str]], np.ndarray]:
    pairs = df["named"].to_list()
    names = [[p["1"] for p in row] for row in pairs]
    values = np.array([[p["2"] for p in row] for row in pairs], dtype=np.float64)
    return names, values


def test_named_features_of_a_training_set_equal_its_parquet(stored: Stored) -> None:
    fs = feature_set("core")
    df = stored.query("named_features", run_id=stored.dataset_id)
    frame = pl.read_parquet(stored.dataset).sort("symbol", "ts_event")
    assert df.height == frame.height == len(SYMBOLS) * 7 * 1440
    assert df["symbol"].to_list() == frame["symbol"].to_list()
    assert _ns(df["ts_event"]) == _ns(frame["ts_event"])
    names, values = _named(df)
    assert all(n == fs.columns for n in names)
    # ClickHouse keeps NaN where the parquet has null: to_numpy turns null into NaN.
    np.testing.assert_array_equal(values, frame.select(fs.columns).to_numpy())
    np.testing.assert_array_equal(df["rsi_14"].to_numpy(), frame["rsi_14"].to_numpy())


def test_named_features_of_a_backtest(stored: Stored) -> None:
    """A backtest stores the same features as the training set of the same bars."""
    client = connect(stored.dsn, stored.database)
    run_id = stored.a.run_id
    if count_final(client, stored.database, "feature_sets", run_id) == 0:
        pytest.skip("backtests do not record their feature set in `feature_sets` yet")
    df = stored.query("named_features", run_id=run_id)
    assert df.height == count_final(client, stored.database, "features", run_id)
    assert df.height == len(SYMBOLS) * 7 * 1440
    names, values = _named(df)
    assert all(n == feature_set("core").columns for n in names)
    ds = stored.query("named_features", run_id=stored.dataset_id)
    np.testing.assert_array_equal(values, _named(ds)[1])


def _readme_queries() -> list[str]:
    """The SQL statements of README.md's "Stored results" block, in order."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Stored results", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    return [q.strip() for q in block.split(";") if q.strip()]


def test_readme_queries_answer_like_the_documented_ones(stored: Stored) -> None:
    equity, trips, compare = _readme_queries()
    client = connect(stored.dsn, stored.database)

    def run(sql: str, **params: str) -> pl.DataFrame:
        return query_df(client, as_written(sql, stored.database), params)  # type: ignore[no-any-return]

    for r in (stored.a, stored.b):
        doc = stored.query("equity_curve", run_id=r.run_id)
        got = run(equity, run_id=r.run_id)
        assert got["ts_event"].to_list() == doc["ts_event"].to_list()
        np.testing.assert_array_equal(got["equity"].to_numpy(), doc["equity"].to_numpy())
        doc = stored.query("round_trips", run_id=r.run_id)
        got = run(trips, run_id=r.run_id)
        assert got["trip"].to_list() == doc["trip"].to_list()
        assert got["trip_pnl"].to_list() == doc["trip_pnl"].to_list()
    ids = {"run_a": stored.a.run_id, "run_b": stored.b.run_id}
    doc = stored.query("compare_runs", **ids).sort("run_id")
    got = run(compare, **ids).sort("run_id")
    for col in ("final_equity", "total_return", "fills", "fees"):
        assert got[col].to_list() == doc[col].to_list(), col
