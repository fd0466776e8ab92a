"""confluent-kafka helpers: a producer that never loses messages silently, and bounded reads.

No Bytewax here; `dataflows.io.kafka` wraps these for dataflows.

Time ranges are half-open, `[start_ms, end_ms)`, on the record timestamp (CreateTime, i.e. the
event time we produce with). Offsets come from `offsets_for_times`, which returns the first offset
whose timestamp is >= the target, so the range is exact when timestamps rise within a partition;
records inside the offset range whose timestamp falls outside the time range are filtered out.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

Headers = Mapping[str, str | bytes] | list[tuple[str, str | bytes]] | None


class DeliveryError(RuntimeError):
    """Some produced messages were not acknowledged by the broker."""

    def __init__(self, message: str, *, failed: int, undelivered: int, first_error: Any = None):
        super().__init__(message)
        self.failed = failed
        self.undelivered = undelivered
        self.first_error = first_error


# Throughput-oriented but safe: idempotence implies acks=all and in-order, no-duplicate retries.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,  # bytes per partition batch
    "batch.num.messages": 100_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 512 * 1024,
    "message.timeout.ms": 60_000,
    # Successes are counted by subtraction (see flush); a Python callback per ack halves speed.
    "delivery.report.only.error": True,
}


class CheckedProducer:
    """Idempotent producer whose `flush` proves every message since the last flush was acked.

    Failures arrive through the delivery callback (only errors are reported, which keeps the
    hot path in C); after a flush that leaves nothing queued, every message produced since the
    previous flush was either acknowledged or reported as failed, so
    delivered = produced - failed. Any failure or leftover raises `DeliveryError`.
    """

    def __init__(self, bootstrap: str, config: Mapping[str, Any] | None = None) -> None:
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS}
        conf.update(config or {})
        conf["on_delivery"] = self._on_delivery
        self._producer = Producer(conf)
        self._produced = 0  # since the last flush
        self._failed = 0
        self._first_error: tuple[str, Any] | None = None

    def _fail(self, topic: str, err: Any) -> None:
        self._failed += 1
        if self._first_error is None:
            self._first_error = (topic, err)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:  # None only when delivery.report.only.error is overridden to false
            self._fail(msg.topic() or "?", err)

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | str | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = None,
    ) -> None:
        """Queue one message; blocks (serving callbacks) while the local queue is full."""
        produce = self._producer.produce
        while True:
            try:
                if headers:
                    produce(topic, value, key, timestamp=timestamp_ms or 0, headers=headers)
                else:
                    produce(topic, value, key, timestamp=timestamp_ms or 0)
                break
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:  # rejected locally, e.g. larger than message.max.bytes
                self._fail(topic, exc.args[0] if exc.args else exc)
                break
        self._produced += 1

    def produce_many(
        self,
        topic: str,
        messages: Iterable[tuple[bytes | str | None, bytes, int | None]],
        headers: Headers = None,
    ) -> int:
        """Queue `(key, value, timestamp_ms)` tuples fast; returns how many were queued.

        Call `flush()` afterwards to verify delivery.
        """
        producer = self._producer
        produce = producer.produce
        poll = producer.poll
        n = 0  # queued by the fast path, added to _produced at the end
        slow = 0
        try:
            for key, value, ts in messages:
                try:
                    if headers:
                        produce(topic, value, key, timestamp=ts or 0, headers=headers)
                    else:
                        produce(topic, value, key, timestamp=ts or 0)
                except BufferError:
                    # Queue full: let librdkafka drain, then retry via the blocking slow path.
                    poll(0.05)
                    self.produce(topic, value, key, ts, headers)
                    slow += 1
                    continue
                except KafkaException as exc:  # rejected locally; counts as produced + failed
                    self._fail(topic, exc.args[0] if exc.args else exc)
                n += 1
                if not n & 0xFFFF:
                    poll(0)
        finally:
            self._produced += n
        poll(0)
        return n + slow

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for acks; return how many messages were delivered since the last flush.

        Raises `DeliveryError` if any message failed or is still queued after `timeout_s`.
        """
        remaining = self._producer.flush(timeout_s)
        produced, failed, first = self._produced, self._failed, self._first_error
        self._produced, self._failed, self._first_error = remaining, 0, None
        if failed or remaining:
            where = f"topic {first[0]!r}: {first[1]}" if first else "timed out"
            raise DeliveryError(
                f"{failed} of {produced} messages failed and {remaining} undelivered after "
                f"{timeout_s}s (first error on {where})",
                failed=failed,
                undelivered=remaining,
                first_error=first[1] if first else None,
            )
        return produced

    def __len__(self) -> int:
        return len(self._producer)

    def __enter__(self) -> CheckedProducer:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.flush()
        else:  # don't mask the original error; give queued messages a moment
            self._producer.flush(1.0)


class Record(NamedTuple):
    key: bytes | None
    value: bytes
    timestamp_ms: int
    offset: int


def consumer_config(bootstrap: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Consumer settings for explicit assignment: no group membership, no commits."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": f"cryptoflow-reader-{uuid.uuid4().hex[:8]}",  # required, never joined
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        # A start offset that retention already removed fails loudly instead of jumping to the
        # log end (librdkafka's default), which would silently read nothing.
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        "queued.max.messages.kbytes": 64 * 1024,
    }
    conf.update(config or {})
    return conf


def topic_partitions(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[int]:
    """Partition ids of `topic`, sorted (KafkaException if it is missing or in error)."""
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=timeout_s)
    tmd = md.topics.get(topic)
    if tmd is None or tmd.error is not None:
        raise KafkaException(tmd.error if tmd is not None else f"topic {topic!r} not found")
    return sorted(tmd.partitions)


def partition_bounds(
    bootstrap: str,
    topic: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    *,
    partitions: Iterable[int] | None = None,
    timeout_s: float = 10.0,
    config: Mapping[str, Any] | None = None,
) -> dict[int, tuple[int, int]]:
    """Per-partition `[first, end)` offsets covering `[start_ms, end_ms)`.

    `start_ms=None` means the log start, `end_ms=None` the current high watermark. An empty
    range has first == end.
    """
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise ValueError(f"end_ms {end_ms} < start_ms {start_ms}")
    conf = consumer_config(bootstrap, config)
    consumer = Consumer(conf)
    try:
        if partitions is None:
            partitions = topic_partitions(bootstrap, topic, timeout_s)
        parts = list(partitions)
        marks = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout_s) for p in parts
        }

        def lookup(ts: int | None, default_is_low: bool) -> dict[int, int]:
            if ts is None:
                return {p: marks[p][0 if default_is_low else 1] for p in parts}
            tps = consumer.offsets_for_times(
                [TopicPartition(topic, p, ts) for p in parts], timeout_s
            )
            out = {}
            for tp in tps:
                if tp.error is not None:
                    raise KafkaException(tp.error)
                # -1: no record at or after ts, so the range starts/ends at the high watermark.
                out[tp.partition] = marks[tp.partition][1] if tp.offset < 0 else tp.offset
            return out

        firsts = lookup(start_ms, True)
        ends = lookup(end_ms, False)
        bounds = {}
        for p in parts:
            first = max(firsts[p], marks[p][0])  # retention may have removed the head
            end = max(ends[p], first)
            bounds[p] = (first, end)
        return bounds
    finally:
        consumer.close()


def first_timestamp_ms(
    bootstrap: str,
    topic: str,
    offsets: Mapping[int, tuple[int, int]],
    *,
    timeout_s: float = 10.0,
    config: Mapping[str, Any] | None = None,
) -> int | None:
    """Smallest timestamp among the first records at `{partition: (first, end)}` offsets.

    None if every range is empty. Used to anchor paced replays across partitions.
    """
    todo = {p: first for p, (first, end) in offsets.items() if first < end}
    if not todo:
        return None
    consumer = Consumer(consumer_config(bootstrap, config))
    try:
        consumer.assign([TopicPartition(topic, p, off) for p, off in todo.items()])
        best: int | None = None
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for m in consumer.consume(len(todo) * 16, 0.2):
                if m.error() is not None or m.partition() not in todo:
                    continue
                del todo[m.partition()]
                consumer.pause([TopicPartition(topic, m.partition())])
                ts = m.timestamp()[1]
                best = ts if best is None else min(best, ts)
        if todo:
            raise TimeoutError(f"no first record from {topic} partitions {sorted(todo)}")
        return best
    finally:
        consumer.close()


class PartitionReader:
    """Reads one partition from offset `first` up to `end` (exclusive), or forever if `end=None`.

    `read_raw` never blocks longer than its timeout; `done` turns true once `end` is reached
    (control records and retention gaps are handled through the partition EOF position).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partition: int,
        first: int,
        end: int | None,
        *,
        batch_size: int = 10_000,
        start_ms: int | None = None,
        end_ms: int | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.end = end
        self.next_offset = first
        self.batch_size = batch_size
        self._start_ms = start_ms
        self._end_ms = end_ms
        self.done = end is not None and first >= end
        self._consumer: Consumer | None = None
        if not self.done:
            conf = consumer_config(bootstrap, config)
            if end is None:
                conf["enable.partition.eof"] = False
            self._consumer = Consumer(conf)
            self._consumer.assign([TopicPartition(topic, partition, first)])

    def read_raw(self, timeout_s: float = 0.0) -> list[Message]:
        """Next data messages (confluent `Message`s) within the range; may be empty."""
        if self.done or self._consumer is None:
            return []
        msgs = self._consumer.consume(self.batch_size, timeout_s)
        if not msgs:
            return msgs
        end, start_ms, end_ms = self.end, self._start_ms, self._end_ms
        out = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    # At the log end: anything still below `end` was a control record or gap.
                    if end is not None and m.offset() >= end:
                        self.done = True
                    continue
                if err.retriable() or err.code() == KafkaError._TRANSPORT:
                    continue  # librdkafka reconnects and refetches by itself
                raise KafkaException(err)
            off = m.offset()
            if end is not None and off >= end:
                self.done = True
                break
            self.next_offset = off + 1
            if start_ms is not None or end_ms is not None:
                ts = m.timestamp()[1]
                if (start_ms is not None and ts < start_ms) or (
                    end_ms is not None and ts >= end_ms
                ):
                    continue
            out.append(m)
        if end is not None and self.next_offset >= end:
            self.done = True
        if self.done:
            self.close()
        return out

    def read_batch(self, timeout_s: float = 0.0) -> list[Record]:
        """Like `read_raw`, as `Record(key, value, timestamp_ms, offset)` tuples."""
        return [
            Record(m.key(), m.value(), m.timestamp()[1], m.offset())
            for m in self.read_raw(timeout_s)
        ]

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class TimeRangeReader:
    """Bounded read of a whole topic between `start_ms` and `end_ms` (half-open).

    Iterating yields `(partition, [Record, ...])` batches until every partition has reached the
    end offset computed at construction. Partitions are read one consumer per partition, in
    round-robin, so one slow partition does not stall the rest.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        *,
        batch_size: int = 10_000,
        poll_timeout_s: float = 0.2,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.start_ms, self.end_ms = start_ms, end_ms
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self._config = config
        self.bounds = partition_bounds(bootstrap, topic, start_ms, end_ms, config=config)

    def batches(self) -> Iterator[tuple[int, list[Record]]]:
        readers = [
            PartitionReader(
                self.bootstrap,
                self.topic,
                p,
                first,
                end,
                batch_size=self.batch_size,
                start_ms=self.start_ms,
                end_ms=self.end_ms,
                config=self._config,
            )
            for p, (first, end) in sorted(self.bounds.items())
        ]
        try:
            while active := [r for r in readers if not r.done]:
                got = False
                for r in active:
                    batch = r.read_batch(0 if got else self.poll_timeout_s / len(active))
                    if batch:
                        got = True
                        yield r.partition, batch
        finally:
            for r in readers:
                r.close()

    __iter__ = batches

    def records(self) -> list[Record]:
        """All records, partition by partition in offset order."""
        by_part: dict[int, list[Record]] = {p: [] for p in self.bounds}
        for p, batch in self.batches():
            by_part[p].extend(batch)
        return [r for p in sorted(by_part) for r in by_part[p]]

    def count(self) -> int:
        """Upper bound of records in range (offset span; timestamp filtering may drop some)."""
        return sum(end - first for first, end in self.bounds.values())


__all__ = [
    "PRODUCER_DEFAULTS",
    "CheckedProducer",
    "DeliveryError",
    "PartitionReader",
    "Record",
    "TimeRangeReader",
    "consumer_config",
    "first_timestamp_ms",
    "partition_bounds",
    "topic_partitions",
]
