"""Bytewax Kafka source/sink on the real broker, with 1 and 2 workers."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import StatefulSourcePartition
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from dataflows.io.kafka import DeliveryError, KafkaCheckedSink, KafkaRangeSource, RawMessage
from infra.kafka.client import (
    CheckedProducer,
    TimeRangeReader,
    TopicReader,
    partition_bounds,
)

pytestmark = pytest.mark.kafka

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z in ms


def _fill(bootstrap: str, topic: str, n: int) -> list[tuple[str, bytes, int]]:
    rows = [(f"SYM{i % 7}", f"v{i}".encode(), T0 + i) for i in range(n)]
    with CheckedProducer(bootstrap) as p:
        p.produce_many(topic, rows)
    return rows


def _flow(source: KafkaRangeSource, out: list[list[RawMessage]]) -> Dataflow:
    flow = Dataflow("kafka_io_test")
    op.output("out", op.input("in", flow, source), TestingSink(out))
    return flow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _identity(msgs: list[RawMessage]) -> set[tuple[int, int]]:
    return {(m.partition, m.offset) for m in msgs}


def _poll(
    part: StatefulSourcePartition[list[RawMessage], int], n: int, timeout_s: float
) -> list[RawMessage]:
    """Messages from a source partition until there are `n` of them or `timeout_s` passes."""
    got: list[RawMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        for batch in part.next_batch():
            got.extend(batch)
        time.sleep(0.01)
    return got


def test_source_one_worker_reads_everything_once_in_batches(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=3)
    rows = _fill(kafka_bootstrap, topic, 1_000)
    out: list[list[RawMessage]] = []
    run_main(_flow(KafkaRangeSource(kafka_bootstrap, topic, tail=False, batch_size=100), out))

    assert all(isinstance(b, list) and 0 < len(b) <= 100 for b in out)
    msgs = [m for b in out for m in b]
    assert len(msgs) == len(rows) == len(_identity(msgs))  # exactly once
    assert sorted((m.key, m.value, m.timestamp_ms) for m in msgs) == sorted(rows)
    # One sorted stream: (timestamp, partition, offset) order across batches and partitions.
    order = [(m.timestamp_ms, m.partition, m.offset) for m in msgs]
    assert order == sorted(order) and len({m.partition for m in msgs}) == 3


def test_source_two_workers_reads_everything_once(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=4)
    rows = _fill(kafka_bootstrap, topic, 2_000)
    out: list[list[RawMessage]] = []
    flow = _flow(KafkaRangeSource(kafka_bootstrap, topic, T0, T0 + 10_000, batch_size=256), out)
    cluster_main(flow, [f"127.0.0.1:{_free_port()}"], 0, worker_count_per_proc=2)

    msgs = [m for b in out for m in b]
    assert len(msgs) == len(rows) == len(_identity(msgs))
    assert {m.partition for m in msgs} == {0, 1, 2, 3}


def test_source_honours_time_range(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic(partitions=2)
    _fill(kafka_bootstrap, topic, 500)
    out: list[list[RawMessage]] = []
    run_main(_flow(KafkaRangeSource(kafka_bootstrap, topic, T0 + 100, T0 + 200), out))
    assert sorted(m.timestamp_ms - T0 for b in out for m in b) == list(range(100, 200))

    empty: list[list[RawMessage]] = []
    run_main(_flow(KafkaRangeSource(kafka_bootstrap, topic, T0 + 9_000, T0 + 9_500), empty))
    assert empty == []


def test_partition_resumes_from_snapshot(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=1)
    _fill(kafka_bootstrap, topic, 50)
    src = KafkaRangeSource(kafka_bootstrap, topic, tail=False, batch_size=10)
    assert src.list_parts() == ["all"]
    state = {"starts": {0: 0}, "ends": {0: 50}, "emitted": 37, "origin": None}
    part = src.build_part("in", "all", state)
    got: list[RawMessage] = []
    with pytest.raises(StopIteration):
        for _ in range(500):
            for batch in part.next_batch():
                got.extend(batch)
            time.sleep(0.005)
    assert [m.offset for m in got] == list(range(37, 50))
    assert part.snapshot()["emitted"] == 50
    part.close()
    with pytest.raises(ValueError, match="resume state"):
        src.build_part("in", "all", 37)  # type: ignore[arg-type]  (an old per-partition state)


def test_tail_mode_waits_without_spinning_then_sees_new_data(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=1)
    part = KafkaRangeSource(kafka_bootstrap, topic).build_part("in", "all", None)
    for _ in range(3):  # the (empty) history, then tailing
        assert part.next_batch() == []
    awake = part.next_awake()
    assert awake is not None and awake > datetime.now(UTC)  # backs off instead of busy-polling
    _fill(kafka_bootstrap, topic, 5)
    got = _poll(part, 5, timeout_s=10)
    assert [m.value for m in got] == [f"v{i}".encode() for i in range(5)]
    assert part.snapshot()["live"] == {0: 5}
    part.close()


def test_paced_replay_holds_back_future_messages(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=1)
    rows = [("k", b"now", T0), ("k", b"later", T0 + 60_000)]  # one minute of event time apart
    with CheckedProducer(kafka_bootstrap) as p:
        p.produce_many(topic, rows)
    src = KafkaRangeSource(kafka_bootstrap, topic, T0, T0 + 120_000, speed=1.0)
    part = src.build_part("in", "all", None)
    got = _poll(part, 1, timeout_s=5)
    assert [m.value for m in got] == [b"now"]
    assert part.next_batch() == []  # `later` is 60 s of wall time away at speed 1
    state = part.snapshot()
    assert state["emitted"] == 1  # the held-back message is emitted again on resume
    part.close()
    resumed = KafkaRangeSource(kafka_bootstrap, topic, T0, T0 + 120_000, speed=1e6)
    part = resumed.build_part("in", "all", state)
    assert [m.value for m in _poll(part, 1, timeout_s=5)] == [b"later"]
    part.close()


def test_paced_tail_keeps_pending_messages_across_a_resume(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=2)
    src = KafkaRangeSource(kafka_bootstrap, topic, T0, tail=True, speed=1.0)
    part = src.build_part("in", "all", None)
    assert _poll(part, 1, timeout_s=1) == []  # empty history: tailing now
    rows = [("a", b"now", T0), ("b", b"later", T0 + 60_000), ("a", b"later2", T0 + 90_000)]
    with CheckedProducer(kafka_bootstrap) as p:
        p.produce_many(topic, rows)
    got = _poll(part, 1, timeout_s=10)
    assert [m.value for m in got] == [b"now"]
    time.sleep(0.5)
    assert part.next_batch() == []  # the others are read, but not due
    state = part.snapshot()
    part.close()
    # Resumed at high speed, the held-back records come, nothing lost and nothing repeated.
    part = KafkaRangeSource(kafka_bootstrap, topic, T0, tail=True, speed=1e6).build_part(
        "in", "all", state
    )
    rest = _poll(part, 2, timeout_s=10)
    assert sorted(m.value for m in rest) == [b"later", b"later2"]
    part.close()


def test_checked_sink_delivers_with_headers(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=2, suffix="orders.v1")
    items = [(f"SYM{i % 3}", f"o{i}".encode(), T0 + i) for i in range(200)]
    items += [("SYM0", b"no-ts")]  # two-tuples get the broker's time
    flow = Dataflow("sink_test")
    sink = KafkaCheckedSink(kafka_bootstrap, topic, headers={"run_id": "run-1"})
    op.output("out", op.input("in", flow, TestingSource(items, batch_size=64)), sink)
    run_main(flow)

    recs = TimeRangeReader(kafka_bootstrap, topic).records()
    assert len(recs) == len(items)
    by_value = {r.value: r for r in recs}
    for k, v, ts in items[:-1]:
        assert by_value[v].key == k.encode() and by_value[v].timestamp_ms == ts
    assert abs(by_value[b"no-ts"].timestamp_ms - time.time() * 1000) < 60_000
    bounds = {p: b for p, b in partition_bounds(kafka_bootstrap, topic).items() if b[1] > b[0]}
    reader = TopicReader(
        kafka_bootstrap,
        topic,
        {p: lo for p, (lo, _) in bounds.items()},
        {p: hi for p, (_, hi) in bounds.items()},
    )
    msgs: list = []
    deadline = time.monotonic() + 10
    while not reader.done and time.monotonic() < deadline:
        msgs += reader.read(0.2)
    assert reader.done and len(msgs) == len(items)
    assert all(m.headers() == [("run_id", b"run-1")] for m in msgs)


def test_checked_sink_raises_on_undeliverable(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=1, config={"max.message.bytes": "1000"})
    flow = Dataflow("sink_fail")
    items = [("k", b"fine"), ("k", os.urandom(5_000))]
    op.output(
        "out", op.input("in", flow, TestingSource(items)), KafkaCheckedSink(kafka_bootstrap, topic)
    )
    with pytest.raises(Exception) as info:  # bytewax wraps it: BytewaxRuntimeError from ...
        run_main(flow)
    assert isinstance(info.value.__cause__, DeliveryError)
    assert "MSG_SIZE_TOO_LARGE" in str(info.value.__cause__)
