"""`NoRepeatSink` on the real broker: what a run already published is not published again,
other runs' records and new messages go through."""

from __future__ import annotations

import uuid

import pytest

from dataflows.io.kafka import KafkaCheckedSink
from dataflows.io.resume import NoRepeatSink, published_digests
from infra.kafka.client import CheckedProducer, TimeRangeReader

pytestmark = pytest.mark.kafka


def test_repeats_of_this_run_are_dropped(kafka_topic, kafka_bootstrap: str):
    topic = kafka_topic(partitions=2, suffix="orders.v1")
    run, other = f"r-{uuid.uuid4().hex[:6]}", "someone-else"
    with CheckedProducer(kafka_bootstrap) as p:
        for i in range(5):
            p.produce(topic, f"order-{i}".encode(), "BTCUSDT", headers=[("run_id", run.encode())])
        p.produce(topic, b"order-9", "BTCUSDT", headers=[("run_id", other.encode())])
    assert len(published_digests(kafka_bootstrap, topic, run)) == 5

    inner = KafkaCheckedSink(kafka_bootstrap, topic, headers=[("run_id", run)])
    sink = NoRepeatSink(inner, kafka_bootstrap, topic, run)
    part = sink.build("step", 0, 1)
    # The interrupted epoch replayed (orders 3, 4), then new ones; order 9 was another run's.
    part.write_batch([("BTCUSDT", f"order-{i}".encode()) for i in (3, 4, 5, 6, 9)])
    part.close()
    assert sink.skipped == 2

    mine = [
        r.value
        for r in TimeRangeReader(kafka_bootstrap, topic).records()
        if r.value.startswith(b"order-")
    ]
    assert sorted(mine) == sorted([f"order-{i}".encode() for i in (0, 1, 2, 3, 4, 5, 6, 9, 9)])
