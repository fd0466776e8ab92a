"""One bad message cannot poison the stream, end to end on the real broker: real bars or trades
around one hostile message -> Kafka -> replay -> ClickHouse. Every real message is processed, the
hostile one is a dead letter with its reason; identical bad payloads stay separate rows, and the
table and the run's dlq.v1 records agree, also after a rerun."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition

from dataflows.backtest import BacktestSpec, run_backtest
from infra.clickhouse import connect, count_final, query_df
from infra.kafka.client import CheckedProducer
from operators.bars import BarBuilder
from schemas.codec import encode
from schemas.config import Config
from schemas.messages import NS_PER_MINUTE, NS_PER_SECOND, Bar, Trade
from tests.dataflows.flowkit import sma_config
from tests.operators.opdata import real_bars, real_trades

pytestmark = pytest.mark.kafka
DAY = 1440
Y2100 = 4_102_444_800 * NS_PER_SECOND


def _cfg(kafka_bootstrap: str, ch_dsn: str, ch_db: str) -> Config:
    return sma_config(
        kafka={"bootstrap": kafka_bootstrap, "batch_size": 500},
        clickhouse={"dsn": ch_dsn, "database": ch_db},
    )


def _dlq_records(bootstrap: str, run_id: str) -> list[dict[str, object]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False})
    md = c.list_topics("dlq.v1", timeout=10).topics["dlq.v1"]
    parts = [TopicPartition("dlq.v1", p, 0) for p in md.partitions]
    c.assign(parts)
    highs = {p.partition: c.get_watermark_offsets(p, timeout=10)[1] for p in parts}
    out, done = [], {p for p, h in highs.items() if h == 0}
    while len(done) < len(highs):
        for m in c.consume(1000, timeout=2.0):
            if m.error():
                continue
            if dict(m.headers() or []).get("run_id") == run_id.encode():
                out.append(json.loads(m.value()))
            if m.offset() + 1 >= highs[m.partition()]:
                done.add(m.partition())
    c.close()
    return out


def _dead(client, ch_db: str, run_id: str):  # type: ignore[no-untyped-def]
    return query_df(
        client,
        f"SELECT reason, payload, origin FROM {ch_db}.dead_letters FINAL WHERE run_id=%(r)s",
        {"r": run_id},
    )


def _with(b: Bar, **over: object) -> Bar:
    d = {f: getattr(b, f) for f in b.__struct_fields__}
    d.update(over)
    return Bar(**d)  # type: ignore[arg-type]


def _far_future(b: Bar) -> list[bytes]:
    return [encode(_with(b, ts_event=Y2100, ts_init=Y2100 + NS_PER_MINUTE))]


def _off_grid_ahead(b: Bar) -> list[bytes]:
    return [encode(_with(b, ts_event=b.ts_event + NS_PER_MINUTE + NS_PER_SECOND))]


def _huge_off_grid(b: Bar) -> list[bytes]:
    return [
        encode(
            _with(
                b,
                ts_event=b.ts_event + k * 7 * NS_PER_SECOND,
                open=1e300,
                high=1e300,
                low=1e300,
                close=1e300,
            )
        )
        for k in range(1, 4)
    ]


def _ts_2_63(b: Bar) -> list[bytes]:
    d = json.loads(encode(b))
    d["ts_event"] = 2**63
    return [json.dumps(d).encode()]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_far_future, "implausible time"),
        (_off_grid_ahead, "off the bar grid"),
        (_huge_off_grid, "outside [1e-12, 1e+09]"),
        (_ts_2_63, "bad ts_event 9223372036854775808"),
    ],
    ids=["2100-01-01", "off-grid-ahead", "1e300-off-grid", "ts-2^63"],
)
def test_one_hostile_bar_in_a_real_day(
    make: Callable[[Bar], list[bytes]],
    reason: str,
    kafka_topic,
    kafka_bootstrap: str,
    ch_dsn: str,
    ch_db: str,
) -> None:
    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    day = list(real_bars("BTCUSDT")[:DAY])
    hostile = make(day[700])
    with CheckedProducer(kafka_bootstrap) as p:
        for i, b in enumerate(day):
            p.produce(topic, encode(b), "BTCUSDT", b.ts_event // 10**6)
            if i == 700:  # the Kafka timestamp is plausible; the payload is not
                for payload in hostile:
                    p.produce(topic, payload, "BTCUSDT", b.ts_event // 10**6)
    cfg = _cfg(kafka_bootstrap, ch_dsn, ch_db)
    run_id, summary = run_backtest(
        cfg, BacktestSpec(f"kafka:{topic}", ("BTCUSDT",)), None, progress=False
    )
    client = connect(ch_dsn, ch_db)
    assert count_final(client, ch_db, "bars", run_id) == DAY  # 1,440 of 1,440
    assert count_final(client, ch_db, "equity", run_id) == DAY
    assert summary.n_bars == DAY
    dead = _dead(client, ch_db, run_id)
    assert dead.height == len(hostile)
    assert all(reason in r for r in dead["reason"].to_list()), dead["reason"].to_list()
    assert sorted(dead["payload"].to_list()) == sorted(h.decode() for h in hostile)
    assert len(_dlq_records(kafka_bootstrap, run_id)) == len(hostile)


def test_hostile_trades_among_real_trades(
    kafka_topic, kafka_bootstrap: str, ch_dsn: str, ch_db: str
) -> None:
    """A trade at ts_event ~9e18 (used to build a bar in 2255 and make every real trade late) and
    a trade at 1e300 (used to become a bar's high) and one at 1000x the price."""
    topic = kafka_topic(partitions=3, suffix="md.trades.v1")
    trades = list(real_trades("BTCUSDT"))
    t = trades[5000]
    hostile = {
        "implausible time": Trade("BTCUSDT", 9 * 10**18, 9 * 10**18, 10**12, t.price, 0.1, "buy"),
        "outside [1e-12, 1e+09]": Trade(
            "BTCUSDT", t.ts_event, t.ts_init, 10**12 + 1, 1e300, 0.1, "buy"
        ),
        "implausible price": Trade(
            "BTCUSDT", t.ts_event, t.ts_init, 10**12 + 2, t.price * 1e3, 0.1, "sell"
        ),
    }
    with CheckedProducer(kafka_bootstrap) as p:
        for i, tr in enumerate(trades):
            p.produce(topic, encode(tr), "BTCUSDT", tr.ts_event // 10**6)
            if i == 5000:
                for h in hostile.values():
                    p.produce(topic, encode(h), "BTCUSDT", tr.ts_event // 10**6)
    bb = BarBuilder("BTCUSDT", NS_PER_MINUTE, 2 * NS_PER_SECOND)
    expected = bb.update(trades)[0] + bb.flush()
    cfg = _cfg(kafka_bootstrap, ch_dsn, ch_db)
    run_id, _ = run_backtest(
        cfg, BacktestSpec(f"kafka:{topic}", ("BTCUSDT",)), None, progress=False
    )
    client = connect(ch_dsn, ch_db)
    stored = query_df(
        client,
        f"SELECT count() AS n, sum(n_trades) AS trades, max(high) AS hi, "
        f"toUnixTimestamp64Nano(max(ts_event)) AS last FROM {ch_db}.bars FINAL "
        "WHERE run_id=%(r)s",
        {"r": run_id},
    ).row(0)
    assert stored == (
        len(expected),
        len(trades),  # every real trade is in a bar: none late
        max(b.high for b in expected),
        max(b.ts_event for b in expected),
    )
    dead = _dead(client, ch_db, run_id)
    for needle in hostile:
        assert sum(needle in r for r in dead["reason"].to_list()) == 1, dead["reason"].to_list()
    assert dead.height == len(hostile)


def test_identical_bad_payloads_each_kept_and_rerun_idempotent(
    kafka_topic, kafka_bootstrap: str, ch_dsn: str, ch_db: str
) -> None:
    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    good = list(real_bars("ETHUSDT")[:300])
    with CheckedProducer(kafka_bootstrap) as p:
        for i, b in enumerate(good):
            p.produce(topic, encode(b), "ETHUSDT", b.ts_event // 10**6)
            if i == 100:
                for _ in range(60):
                    p.produce(topic, b"{not json", "ETHUSDT", b.ts_event // 10**6)
    cfg = _cfg(kafka_bootstrap, ch_dsn, ch_db)
    spec = BacktestSpec(f"kafka:{topic}", ("ETHUSDT",))
    run_id, _ = run_backtest(cfg, spec, None, progress=False)
    client = connect(ch_dsn, ch_db)
    assert count_final(client, ch_db, "dead_letters", run_id) == 60
    dead = _dead(client, ch_db, run_id)
    assert dead["origin"].n_unique() == 60
    assert all(o.startswith(f"{topic}/") for o in dead["origin"].to_list())
    dlq = _dlq_records(kafka_bootstrap, run_id)
    assert len(dlq) == 60
    assert sorted(str(d["origin"]) for d in dlq) == sorted(dead["origin"].to_list())
    assert count_final(client, ch_db, "bars", run_id) == len(good)

    run_id2, _ = run_backtest(cfg, spec, None, progress=False)  # rerun: replaces, never adds
    assert run_id2 == run_id
    assert count_final(client, ch_db, "dead_letters", run_id) == 60
    assert _dead(client, ch_db, run_id)["origin"].sort().to_list() == sorted(
        dead["origin"].to_list()
    )
