"""Publish nothing twice across a resume.

Bytewax recovery resumes from the last committed epoch, so after a crash (not a clean stop, which
commits everything) the outputs of the unfinished epoch are produced again. ClickHouse tables are
idempotent on their natural keys; Kafka topics are logs, so `NoRepeatSink` first reads what this
run already published (records whose `run_id` header matches) and drops exact repeats. Every
message the flow publishes is unique within a run (order, fill and dead-letter ids), and the flow
is deterministic, so a repeat is byte-identical to its first copy.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Consumer, KafkaError, TopicPartition

from infra.faults import raise_fault
from infra.kafka.client import consumer_config, topic_partitions


def _digest(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=16).digest()


def published_digests(
    bootstrap: str, topic: str, run_id: str, timeout_s: float = 60.0
) -> set[bytes]:
    """Digests of every record of `topic` whose `run_id` header is `run_id` (a full scan)."""
    want = run_id.encode()
    conf = consumer_config(bootstrap)
    consumer = Consumer(conf)
    seen: set[bytes] = set()
    try:
        parts = topic_partitions(bootstrap, topic)
        todo: dict[int, int] = {}
        assign = []
        for p in parts:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), 10.0)
            if hi > lo:
                todo[p] = hi
                assign.append(TopicPartition(topic, p, lo))
        if not assign:
            return seen
        consumer.assign(assign)
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise raise_fault(
                    "kafka",
                    f"could not read back {topic} within {timeout_s:.0f} s to resume run {run_id}",
                    "that the broker is running (cryptoflow infra status)",
                )
            for m in consumer.consume(10_000, 0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.pop(m.partition(), None)
                    continue
                p = m.partition()
                if p in todo and m.offset() >= todo[p] - 1:
                    todo.pop(p)
                if dict(m.headers() or ()).get("run_id") == want:
                    seen.add(_digest(m.value()))
        return seen
    finally:
        consumer.close()


class _Partition(StatelessSinkPartition[Any]):
    def __init__(self, inner: StatelessSinkPartition[Any], seen: set[bytes]) -> None:
        self.inner = inner
        self.seen = seen
        self.skipped = 0

    def write_batch(self, items: list[Any]) -> None:
        if self.seen:
            keep = [it for it in items if _digest(it[1]) not in self.seen]
            self.skipped += len(items) - len(keep)
            items = keep
        if items:
            self.inner.write_batch(items)

    def close(self) -> None:
        self.inner.close()


class NoRepeatSink(DynamicSink[Any]):
    """Wraps a Kafka sink of `(key, value[, ts])` items; drops values this run already has in
    the topic. The topic is read once per process, when the first worker builds its part."""

    def __init__(self, inner: Any, bootstrap: str, topic: str, run_id: str) -> None:
        self.inner = inner
        self.bootstrap = bootstrap
        self.topic = topic
        self.run_id = run_id
        self._seen: set[bytes] | None = None
        self._lock = threading.Lock()
        self.parts: list[_Partition] = []

    @property
    def skipped(self) -> int:
        """Repeats dropped so far (over this process's workers)."""
        return sum(p.skipped for p in self.parts)

    def seen(self) -> set[bytes]:
        with self._lock:
            if self._seen is None:
                self._seen = published_digests(self.bootstrap, self.topic, self.run_id)
            return self._seen

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        part = _Partition(self.inner.build(step_id, worker_index, worker_count), self.seen())
        self.parts.append(part)
        return part
