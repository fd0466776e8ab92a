"""A bounded Kafka replay equals the file replay whatever order history was written in: backfills
after newer data, files ingested in mixed order, shuffled bars, duplicated ingests, 1 or 4
partitions. Resumes from snapshots equal uninterrupted reads, and a broker outage is retried
within `outage_s`, then fails with a one-line kafka Fault. Real broker, real bars, no mocks."""

from __future__ import annotations

import pickle
import random
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dataflows.backtest import BacktestSpec, parse_time, run_backtest
from dataflows.ingest import ingest_file
from dataflows.io.files import FileSource, normalized, scan, to_messages
from dataflows.io.kafka import KafkaRangeSource, RawMessage
from infra.clickhouse import connect, count_final, query_df
from infra.faults import Fault
from infra.kafka import broker
from infra.kafka.client import CheckedProducer
from schemas.codec import encode
from schemas.config import Config
from tests.dataflows.flowkit import sma_config
from tests.paths import BARS_2024_01, SHARED

pytestmark = pytest.mark.kafka

ETH_2022 = SHARED / "bars_1m" / "binance_spot_ethusdt_1m_2022.parquet"
BTC_2022 = SHARED / "bars_1m" / "binance_spot_btcusdt_1m_2022.parquet"
DAY_NS = 86_400 * 10**9
NOV1 = parse_time("2022-11-01")
assert NOV1 is not None

needs_shared = pytest.mark.skipif(
    not (ETH_2022.exists() and BTC_2022.exists()), reason="needs the shared 1m bar files"
)


def _cfg(kafka_bootstrap: str, ch_dsn: str, ch_db: str) -> Config:
    return sma_config(
        kafka={"bootstrap": kafka_bootstrap, "batch_size": 5000},
        clickhouse={"dsn": ch_dsn, "database": ch_db},
    )


def _bars(path: Path, symbol: str, day0: int, days: int) -> pl.DataFrame:
    lo = NOV1 + day0 * DAY_NS
    return normalized(scan(path), "bars", [symbol], lo, lo + days * DAY_NS).collect()


def _produce(bootstrap: str, topic: str, df: pl.DataFrame) -> None:
    """As `cryptoflow ingest` does: keyed by symbol, CreateTime = the bar's event time."""
    with CheckedProducer(bootstrap) as p:
        p.produce_many(
            topic, ((b.symbol, encode(b), b.ts_event // 10**6) for b in to_messages(df, "bars"))
        )


def _drain(part: Any, timeout_s: float = 60.0) -> list[RawMessage]:
    got: list[RawMessage] = []
    deadline = time.monotonic() + timeout_s
    with pytest.raises(StopIteration):
        while time.monotonic() < deadline:
            for batch in part.next_batch():
                got.extend(batch)
    part.close()
    return got


def _outputs_equal(a: Path, b: Path) -> None:
    for name in ("fills.csv", "equity.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


# ----------------------------------------------------------------------------- the issue


@needs_shared
def test_backfill_written_after_newer_data_replays_completely(
    kafka_topic: Callable[..., str], kafka_bootstrap: str, ch_dsn: str, ch_db: str, tmp_path: Path
) -> None:
    """Jan 2024 first, then two weeks of Nov 2022: the replay of Nov 2022 used to be empty."""
    topic = kafka_topic(partitions=4, suffix="md.bars.v1")
    assert ingest_file(BARS_2024_01, kafka_bootstrap, "bars", topic=topic, progress=False) == 89_280
    start, end = parse_time("2022-11-01"), parse_time("2022-11-15")
    n = ingest_file(
        ETH_2022, kafka_bootstrap, "bars", topic=topic, symbols=["ETHUSDT"],
        start_ns=start, end_ns=end, progress=False,
    )  # fmt: skip
    assert n == 20_160

    cfg = _cfg(kafka_bootstrap, ch_dsn, ch_db)
    spec = BacktestSpec(f"kafka:{topic}", ("ETHUSDT",), start, end, publish=False)
    run_id, summary = run_backtest(cfg, spec, tmp_path / "k", progress=False)
    client = connect(ch_dsn, ch_db)
    assert summary.n_bars == 20_160
    assert count_final(client, ch_db, "bars", run_id) == 20_160
    assert count_final(client, ch_db, "dead_letters", run_id) == 0
    fspec = BacktestSpec(f"file:{ETH_2022}", ("ETHUSDT",), start, end, publish=False)
    _, fsummary = run_backtest(cfg, fspec, tmp_path / "f", progress=False)
    assert fsummary.n_bars == 20_160 and summary.n_trades == fsummary.n_trades > 0
    _outputs_equal(tmp_path / "k", tmp_path / "f")


# ----------------------------------------------------------------------------- any order


def _fill_mixed(bootstrap: str, topic: str, rng: random.Random) -> int:
    """Nov 1-4 2022, BTC and ETH, from several 'files' in mixed order; one day shuffled, one
    day ingested twice. Returns the number of duplicated bars."""
    btc = {d: _bars(BTC_2022, "BTCUSDT", d, 1) for d in range(4)}
    eth = {d: _bars(ETH_2022, "ETHUSDT", d, 1) for d in range(4)}
    shuffled = btc[2].sample(fraction=1.0, shuffle=True, seed=rng.randrange(1 << 30))
    assert shuffled["ts_event"].to_list() != btc[2]["ts_event"].to_list()
    for df in (
        eth[3],
        pl.concat([btc[0], btc[1]]),  # a two-day file
        eth[1],
        btc[3],
        pl.concat([eth[0], eth[2]]).sort("ts_event"),  # a file with a gap, filled later
        shuffled,
        eth[2],  # the duplicated ingest
    ):
        _produce(bootstrap, topic, df)
    return eth[2].height


@needs_shared
@pytest.mark.parametrize("partitions", [1, 4])
def test_mixed_order_ingests_replay_like_the_file(
    kafka_topic: Callable[..., str],
    kafka_bootstrap: str,
    ch_dsn: str,
    ch_db: str,
    tmp_path: Path,
    partitions: int,
) -> None:
    topic = kafka_topic(partitions=partitions, suffix="md.bars.v1")
    dups = _fill_mixed(kafka_bootstrap, topic, random.Random(partitions))
    start, end = NOV1, NOV1 + 4 * DAY_NS
    ref = tmp_path / "nov.parquet"  # the same bars as one file: the reference replay
    lo, hi = (pl.lit(t).cast(pl.Datetime("ns", "UTC")) for t in (start, end))
    pl.concat([pl.read_parquet(BTC_2022), pl.read_parquet(ETH_2022)]).filter(
        pl.col("open_time").cast(pl.Datetime("ns", "UTC")).is_between(lo, hi, closed="left")
    ).write_parquet(ref)

    # The source itself: per symbol, the file's bars in the file's order (duplicates right
    # after their original, as they are).
    src = KafkaRangeSource(kafka_bootstrap, topic, start // 10**6, end // 10**6, tail=False)
    msgs = _drain(src.build_part("in", "all", None))
    assert len(msgs) == 4 * 2 * 1440 + dups
    fsrc = FileSource(ref, None, start, end)
    for sym in ("BTCUSDT", "ETHUSDT"):
        want = _drain(fsrc.build_part("in", sym, None))
        got = [m.value for m in msgs if m.key == sym]
        dedup = [v for i, v in enumerate(got) if i == 0 or v != got[i - 1]]
        assert dedup == [encode(b) for b in want]
        assert len(got) - len(dedup) == (dups if sym == "ETHUSDT" else 0)

    # The whole flow: the same fills and equity as the file; duplicates only as dead letters.
    cfg = _cfg(kafka_bootstrap, ch_dsn, ch_db)
    syms = ("BTCUSDT", "ETHUSDT")
    run_id, summary = run_backtest(
        cfg, BacktestSpec(f"kafka:{topic}", syms, start, end, publish=False, workers=2),
        tmp_path / "k", progress=False,
    )  # fmt: skip
    _, fsummary = run_backtest(
        cfg, BacktestSpec(f"file:{ref}", syms, start, end, publish=False), tmp_path / "f",
        progress=False,
    )  # fmt: skip
    _outputs_equal(tmp_path / "k", tmp_path / "f")
    client = connect(ch_dsn, ch_db)
    assert count_final(client, ch_db, "bars", run_id) == 4 * 2 * 1440
    assert summary.n_bars == fsummary.n_bars == 4 * 1440  # bar times in the equity curve
    dead = query_df(
        client,
        f"SELECT reason FROM {ch_db}.dead_letters FINAL WHERE run_id = %(r)s",
        {"r": run_id},
    )
    assert dead.height == dups
    assert all("duplicate" in r for r in dead["reason"].to_list()), dead["reason"][:3]


# ----------------------------------------------------------------------------- resume


T0 = 1_704_067_200_000


def _rows(n: int, seed: int) -> list[tuple[str, bytes, int]]:
    rng = random.Random(seed)
    rows = [(f"S{i % 5}", f"v{i}".encode(), T0 + 1000 * (i // 5)) for i in range(n)]
    rng.shuffle(rows)  # timestamps nowhere near log order
    return rows + rows[: n // 10]  # and some duplicates


def _run_cut(src: KafkaRangeSource, state: Any, calls: int) -> tuple[list[RawMessage], Any]:
    """`calls` next_batch calls from `state`, then a snapshot (pickled, as Bytewax does)."""
    part = src.build_part("in", "all", state)
    got: list[RawMessage] = []
    try:
        for _ in range(calls):
            for batch in part.next_batch():
                got.extend(batch)
    except StopIteration:
        pass
    snap = pickle.loads(pickle.dumps(part.snapshot()))
    part.close()
    return got, snap


def test_bounded_resume_at_any_point_equals_an_uninterrupted_read(
    kafka_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    topic = kafka_topic(partitions=3)
    with CheckedProducer(kafka_bootstrap) as p:
        p.produce_many(topic, _rows(3_000, 1))
    src = KafkaRangeSource(kafka_bootstrap, topic, T0 + 50_000, T0 + 500_000, batch_size=97)
    whole = _drain(src.build_part("in", "all", None))
    assert len(whole) > 2_000
    order = [(m.timestamp_ms, m.partition, m.offset) for m in whole]
    assert order == sorted(order)
    for cuts in ([0], [1], [3, 5], [2, 1, 1, 4, 7], [10_000]):
        got: list[RawMessage] = []
        state = None
        for calls in cuts:
            part, state = _run_cut(src, state, calls)
            got += part
        got += _drain(src.build_part("in", "all", state))
        assert got == whole, cuts


def _poll(part: Any, n: int, timeout_s: float = 20.0) -> list[RawMessage]:
    """Batches from a partition until `n` messages came (or `timeout_s` passed)."""
    got: list[RawMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        for batch in part.next_batch():
            got.extend(batch)
        time.sleep(0.001)
    return got


def _session(
    src: KafkaRangeSource, state: Any, n: int, more: int = 0
) -> tuple[list[RawMessage], Any]:
    """From `state`: read `n` messages, then `more` next_batch calls; a (pickled) snapshot."""
    part = src.build_part("in", "all", state)
    got = _poll(part, n) if n else []
    for _ in range(more):
        for batch in part.next_batch():
            got.extend(batch)
    snap = pickle.loads(pickle.dumps(part.snapshot()))
    part.close()
    return got, snap


def test_tail_resume_in_history_and_live_equals_an_uninterrupted_read(
    kafka_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    # The same records into two topics at the same moments: same partitions, same offsets.
    topics = [kafka_topic(partitions=2), kafka_topic(partitions=2)]
    hist = _rows(1_000, 2)
    live = [(f"S{i % 5}", f"live{i}".encode(), T0 + 10_000_000 + i) for i in range(600)]
    live.insert(450, ("S0", b"too-old", T0))  # older than start_ms: skipped while tailing too

    def produce(rows: list[tuple[str, bytes, int]]) -> None:
        with CheckedProducer(kafka_bootstrap) as p:
            for t in topics:
                p.produce_many(t, rows)

    produce(hist)
    start = T0 + 20_000
    n_hist = sum(1 for r in hist if r[2] >= start)
    whole_src, src = (KafkaRangeSource(kafka_bootstrap, t, start, tail=True, batch_size=50)
                      for t in topics)  # fmt: skip
    whole_part = whole_src.build_part("in", "all", None)
    whole = _poll(whole_part, n_hist)

    got, state = _session(src, None, 0, more=1)  # stopped while scanning (or just after)
    assert state["emitted"] == len(got)
    part_got, state = _session(src, state, 400)  # in the sorted history
    got += part_got
    assert state["emitted"] == len(got) < n_hist
    part_got, state = _session(src, state, n_hist - len(got), more=3)  # now tailing
    got += part_got
    assert "live" in state and len(got) == n_hist

    produce(live[:300])
    whole += _poll(whole_part, 300)
    part_got, state = _session(src, state, 150)
    got += part_got
    part_got, state = _session(src, state, 300 - (len(got) - n_hist))
    got += part_got
    produce(live[300:])
    whole += _poll(whole_part, 300)
    part_got, state = _session(src, state, n_hist + 600 - len(got))
    got += part_got
    time.sleep(0.3)
    assert whole_part.next_batch() == []
    whole_part.close()

    assert len(whole) == len(got) == n_hist + 600
    assert got[:n_hist] == whole[:n_hist]  # the history: one sorted order, always
    assert b"too-old" not in {m.value for m in got + whole}

    def by_partition(ms: list[RawMessage]) -> dict[int, list[RawMessage]]:
        out: dict[int, list[RawMessage]] = {}
        for m in ms:
            out.setdefault(m.partition, []).append(m)
        return out

    assert by_partition(got[n_hist:]) == by_partition(whole[n_hist:])  # live: arrival order


# ----------------------------------------------------------------------------- outages


def _free_even_port() -> int:
    for _ in range(200):
        port = random.randrange(24_000, 32_000, 2)  # below the ephemeral port range
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))  # the controller listens there
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def side_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A broker of this module's own: these tests stop it (never the session broker)."""
    import shutil

    if shutil.which("java") is None or not (broker.kafka_home() / "lib" / ".complete").exists():
        pytest.skip("needs Java and the cached Kafka jars")
    data = tmp_path_factory.mktemp("side-kafka")
    bootstrap = broker.up(f"127.0.0.1:{_free_even_port()}", data, timeout_s=120)
    yield bootstrap, data
    broker.down(data)


_SLOW_FETCH = {  # little prefetch, so a stopped broker interrupts the scan
    "fetch.max.bytes": 2_000,
    "max.partition.fetch.bytes": 2_000,
    "message.max.bytes": 1_000,
    "queued.max.messages.kbytes": 2,
    "fetch.wait.max.ms": 10,
}


# Small record batches (a fetch returns whole batches, and the default 1 MB batch would hold the
# whole topic), quiet once the broker stops.
_SMALL_BATCHES = {"batch.num.messages": 40, "linger.ms": 0, "log_level": 0}


def _scan_partly(part: Any, timeout_s: float = 15.0) -> None:
    """Scan until some records are kept (a loaded machine may need several 0.1 s slices to
    connect and fetch), but not to the end."""
    deadline = time.monotonic() + timeout_s
    while part._scan is not None and len(part._kept) == 0 and time.monotonic() < deadline:
        assert part.next_batch() == []  # still scanning
    assert part._scan is not None and len(part._kept) > 0


def test_broker_back_within_outage_s_loses_nothing(side_broker: tuple[str, Path]) -> None:
    bootstrap, data = side_broker
    topic = "test.outage.md.trades.v1"
    broker.ensure_topics(bootstrap, {topic: 2}, include_defaults=False)
    rows = _rows(40_000, 3)
    with CheckedProducer(bootstrap, _SMALL_BATCHES) as p:
        p.produce_many(topic, rows)
    src = KafkaRangeSource(bootstrap, topic, tail=False, outage_s=60, consumer_config=_SLOW_FETCH)
    part = src.build_part("in", "all", None)
    _scan_partly(part)
    broker.down(data)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2:  # retried, no error meanwhile
        assert part.next_batch() == []
    broker.up(bootstrap, data, timeout_s=60)
    got = _drain(part, timeout_s=60)
    assert len(got) == len(rows)
    assert sorted((m.key, m.value, m.timestamp_ms) for m in got) == sorted(
        (k, v, ts) for k, v, ts in rows
    )
    order = [(m.timestamp_ms, m.partition, m.offset) for m in got]
    assert order == sorted(order)


def test_broker_gone_for_outage_s_raises_a_kafka_fault(side_broker: tuple[str, Path]) -> None:
    bootstrap, data = side_broker
    if not broker.answers(bootstrap):
        broker.up(bootstrap, data, timeout_s=60)
    topic = "test.outage2.md.trades.v1"
    broker.ensure_topics(bootstrap, {topic: 2}, include_defaults=False)
    with CheckedProducer(bootstrap, _SMALL_BATCHES) as p:
        p.produce_many(topic, _rows(40_000, 4))
    outage_s = 3.0
    bounded = KafkaRangeSource(
        bootstrap, topic, tail=False, outage_s=outage_s, consumer_config=_SLOW_FETCH
    ).build_part("in", "all", None)
    _scan_partly(bounded)
    tail = KafkaRangeSource(bootstrap, topic, T0 + 10**9, tail=True, outage_s=outage_s)
    tailing = tail.build_part("in", "all", None)  # nothing that new: tailing at once
    _poll(tailing, 1, timeout_s=1)
    assert tailing._live is not None

    broker.down(data)
    t0 = time.monotonic()
    for part in (bounded, tailing):
        with pytest.raises(Fault) as info:
            while time.monotonic() - t0 < outage_s + 10:
                part.next_batch()
                time.sleep(0.01)
        f = info.value
        assert f.component == "kafka" and f"broker {bootstrap} unreachable" in f.what
        assert topic in f.what and "cryptoflow infra status" in f.check
        assert time.monotonic() - t0 < outage_s + 5
        part.close()

    # At start, metadata fails within a few seconds, naming the problem.
    t1 = time.monotonic()
    with pytest.raises(Fault, match=r"not answering.*cryptoflow infra up"):
        KafkaRangeSource(bootstrap, topic, tail=False, metadata_timeout_s=2).build_part(
            "in", "all", None
        )
    assert time.monotonic() - t1 < 5
