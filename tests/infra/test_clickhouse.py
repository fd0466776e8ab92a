"""Storage layer against a real embedded ClickHouse (chDB); fixtures from tests/_ch_fixtures.py."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec
import polars as pl
import pyarrow as pa
import pytest

from infra import clickhouse as ch
from infra import clickhouse_client, faults
from infra.faults import Fault
from schemas.blocks import RowBlock
from schemas.messages import (
    NS_PER_MINUTE,
    Bar,
    DeadLetter,
    EquityPoint,
    FeatureRow,
    FeatureSetInfo,
    Fill,
    Liquidation,
    Metric,
    ModelInfo,
    Order,
    OrderDenied,
    OrderExpired,
    PositionSnapshot,
    Prediction,
    RoundTrip,
    RunInfo,
    Signal,
    Trade,
    TradingStateChanged,
)
from tests.paths import ROOT

T0 = 1_700_000_000_123_456_789  # ns: sub-microsecond digits check DateTime64(9) precision


def sample(table: str, i: int) -> msgspec.Struct:
    """The i-th distinct (by natural key) message for a table."""
    ts = T0 + i * NS_PER_MINUTE
    match table:
        case "trades":
            return Trade("BTCUSDT", ts, ts + 1, i, 100.0 + i, 0.5, "buy" if i % 2 else "sell")
        case "bars":
            return Bar("ETHUSDT", ts, ts + 1, 1.0, 2.0, 0.5, 1.5, 10.0 + i, n_trades=i)
        case "signals":
            return Signal("BTCUSDT", ts, ts, "sma_cross", 1 if i % 2 else -1, reason="x")
        case "orders":
            return Order(f"o{i}", "BTCUSDT", ts, ts, "buy", quote_budget=100.0)
        case "order_denials":
            return OrderDenied(f"i{i}", "BTCUSDT", ts, ts, "max_notional", "too big")
        case "fills":
            return Fill(f"f{i}", f"o{i}", "BTCUSDT", ts, ts, "sell", 100.0, 0.1, 0.01)
        case "order_expiries":
            return OrderExpired(f"o{i}", "BTCUSDT", ts, ts, "GTD", 0.1, 0.2, 0.0)
        case "liquidations":
            return Liquidation(
                "account", "BTCUSDT", ts, ts, "buy", 0.5, 100.0 + i, 0.1, -5.0, 20.0, 25.0
            )
        case "trading_state":
            return TradingStateChanged(
                "account", ts, ts, "ACTIVE", "REDUCING", "drawdown", symbol=""
            )
        case "positions":
            return PositionSnapshot("BTCUSDT", ts, ts, 0.1, 100.0, 5.0, 1.0, 2.0, 0.1, 101.0)
        case "equity":
            return EquityPoint("BTCUSDT", ts, ts, 5.0, 10.0, 15.0)
        case "metrics":
            return Metric("late_trades", ts, ts, float(i), labels="symbol=BTCUSDT")
        case "dead_letters":
            return DeadLetter(ts, "trades.raw", "decode", f"payload {i}", key="k")
        case "runs":
            return RunInfo(f"run{i}", ts, "backtest", "file", 0, 0, "BTCUSDT", "{}")
        case "features":
            return FeatureRow("BTCUSDT", ts, ts, "core", "v1", (float(i), float("nan"), -1.5))
        case "feature_sets":
            return FeatureSetInfo(f"v{i}", "core", ts, ("a", "b"), ("sma_5 as a", "ema_5 as b"))
        case "predictions":
            return Prediction(
                "xgb", "BTCUSDT", ts, ts, "m", "v1", "f", (-1, 0, 1), (0.2, 0.3, 0.5), 0, 0.5
            )
        case "models":
            return ModelInfo("m", f"v{i}", ts, ts, "xgboost", "core", "f", "lab", False, "{}", "{}")
        case "round_trips":
            return RoundTrip(
                f"BTCUSDT-{i}", "BTCUSDT", ts, ts, "long", ts - 10, ts, 0.5, 100.0, 101.0,
                0.5, 0.1, 0.4, 0.008, 10, "stop_loss", "sma", "v1", f"o{i}", f"p{i}",
            )  # fmt: skip
    raise AssertionError(table)


def samples(table: str, n: int, start: int = 0) -> list[msgspec.Struct]:
    return [sample(table, i) for i in range(start, start + n)]


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def raw_count(client, database: str, table: str) -> int:
    return int(client.command(f"SELECT count() FROM `{database}`.`{table}`"))


# ----------------------------------------------------------------------------- DDL


def test_column_type_mapping() -> None:
    assert ch.column_type("ts_event", int) == "DateTime64(9, 'UTC')"
    assert ch.column_type("start", int) == "DateTime64(9, 'UTC')"
    assert ch.column_type("interval_ns", int) == "Int64"
    assert ch.column_type("price", float) == "Float64"
    assert ch.column_type("symbol", str) == "LowCardinality(String)"
    assert ch.column_type("payload", str) == "String"
    assert ch.column_type("flag", bool) == "Bool"
    assert ch.column_type("side", Literal["buy", "sell"]) == "LowCardinality(String)"
    assert ch.column_type("qty", float | None) == "Nullable(Float64)"
    with pytest.raises(TypeError):
        ch.column_type("blob", bytes)


def test_every_message_table_has_run_id_first_and_all_fields() -> None:
    for table in ch.TABLES.values():
        cols = ch.table_columns(table)
        fields = [f.name for f in msgspec.structs.fields(table.message_cls)]
        assert cols[0] == ("run_id", "LowCardinality(String)")
        assert [n for n, _ in cols] == (fields if fields[0] == "run_id" else ["run_id", *fields])
        assert ch.TABLE_BY_CLASS[table.message_cls] is table


def test_ddl_accepted_and_types_match(ch_dsn: str, ch_db: str) -> None:
    client = ch.connect(ch_dsn, ch_db)
    ch.ensure_tables(client, ch_db)
    ch.ensure_tables(client, ch_db)  # idempotent
    for table in ch.TABLES.values():
        got = client.query(
            "SELECT name, type FROM system.columns WHERE database = {d:String} "
            "AND table = {t:String} ORDER BY position",
            parameters={"d": ch_db, "t": table.name},
        ).result_rows
        assert [tuple(r) for r in got] == ch.table_columns(table), table.name
        engine, key = client.query(
            "SELECT engine, sorting_key FROM system.tables WHERE database = {d:String} "
            "AND name = {t:String}",
            parameters={"d": ch_db, "t": table.name},
        ).result_rows[0]
        assert engine == "ReplacingMergeTree"
        assert key == ", ".join(table.order_by)


# ----------------------------------------------------------------------------- rows


def test_rows_and_columns_for_prepend_run_id() -> None:
    trades = samples("trades", 3)
    names, rows = ch.rows_for("trades", trades, "r1")
    assert names[0] == "run_id" and len(rows) == 3
    assert rows[1] == ("r1", *msgspec.structs.astuple(trades[1]))
    names2, cols = ch.columns_for("trades", trades, "r1")
    assert names2 == names
    assert [list(r) for r in zip(*cols, strict=True)] == [list(r) for r in rows]
    # RunInfo carries its own run_id: used as is, never duplicated
    names, rows = ch.rows_for("runs", [sample("runs", 7)], "ignored")
    assert names.count("run_id") == 1 and rows[0][0] == "run7"


def test_values_round_trip(ch_dsn: str, ch_db: str) -> None:
    client = ch.connect(ch_dsn, ch_db)
    ch.ensure_tables(client, ch_db)
    w = ch.BatchWriter(client, ch_db, "rt")
    bars = samples("bars", 3)
    w.add("bars", bars)
    w.add("runs", sample("runs", 1))
    w.flush()
    got = client.query(
        f"SELECT symbol, toUnixTimestamp64Nano(ts_event), toUnixTimestamp64Nano(ts_init), close, "
        f"n_trades FROM `{ch_db}`.bars FINAL WHERE run_id = 'rt' ORDER BY ts_event"
    ).result_rows
    assert [tuple(r) for r in got] == [
        (b.symbol, b.ts_event, b.ts_init, b.close, b.n_trades) for b in bars
    ]
    df = ch.query_df(client, f"SELECT run_id, mode FROM `{ch_db}`.runs FINAL")
    assert isinstance(df, pl.DataFrame)
    assert df.schema["run_id"] == pl.String
    assert df.rows() == [("run1", "backtest")]


# ----------------------------------------------------------------------------- idempotence


def test_replayed_epoch_leaves_final_count_unchanged(ch_dsn: str, ch_db: str) -> None:
    client = ch.connect(ch_dsn, ch_db)
    ch.ensure_tables(client, ch_db)
    for name in ch.TABLES:
        batch = samples(name, 5)
        for _ in range(2):  # the same epoch delivered twice
            w = ch.BatchWriter(client, ch_db, "replay")
            w.add(name, batch)
            w.flush()
            assert w.written == {name: 5}
        run_id = "run0" if name == "runs" else "replay"
        expected = 1 if name == "runs" else 5
        assert ch.count_final(client, ch_db, name, run_id) == expected, name
        assert raw_count(client, ch_db, name) >= 5  # both copies were written (or merged)


def test_runs_are_isolated_by_run_id(ch_dsn: str, ch_db: str) -> None:
    client = ch.connect(ch_dsn, ch_db)
    ch.ensure_tables(client, ch_db, ["fills"])
    for run_id in ("a", "b"):
        w = ch.BatchWriter(client, ch_db, run_id)
        w.add("fills", samples("fills", 4))
        w.flush()
    assert ch.count_final(client, ch_db, "fills", "a") == 4
    assert ch.count_final(client, ch_db, "fills", "b") == 4


# ----------------------------------------------------------------------------- batching


def test_batch_writer_thresholds(ch_dsn: str, ch_db: str) -> None:
    client = ch.connect(ch_dsn, ch_db)
    ch.ensure_tables(client, ch_db, ["trades", "bars"])
    clock = FakeClock()
    w = ch.BatchWriter(client, ch_db, "b", batch_rows=1000, batch_seconds=1.0, clock=clock)
    trades = samples("trades", 2500)

    w.add("trades", trades[:600])
    clock.t += 0.5
    w.add("trades", trades[600:999])  # 999 rows, 0.5 s old: nothing yet
    assert w.inserts == 0 and raw_count(client, ch_db, "trades") == 0
    assert w.pending() == {"trades": 999}

    w.add("trades", trades[999])  # a single struct; the 1000th row triggers the insert
    assert w.inserts == 1 and w.written == {"trades": 1000}
    assert raw_count(client, ch_db, "trades") == 1000 and w.pending() == {}

    w.add("trades", trades[1000:1100])
    clock.t += 0.75  # binary fractions: exact float sums
    w.add("bars", samples("bars", 3))  # any add checks every table's age
    assert w.inserts == 1
    clock.t += 0.25  # the oldest trade is now 1.0 s old
    w.add("bars", [])
    assert w.inserts == 2 and w.written["trades"] == 1100
    assert w.pending() == {"bars": 3}  # bars are only 0.25 s old

    w.add("trades", trades[1100:])
    assert w.written["trades"] == 2500  # 1400 >= 1000: flushed as one insert
    w.add("bars", samples("bars", 2, start=3))
    assert w.flush() == 5
    assert w.written == {"trades": 2500, "bars": 5} and w.pending() == {}
    assert w.inserts == 4
    assert ch.count_final(client, ch_db, "trades", "b") == 2500
    assert ch.count_final(client, ch_db, "bars", "b") == 5
    assert w.flush() == 0 and w.inserts == 4  # nothing buffered: no empty insert


@pytest.fixture
def _no_faults() -> Iterator[None]:
    """Faults are recorded process-wide (first one wins): forget the ones a test provoked."""
    faults.clear()
    yield
    faults.clear()


def test_failed_insert_raises_and_keeps_rows(ch_dsn: str, ch_db: str, _no_faults: None) -> None:
    client = ch.connect(ch_dsn, ch_db)
    ch.ensure_tables(client, ch_db, ["orders"])
    w = ch.BatchWriter(client, ch_db, "f", batch_rows=10_000, retries=0)
    w.add("orders", samples("orders", 7))
    client.command(f"DROP TABLE `{ch_db}`.orders")
    with pytest.raises(Fault) as info:
        w.flush()
    fault = info.value
    assert fault.component == "clickhouse"
    assert f"insert of 7 rows into {ch_db}.orders failed" in str(fault)
    assert "UNKNOWN_TABLE" in str(fault) and "\n" not in str(fault)
    err = fault.__cause__
    assert isinstance(err, ch.ClickHouseWriteError)
    assert err.table == f"{ch_db}.orders" and err.rows == 7
    assert "orders" in str(err) and "7 rows" in str(err)
    assert faults.first() is not None and str(faults.first()) == str(fault)
    assert w.pending() == {"orders": 7} and w.written == {}
    ch.ensure_tables(client, ch_db, ["orders"])  # after repair, a retry delivers them
    assert w.flush() == 7
    assert ch.count_final(client, ch_db, "orders", "f") == 7


def test_insert_is_retried_with_backoff(ch_dsn: str, ch_db: str, _no_faults: None) -> None:
    """A component back within the retries loses nothing: the buffered rows are re-sent."""
    client = ch.connect(ch_dsn, ch_db)
    ch.ensure_tables(client, ch_db, ["orders"])
    slept: list[float] = []

    def sleep(s: float) -> None:  # the table comes back during the second back-off
        slept.append(s)
        if len(slept) == 2:
            ch.ensure_tables(client, ch_db, ["orders"])

    w = ch.BatchWriter(
        client, ch_db, "r", batch_rows=10_000, retries=4, retry_backoff_s=0.25, sleep=sleep
    )
    w.add("orders", samples("orders", 5))
    client.command(f"DROP TABLE `{ch_db}`.orders")
    assert w.flush() == 5
    assert slept == [0.25, 0.5]
    assert faults.first() is None
    assert ch.count_final(client, ch_db, "orders", "r") == 5


def test_insert_fault_after_the_last_retry(ch_dsn: str, ch_db: str, _no_faults: None) -> None:
    client = ch.connect(ch_dsn, ch_db)
    ch.ensure_tables(client, ch_db, ["orders"])
    slept: list[float] = []
    w = ch.BatchWriter(
        client, ch_db, "r", batch_rows=10_000, retries=2, retry_backoff_s=0.1, sleep=slept.append
    )
    w.add("orders", samples("orders", 3))
    client.command(f"DROP TABLE `{ch_db}`.orders")
    with pytest.raises(Fault, match=r"insert of 3 rows into \S+\.orders \(3 attempts\) failed"):
        w.flush()
    assert slept == [0.1, 0.2] and w.pending() == {"orders": 3}


def test_retry_policy() -> None:
    assert ch.Retry(4, 0.5).delays() == [0.5, 1.0, 2.0, 4.0]
    assert ch.Retry(6, 1.0).delays() == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # capped at 8 s
    assert ch.Retry(0, 1.0).delays() == []


def test_dsn_credentials_stay_out_of_messages() -> None:
    assert (
        clickhouse_client._safe_dsn("http://bob:s3cret@db.example:8123/x?secure=1")
        == "http://db.example:8123/x"
    )
    assert clickhouse_client._safe_dsn("chdb:///var/clickhouse") == "chdb:///var/clickhouse"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_a_fault_after_retries(_no_faults: None) -> None:
    dsn = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(Fault) as info:
        ch.connect(dsn, "x", retries=2, backoff_s=0.05)
    took = time.monotonic() - t0
    msg = str(info.value)
    assert msg.startswith(f"clickhouse: cannot connect to {dsn}: connection refused; check ")
    assert "CLICKHOUSE_DSN" in msg
    assert 0.15 <= took < 10  # slept 0.05 + 0.1, then gave up


_HOLD = """
import sys, time
from infra import clickhouse as ch
ch.connect(sys.argv[1], "x")
print("open", flush=True)
time.sleep(60)
"""

_TRY = """
import sys
from infra import clickhouse as ch, faults
try:
    ch.connect(sys.argv[1], "x", retries=1, backoff_s=0.05)
except faults.Fault as f:
    print(f)
"""


def test_chdb_directory_in_use_is_a_fault(tmp_path: Path) -> None:
    """chDB opens a directory in one process only; a second process gets a one-line cause."""
    dsn = f"chdb://{tmp_path / 'ch'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, dsn], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        out = subprocess.run(
            [sys.executable, "-c", _TRY, dsn],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert f"its directory is in use by PID {holder.pid}" in out, out
    assert "CLICKHOUSE_DSN" in out


def test_wrong_struct_type_and_unknown_table_rejected(ch_dsn: str, ch_db: str) -> None:
    client = ch.connect(ch_dsn, ch_db)
    w = ch.BatchWriter(client, ch_db, "x")
    with pytest.raises(ch.ClickHouseError, match="takes Trade, got Bar"):
        w.add("trades", [sample("trades", 0), sample("bars", 0)])
    assert w.pending() == {}
    with pytest.raises(ch.ClickHouseError, match="unknown table"):
        w.add("nope", [])


CONST = {"symbol": "BTCUSDT", "feature_set": "core", "version": "v1"}


def _feature_block(rows: list[FeatureRow]) -> RowBlock:
    return RowBlock(
        FeatureRow,
        {
            "ts_event": [r.ts_event for r in rows],
            "ts_init": [r.ts_init for r in rows],
            "values": [r.values for r in rows],
        },
        {**CONST, "symbol": rows[0].symbol},
    )


def _feature_rows(symbol: str, n: int, start: int = 0) -> list[FeatureRow]:
    return [
        FeatureRow(symbol, 60 * i, 60 * i + 7, "core", "v1", (math.nan if i % 3 else 0.5, -1.0 * i))
        for i in range(start, start + n)
    ]


def test_blocks_become_the_same_arrow_rows_as_their_structs() -> None:
    btc, eth = _feature_rows("BTCUSDT", 5), _feature_rows("ETHUSDT", 4, start=9)
    loose = _feature_rows("SOLUSDT", 2)
    want = ch.arrow_for("features", [*loose, *btc, *eth], "r")
    for structs, blocks in [
        (loose, [_feature_block(btc), _feature_block(eth)]),  # constants differ between blocks
        ([], [_feature_block(loose), _feature_block(btc), _feature_block(eth)]),
    ]:
        got = ch.arrow_for("features", structs, "r", blocks)
        assert got.num_rows == 11 and got.column("run_id").to_pylist() == ["r"] * 11
        assert got.column_names == want.column_names
        for name in want.column_names:  # NaN != NaN: compare the bits as strings
            assert str(got.column(name).to_pylist()) == str(want.column(name).to_pylist()), name
    one = ch.arrow_for("features", [], "r", [_feature_block(btc), _feature_block(btc)])
    assert one.column("symbol").to_pylist() == ["BTCUSDT"] * 10


def test_float_rows_become_the_arrow_array_pyarrow_builds() -> None:
    """The numpy path for equal-width float rows gives pyarrow's own array, bit for bit (NaN
    stays a NaN value, not a null); ragged rows, None and ints take pyarrow's path."""
    typ = pa.list_(pa.float64())
    nan = float("nan")
    for rows in (
        [(1.5, nan, -0.0), (2.0, 3.0, 1e300)],
        [(1.0,), (2.0, 3.0)],
        [(None, 1.0), (2.0, 3.0)],
        [(), ()],
        [(1, 2.5)],
    ):
        got, want = ch._list_array(list(rows), typ), pa.array(list(rows), typ)
        assert got.type == want.type and got.offsets.equals(want.offsets)
        assert got.values.null_count == want.values.null_count
        assert got.values.to_numpy(zero_copy_only=False).tobytes() == (
            want.values.to_numpy(zero_copy_only=False).tobytes()
        )


def _predictions(n: int, version: str, start: int = 0) -> list[Prediction]:
    return [
        Prediction(
            "xgb", "ETHUSDT", (start + i) * 60 * 10**9, (start + i) * 60 * 10**9 + 7, "m",
            version, "f00d", (-1, 0, 1), (0.25, 0.5 + i / 1e3, 0.25 - i / 1e3),
            (i % 3) - 1, 0.5 + i / 1e3,
        )
        for i in range(n)
    ]  # fmt: skip


def _prediction_block(rows: list[Prediction]) -> RowBlock:
    varying = ("ts_event", "ts_init", "proba", "direction", "confidence")
    return RowBlock(
        Prediction,
        {k: [getattr(r, k) for r in rows] for k in varying},
        {k: getattr(rows[0], k) for k in Prediction.__struct_fields__ if k not in varying},
    )


def test_prediction_blocks_store_like_their_structs(ch_dsn: str, ch_db: str) -> None:
    """A model producer's predictions leave as blocks whose constants include an array (the
    classes): Arrow and the stored rows equal those of the structs."""
    a, b = _predictions(4, "v1"), _predictions(3, "v2", start=4)
    want = ch.arrow_for("predictions", [*a, *b], "r")
    got = ch.arrow_for("predictions", [], "r", [_prediction_block(a), _prediction_block(b)])
    assert got.to_pylist() == want.to_pylist()  # the versions (constants) differ by block
    one = ch.arrow_for("predictions", [], "r", [_prediction_block(a)])  # classes: a constant
    assert one.to_pylist() == ch.arrow_for("predictions", a, "r").to_pylist()
    client = ch.connect(ch_dsn, ch_db)
    ch.ensure_tables(client, ch_db, ["predictions"])
    w = ch.BatchWriter(client, ch_db, "pb", batch_rows=100, batch_seconds=60.0)
    w.add("predictions", [_prediction_block(a), b[0], _prediction_block(b[1:])])
    assert w.flush() == 7
    got = client.query(
        "SELECT model_version, classes, proba, direction, confidence FROM "
        f"`{ch_db}`.predictions FINAL WHERE run_id = 'pb' ORDER BY ts_event"
    ).result_rows
    assert [(v, tuple(c), tuple(p), d, q) for v, c, p, d, q in got] == [
        (r.model_version, r.classes, r.proba, r.direction, r.confidence) for r in a + b
    ]


def test_batch_writer_stores_blocks_like_structs(ch_dsn: str, ch_db: str) -> None:
    client = ch.connect(ch_dsn, ch_db)
    ch.ensure_tables(client, ch_db, ["features"])
    clock = FakeClock()
    w = ch.BatchWriter(client, ch_db, "blk", batch_rows=10, batch_seconds=60.0, clock=clock)
    rows = _feature_rows("BTCUSDT", 12)
    w.add("features", [rows[0], _feature_block(rows[1:6])])  # a struct and a block at once
    assert w.pending() == {"features": 6} and w.inserts == 0
    w.add("features", _feature_block(rows[6:12]))  # 12 rows >= 10: one insert
    assert w.inserts == 1 and w.written == {"features": 12} and w.pending() == {}
    empty = RowBlock(FeatureRow, {"ts_event": [], "ts_init": [], "values": []}, dict(CONST))
    w.add("features", empty)  # an empty block buffers nothing
    assert w.pending() == {} and w.flush() == 0
    got = client.query(
        f"SELECT symbol, toUnixTimestamp64Nano(ts_event), toUnixTimestamp64Nano(ts_init), "
        f"feature_set, version, values FROM `{ch_db}`.features FINAL WHERE run_id = 'blk' "
        "ORDER BY ts_event"
    ).result_rows
    assert str([(*r[:5], tuple(r[5])) for r in got]) == str(
        [(r.symbol, r.ts_event, r.ts_init, r.feature_set, r.version, r.values) for r in rows]
    )
    with pytest.raises(ch.ClickHouseError, match="takes Bar, got FeatureRow"):
        w.add("bars", _feature_block(rows))


def test_second_chdb_path_is_refused(ch_dsn: str, tmp_path) -> None:
    if not ch_dsn.startswith("chdb:"):
        pytest.skip("server DSN")
    ch.connect(ch_dsn, "default")
    with pytest.raises(ch.ClickHouseError, match="ClickHouse server"):
        ch.connect(f"chdb://{tmp_path.as_posix()}/other")


@pytest.mark.slow
def test_throughput(ch_dsn: str, ch_db: str) -> None:
    """Loose floors (CI noise); the measured numbers are printed with -s."""
    bars = [
        Bar("BTCUSDT", T0 + i * NS_PER_MINUTE, T0, 1.0, 2.0, 0.5, 1.5, 3.0) for i in range(200_000)
    ]
    t = time.perf_counter()
    ch.columns_for("bars", bars, "t")
    conv = len(bars) / (time.perf_counter() - t)
    client = ch.connect(ch_dsn, ch_db)
    ch.ensure_tables(client, ch_db, ["bars"])
    w = ch.BatchWriter(client, ch_db, "t", batch_rows=50_000, batch_seconds=3600)
    t = time.perf_counter()
    w.add("bars", bars)
    w.flush()
    ins = len(bars) / (time.perf_counter() - t)
    print(f"conversion {conv:,.0f} rows/s, batched insert {ins:,.0f} rows/s")
    assert conv > 500_000
    assert ins > 50_000
    assert ch.count_final(client, ch_db, "bars", "t") == len(bars)
