"""CheckedProducer and bounded reads against the real broker."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import pytest

from infra.faults import Fault
from infra.kafka.client import (
    CheckedProducer,
    DeliveryError,
    Record,
    TimeRangeReader,
    TopicReader,
    partition_bounds,
    topic_watermarks,
)

pytestmark = pytest.mark.kafka

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z in ms: historical timestamps must survive


def _produce(bootstrap: str, topic: str, rows: list[tuple[str, bytes, int]]) -> int:
    with CheckedProducer(bootstrap) as p:
        n = p.produce_many(topic, rows)
        assert p.flush() == n == len(rows)
    return n


def test_round_trip_preserves_keys_values_timestamps(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=3)
    rows = [(f"SYM{i % 5}", f"v{i}".encode(), T0 + i) for i in range(300)]
    _produce(kafka_bootstrap, topic, rows)

    reader = TimeRangeReader(kafka_bootstrap, topic, batch_size=50)
    assert reader.count() == 300
    got: dict[int, list[Record]] = {}
    for part, batch in reader:
        assert 0 < len(batch) <= 50
        got.setdefault(part, []).extend(batch)
    assert set(got) <= {0, 1, 2} and len(got) > 1
    flat = [r for batch in got.values() for r in batch]
    assert sorted((r.key.decode(), r.value, r.timestamp_ms) for r in flat) == sorted(
        (k, v, ts) for k, v, ts in rows
    )
    for part, recs in got.items():
        assert [r.offset for r in recs] == list(range(len(recs)))  # in order, no gaps
        # Keyed partitioning: one key never spans partitions.
        assert all(
            r.key not in {x.key for p, rs in got.items() if p != part for x in rs} for r in recs
        )


def test_time_bounds_are_exact_at_the_boundaries(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=2)
    rows = [(f"k{i % 4}", str(i).encode(), T0 + 10 * i) for i in range(100)]  # ts T0..T0+990
    _produce(kafka_bootstrap, topic, rows)

    def ts(start: int | None, end: int | None) -> list[int]:
        recs = TimeRangeReader(kafka_bootstrap, topic, start, end).records()
        return sorted(r.timestamp_ms - T0 for r in recs)

    assert ts(T0 + 100, T0 + 500) == list(range(100, 500, 10))  # start inclusive, end exclusive
    assert ts(T0 + 101, T0 + 501) == list(range(110, 510, 10))
    assert ts(None, T0 + 30) == [0, 10, 20]
    assert ts(T0 + 970, None) == [970, 980, 990]
    assert ts(T0 + 990, T0 + 991) == [990]
    assert ts(T0 + 500, T0 + 500) == []
    assert ts(T0 + 5_000, None) == []  # after the data: empty, and returns
    assert ts(None, T0) == []
    assert len(ts(None, None)) == 100
    bounds = partition_bounds(kafka_bootstrap, topic, T0 + 100, T0 + 500)
    assert set(bounds) == {0, 1}
    assert sum(end - first for first, end in bounds.values()) == 40
    with pytest.raises(ValueError):
        partition_bounds(kafka_bootstrap, topic, T0 + 2, T0 + 1)


def test_out_of_order_timestamps_are_filtered(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=1)
    _produce(
        kafka_bootstrap,
        topic,
        [("k", b"a", T0 + 100), ("k", b"b", T0 + 200), ("k", b"c", T0 + 150)],
    )
    recs = TimeRangeReader(kafka_bootstrap, topic, T0 + 160, T0 + 300).records()
    assert [r.value for r in recs] == [b"b"]


def test_oversized_for_topic_raises_delivery_error(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=1, config={"max.message.bytes": "1000"})
    p = CheckedProducer(kafka_bootstrap)
    p.produce(topic, b"ok", "k", T0)
    assert p.flush() == 1
    p.produce(topic, os.urandom(5_000), "k", T0 + 1)  # random: lz4 cannot shrink it under 1000
    with pytest.raises(DeliveryError, match=r"MSG_SIZE_TOO_LARGE|too large") as info:
        p.flush(10)
    assert info.value.failed >= 1
    # The producer stays usable and the next flush reports only new messages.
    p.produce(topic, b"after", "k", T0 + 2)
    assert p.flush() == 1
    values = [r.value for r in TimeRangeReader(kafka_bootstrap, topic).records()]
    assert values == [b"ok", b"after"]


def test_oversized_for_client_raises_delivery_error(kafka_bootstrap: str) -> None:
    p = CheckedProducer(kafka_bootstrap)
    p.produce("md.trades.v1", os.urandom(2_000_000), "k")  # > message.max.bytes, never sent
    with pytest.raises(DeliveryError) as info:
        p.flush(5)
    assert info.value.failed == 1


def test_missing_topic_raises_delivery_error(kafka_bootstrap: str) -> None:
    # auto.create.topics.enable=false: the message can never be delivered.
    p = CheckedProducer(kafka_bootstrap, {"message.timeout.ms": 1500})
    p.produce_many("test.does-not-exist.v1", [("k", b"v", T0)] * 3)
    with pytest.raises(DeliveryError) as info:
        p.flush(10)
    assert info.value.failed == 3 and info.value.undelivered == 0


def test_flush_counts_and_headers(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic(partitions=2)
    p = CheckedProducer(kafka_bootstrap)
    assert p.flush() == 0
    for i in range(10):
        p.produce(topic, b"x", f"k{i}", T0 + i, headers={"run_id": "r1"})
    assert p.produce_many(topic, ((f"k{i}", b"y", T0 + i) for i in range(25)), [("h", b"1")]) == 25
    assert p.flush() == 35
    assert p.flush() == 0
    assert TimeRangeReader(kafka_bootstrap, topic).count() == 35


def test_time_range_read_is_complete_whatever_the_write_order(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """A backfill of older records written after newer ones is still in its time range."""
    topic = kafka_topic(partitions=2)
    newer = [(f"k{i % 3}", f"new{i}".encode(), T0 + 1_000_000 + i) for i in range(200)]
    older = [(f"k{i % 3}", f"old{i}".encode(), T0 + i) for i in range(200)]
    _produce(kafka_bootstrap, topic, newer + older)
    recs = TimeRangeReader(kafka_bootstrap, topic, T0 + 50, T0 + 150).records()
    assert sorted(r.value for r in recs) == sorted(f"old{i}".encode() for i in range(50, 150))
    # offsets_for_times cannot see them: exact only for rising timestamps (documented).
    bounds = partition_bounds(kafka_bootstrap, topic, T0 + 50, T0 + 150)
    assert sum(end - first for first, end in bounds.values()) < 100


def test_topic_reader_stops_at_the_captured_ends(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=2)
    _produce(kafka_bootstrap, topic, [(f"k{i % 4}", str(i).encode(), T0 + i) for i in range(100)])
    marks = topic_watermarks(kafka_bootstrap, topic)
    assert set(marks) == {0, 1} and sum(hi - lo for lo, hi in marks.values()) == 100
    reader = TopicReader(
        kafka_bootstrap,
        topic,
        {p: lo for p, (lo, _hi) in marks.items()},
        {p: hi for p, (_lo, hi) in marks.items()},
        batch_size=7,
    )
    _produce(kafka_bootstrap, topic, [("k0", b"later", T0 + 500)])  # past the captured ends
    got = []
    deadline = time.monotonic() + 20
    while not reader.done and time.monotonic() < deadline:
        got += reader.read(0.1)
    assert reader.done and len(got) == 100 and b"later" not in {m.value() for m in got}
    assert reader.positions == {p: hi for p, (_lo, hi) in marks.items()}
    reader.close()


def test_metadata_faults_name_the_problem(kafka_bootstrap: str) -> None:
    with pytest.raises(Fault) as info:
        topic_watermarks(kafka_bootstrap, "test.no-such-topic.v1")
    assert info.value.component == "kafka"
    assert info.value.what == f"topic test.no-such-topic.v1 does not exist on {kafka_bootstrap}"
    assert info.value.check == "the --source topic name"

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    t0 = time.monotonic()
    with pytest.raises(Fault, match=r"broker .* not answering .*cryptoflow infra up"):
        topic_watermarks(dead, "md.bars.v1", timeout_s=2)
    assert time.monotonic() - t0 < 4
