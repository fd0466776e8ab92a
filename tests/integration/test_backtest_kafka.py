"""End to end on real parts: real Binance data -> real Kafka broker -> replay through the flow
-> rows in (embedded) ClickHouse -> report files. No mocks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl
import pytest
from confluent_kafka import Consumer, TopicPartition

from dataflows.backtest import BacktestSpec, parse_time, run_backtest
from dataflows.ingest import ingest_file
from infra.clickhouse import connect, count_final, query_df
from infra.kafka.client import CheckedProducer
from schemas.codec import encode
from schemas.config import Config
from schemas.messages import NS_PER_MINUTE, Bar
from tests.dataflows.flowkit import sma_config
from tests.operators.opdata import real_bars
from tests.paths import BARS_2024_01, KLINES, TRADES
from tests.reference.shared_account_loop import shared_account_backtest

pytestmark = pytest.mark.kafka
JAN = (parse_time("2024-01-01"), parse_time("2024-02-01"))


def _cfg(kafka_bootstrap: str, ch_dsn: str, ch_db: str) -> Config:
    return sma_config(
        kafka={"bootstrap": kafka_bootstrap, "batch_size": 5000},
        clickhouse={"dsn": ch_dsn, "database": ch_db},
    )


def _read_topic(bootstrap: str, topic: str) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False})
    md = c.list_topics(topic, timeout=10).topics[topic]
    parts = [TopicPartition(topic, p, 0) for p in md.partitions]
    c.assign(parts)
    highs = {p.partition: c.get_watermark_offsets(p, timeout=10)[1] for p in parts}
    out, done = [], {p for p, h in highs.items() if h == 0}
    while len(done) < len(highs):
        for m in c.consume(1000, timeout=2.0):
            if m.error():
                continue
            out.append(m)
            if m.offset() + 1 >= highs[m.partition()]:
                done.add(m.partition())
    c.close()
    return out


@pytest.fixture
def bars_topic(kafka_topic, kafka_bootstrap: str) -> str:
    topic = kafka_topic(partitions=4, suffix="md.bars.v1")
    n = ingest_file(BARS_2024_01, kafka_bootstrap, "bars", topic=topic, progress=False)
    assert n == 89_280
    return topic


def test_replay_from_kafka_stores_everything_and_reruns_identically(
    bars_topic: str, kafka_bootstrap: str, ch_dsn: str, ch_db: str, tmp_path: Path
) -> None:
    cfg = _cfg(kafka_bootstrap, ch_dsn, ch_db)
    spec = BacktestSpec(f"kafka:{bars_topic}", ("BTCUSDT", "ETHUSDT"), *JAN, workers=2)
    run_id, summary = run_backtest(cfg, spec, tmp_path / "a", progress=False)
    client = connect(ch_dsn, ch_db)
    assert count_final(client, ch_db, "bars", run_id) == 89_280
    assert count_final(client, ch_db, "equity", run_id) == 44_640  # one account point per minute
    n_fills = count_final(client, ch_db, "fills", run_id)
    assert n_fills == summary.n_trades > 100
    assert count_final(client, ch_db, "orders", run_id) >= n_fills
    assert count_final(client, ch_db, "runs", run_id) == 1
    assert count_final(client, ch_db, "dead_letters", run_id) == 0

    # The one account equals the independent two-symbol event loop exactly (docs/adr/0009).
    ref = shared_account_backtest(
        real_bars("BTCUSDT") + real_bars("ETHUSDT"), interval_ns=NS_PER_MINUTE, fee=10.0 * 1e-4
    )
    with (tmp_path / "a" / "fills.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    got = [
        (
            int(r["ts_event"]),
            r["symbol"],
            r["side"],
            float(r["price"]),
            float(r["qty"]),
            float(r["fee"]),
        )
        for r in rows
    ]
    assert sorted(got, key=lambda f: (f[0], f[1])) == [tuple(f) for f in ref["fills"]]
    with (tmp_path / "a" / "equity.csv").open() as fh:
        curve = [(int(r["ts_event"]), float(r["equity"])) for r in csv.DictReader(fh)]
    assert curve == ref["equity"]
    assert summary.final_equity == ref["final_equity"]

    # Orders and fills went to Kafka too, tagged with the run id, every one delivered.
    fills_msgs = [
        m
        for m in _read_topic(kafka_bootstrap, "fills.v1")
        if dict(m.headers() or []).get("run_id") == run_id.encode()
    ]
    assert {json.loads(m.value())["fill_id"] for m in fills_msgs} == {
        r["fill_id"]
        for r in query_df(
            client, f"SELECT fill_id FROM {ch_db}.fills FINAL WHERE run_id = %(r)s", {"r": run_id}
        ).iter_rows(named=True)
    }

    # Rerun: same run id, byte-identical outputs, and no double counting in ClickHouse.
    run_id2, _ = run_backtest(cfg, spec, tmp_path / "b", progress=False)
    assert run_id2 == run_id
    for name in ("fills.csv", "equity.csv", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert count_final(client, ch_db, "bars", run_id) == 89_280
    assert count_final(client, ch_db, "fills", run_id) == n_fills

    # Replaying the file directly gives the same fills and equity curve.
    fspec = BacktestSpec(f"file:{BARS_2024_01}", ("BTCUSDT", "ETHUSDT"), *JAN)
    run_backtest(cfg, fspec, tmp_path / "f", progress=False)
    for name in ("fills.csv", "equity.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "f" / name).read_bytes()


def test_time_range_is_honoured(
    bars_topic: str, kafka_bootstrap: str, ch_dsn: str, ch_db: str
) -> None:
    cfg = _cfg(kafka_bootstrap, ch_dsn, ch_db)
    spec = BacktestSpec(
        f"kafka:{bars_topic}", ("ETHUSDT",), parse_time("2024-01-10"), parse_time("2024-01-12")
    )
    run_id, summary = run_backtest(cfg, spec, None, progress=False)
    client = connect(ch_dsn, ch_db)
    span = query_df(
        client,
        f"SELECT count() AS n, min(symbol) AS s, toUnixTimestamp64Nano(min(ts_event)) AS lo, "
        f"toUnixTimestamp64Nano(max(ts_event)) AS hi FROM {ch_db}.bars FINAL WHERE run_id=%(r)s",
        {"r": run_id},
    ).row(0)
    assert span == (
        2 * 1440,
        "ETHUSDT",
        parse_time("2024-01-10"),
        parse_time("2024-01-12") - 60 * 10**9,
    )
    assert summary.n_bars == 2 * 1440


def test_bad_messages_reach_the_dead_letter_topic_and_table(
    kafka_topic, kafka_bootstrap: str, ch_dsn: str, ch_db: str
) -> None:
    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    good = list(real_bars("BTCUSDT")[:300])
    b0 = good[100]
    bad = {
        b"{not json": "malformed",
        encode(Bar("BTCUSDT", b0.ts_event, b0.ts_init, -5.0, 1.0, -6.0, 1.0, 1.0)): "bad open",
        encode(Bar("XRPUSDT", b0.ts_event, b0.ts_init, 1.0, 1.0, 1.0, 1.0, 1.0)): "unknown symbol",
        encode(Bar("BTCUSDT", b0.ts_event, b0.ts_init, 2.0, 1.0, 1.5, 1.5, 1.0)): "inconsistent",
        encode(good[150]): "duplicate bar",  # sent right after the original
        encode(good[10]): "out-of-order bar",
    }
    with CheckedProducer(kafka_bootstrap) as p:
        for i, b in enumerate(good):
            p.produce(topic, encode(b), "BTCUSDT", b.ts_event // 10**6)
            if i == 150:
                for payload in bad:
                    p.produce(topic, payload, "BTCUSDT", b.ts_event // 10**6)
    cfg = _cfg(kafka_bootstrap, ch_dsn, ch_db)
    run_id, _ = run_backtest(
        cfg, BacktestSpec(f"kafka:{topic}", ("BTCUSDT",)), None, progress=False
    )
    client = connect(ch_dsn, ch_db)
    dead = query_df(
        client,
        f"SELECT reason, payload FROM {ch_db}.dead_letters FINAL WHERE run_id=%(r)s",
        {"r": run_id},
    )
    assert dead.height == len(bad)
    for needle in bad.values():
        assert any(needle in r for r in dead["reason"].to_list()), (
            needle,
            dead["reason"].to_list(),
        )
    assert count_final(client, ch_db, "bars", run_id) == len(good)  # the flow kept going
    dlq = [
        json.loads(m.value())
        for m in _read_topic(kafka_bootstrap, "dlq.v1")
        if dict(m.headers() or []).get("run_id") == run_id.encode()
    ]
    assert sorted(d["reason"] for d in dlq) == sorted(dead["reason"].to_list())


def test_bars_built_from_kafka_trades_equal_klines(
    kafka_topic, kafka_bootstrap: str, ch_dsn: str, ch_db: str
) -> None:
    topic = kafka_topic(partitions=3, suffix="md.trades.v1")
    n = ingest_file(TRADES, kafka_bootstrap, "trades", topic=topic, progress=False)
    assert n == 37_563
    cfg = _cfg(kafka_bootstrap, ch_dsn, ch_db)
    run_id, _ = run_backtest(
        cfg, BacktestSpec(f"kafka:{topic}", ("BTCUSDT", "ETHUSDT"), workers=2), None, progress=False
    )
    client = connect(ch_dsn, ch_db)
    bars = query_df(
        client,
        f"SELECT symbol, toUnixTimestamp64Nano(ts_event) AS t, open, high, low, close, volume, "
        f"n_trades FROM {ch_db}.bars FINAL WHERE run_id=%(r)s ORDER BY symbol, t",
        {"r": run_id},
    )
    k = pl.read_parquet(KLINES).with_columns(pl.col("open_time").dt.epoch("ns").alias("t"))
    # Complete minutes only: drop the first and last minute of each capture window.
    gap = 60 * 10**9
    bars = bars.sort("symbol", "t").with_columns(
        edge=(pl.col("t").diff().over("symbol").fill_null(2 * gap) > gap)
        | (pl.col("t").diff(-1).over("symbol").fill_null(-2 * gap) < -gap)
    )
    inner = bars.filter(~pl.col("edge")).join(k, on=["symbol", "t"], suffix="_k")
    assert inner.height >= 20
    assert inner.height == bars.filter(~pl.col("edge")).height  # every one has a kline
    for col in ("open", "high", "low", "close", "volume"):
        assert (inner[col] == inner[f"{col}_k"]).all(), col
