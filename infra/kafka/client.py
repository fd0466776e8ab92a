"""confluent-kafka helpers: a producer that never loses messages silently, and bounded reads.

No Bytewax here; `dataflows.io.kafka` wraps these for dataflows.

Time ranges are half-open, `[start_ms, end_ms)`, on the record timestamp (CreateTime, i.e. the
event time we produce with). Nothing here assumes that timestamps rise along the log: history is
often written out of order (a backfill of older data after newer, files ingested in any order),
so a time-range read (`TimeRangeReader`, `dataflows.io.kafka.KafkaRangeSource`) reads each
partition from its log start to the high watermark and filters on the timestamp (see
docs/replay.md). `partition_bounds` (offsets from `offsets_for_times`) is exact only for a
partition whose timestamps rise; it is kept for quick "is anything there" checks.

`topic_watermarks` and `TopicReader` turn an unreachable broker or a missing topic into a
one-line `infra.faults.Fault` instead of hanging.
"""

from __future__ import annotations

import logging
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

from infra.faults import raise_fault

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

    `outage_s` bounds how long a message may wait for the broker (`message.timeout.ms`): the
    idempotent producer retries without loss or duplicates while the broker is away, and a
    broker back within `outage_s` loses nothing; later, the message fails (_MSG_TIMED_OUT) and
    the next `flush` raises. Reconnect backoff is capped at 1 s so a returning broker is seen
    at once. `abort()` drops whatever is still queued so that teardown never waits on a dead
    broker.
    """

    def __init__(
        self,
        bootstrap: str,
        config: Mapping[str, Any] | None = None,
        *,
        outage_s: float | None = None,
    ) -> None:
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS}
        if outage_s is not None:
            if outage_s <= 0:
                raise ValueError("outage_s must be > 0")
            conf["message.timeout.ms"] = max(1, int(outage_s * 1000))
            conf["reconnect.backoff.max.ms"] = 1000
            conf["retry.backoff.max.ms"] = 1000
        conf.update(config or {})
        conf["on_delivery"] = self._on_delivery
        self.message_timeout_s = float(conf["message.timeout.ms"]) / 1000
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

    def abort(self) -> int:
        """Drop every queued and in-flight message without waiting (after a fault, before
        teardown: librdkafka's flush or destroy would otherwise wait on a dead broker).
        Returns how many were dropped; the counters restart at zero."""
        dropped = len(self._producer)
        try:
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.poll(0)  # serve the purge's delivery reports
        except (KafkaException, RuntimeError):
            pass
        self._produced, self._failed, self._first_error = 0, 0, None
        return dropped

    def __len__(self) -> int:
        return len(self._producer)

    def __enter__(self) -> CheckedProducer:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.flush()
        else:  # don't mask the original error; give queued messages a moment, then drop them
            self._producer.flush(1.0)
            self.abort()


class Record(NamedTuple):
    key: bytes | None
    value: bytes
    timestamp_ms: int
    offset: int


_RDKAFKA_LOG = logging.getLogger("cryptoflow.kafka.client")
_RDKAFKA_LOG.addHandler(logging.NullHandler())

# error_cb / message error codes that mean "cannot reach the broker" (librdkafka retries them).
_OUTAGE_CODES = frozenset(
    {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
)
BROKER_CHECK = "that the broker is running (cryptoflow infra status) and KAFKA_BOOTSTRAP"


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
        # Reconnect within a second once a broker is back (librdkafka's default backs off to 10 s).
        "reconnect.backoff.max.ms": 1000,
        # librdkafka's own log lines go to Python logging (quiet unless configured): a broker that
        # is down would otherwise print a "Connection refused" line every 50 ms on stderr.
        # Outages are reported through `error_cb` (see TopicReader) as one Fault.
        "logger": _RDKAFKA_LOG,
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


def topic_watermarks(
    bootstrap: str,
    topic: str,
    *,
    timeout_s: float = 5.0,
    config: Mapping[str, Any] | None = None,
) -> dict[int, tuple[int, int]]:
    """`{partition: (log start, high watermark)}` for every partition of `topic`, asked now.

    Fails within about `timeout_s` with a kafka `Fault` (one line, what to check) when the
    broker does not answer or the topic does not exist.
    """
    deadline = time.monotonic() + timeout_s
    consumer = Consumer(consumer_config(bootstrap, config))

    def unreachable(exc: BaseException) -> BaseException:
        err = exc.args[0] if exc.args else exc
        why = err.str() if isinstance(err, KafkaError) else str(err)
        return raise_fault(
            "kafka",
            f"broker {bootstrap} not answering ({why}) while looking up topic {topic}",
            f"{BROKER_CHECK}, or start one with cryptoflow infra up",
        )

    try:
        while True:
            left = max(deadline - time.monotonic(), 0.1)
            try:
                tmd = consumer.list_topics(topic, timeout=left).topics.get(topic)
            except KafkaException as exc:
                raise unreachable(exc) from exc
            err = tmd.error if tmd is not None else None
            if tmd is None or (
                err is not None
                and err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)
            ):
                raise raise_fault(
                    "kafka",
                    f"topic {topic} does not exist on {bootstrap}",
                    "the --source topic name",
                )
            if err is None and tmd.partitions:
                break
            if time.monotonic() >= deadline:  # e.g. LEADER_NOT_AVAILABLE that never clears
                raise raise_fault(
                    "kafka",
                    f"topic {topic} on {bootstrap} is not available ({err})",
                    BROKER_CHECK,
                )
            time.sleep(0.1)
        marks: dict[int, tuple[int, int]] = {}
        for p in sorted(tmd.partitions):
            left = max(deadline - time.monotonic(), 0.5)
            try:
                lo, hi = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=left, cached=False
                )
            except KafkaException as exc:
                raise unreachable(exc) from exc
            marks[p] = (lo, hi)
        return marks
    finally:
        consumer.close()


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
    """Per-partition `[first, end)` offsets covering `[start_ms, end_ms)` by `offsets_for_times`.

    `start_ms=None` means the log start, `end_ms=None` the current high watermark. An empty
    range has first == end. Exact only where timestamps rise along the partition (a backfill
    written after newer data falls outside these offsets): time-range reads scan whole
    partitions instead (`TimeRangeReader`, `KafkaRangeSource`).
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


class TopicReader:
    """One consumer reading partitions of `topic` from explicit offsets.

    `starts` is `{partition: first offset}`. With `ends` (`{partition: end offset}`, exclusive)
    the read is bounded: `done` turns true once every partition reached its end, and records at
    or past it are dropped. `ends=None` reads on forever. `read` returns data `Message`s in
    arrival order (offset order within a partition) and never blocks longer than its timeout;
    `positions` is the next offset per partition.

    Broker outages: librdkafka reconnects and refetches by itself, and the offsets are ours, so
    a broker back in time loses nothing. While the broker cannot be reached (an `error_cb` or
    message error with _TRANSPORT / _ALL_BROKERS_DOWN / _RESOLVE, or, for a bounded read, no
    progress at all), `read` probes it (a watermark query, at most once a second) and raises a
    kafka `Fault` once it has been unreachable for `outage_s`.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        starts: Mapping[int, int],
        ends: Mapping[int, int] | None = None,
        *,
        batch_size: int = 10_000,
        outage_s: float = 30.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if outage_s <= 0:
            raise ValueError("outage_s must be > 0")
        self.bootstrap, self.topic = bootstrap, topic
        self.batch_size = batch_size
        self.outage_s = outage_s
        self.positions = dict(starts)
        self._ends = dict(ends) if ends is not None else None
        if self._ends is not None:
            self._todo = {p for p, off in self.positions.items() if off < self._ends.get(p, 0)}
        else:
            self._todo = set(self.positions)
        self._down_since: float | None = None  # first sign of an outage not cleared since
        self._last_probe = 0.0
        self._idle_since = time.monotonic()
        self._fatal: KafkaError | None = None
        self._consumer: Consumer | None = None
        if self._todo:
            conf = consumer_config(bootstrap, config)
            conf["error_cb"] = self._on_error
            if self._ends is None:
                conf["enable.partition.eof"] = False
            self._consumer = Consumer(conf)
            self._consumer.assign(
                [TopicPartition(topic, p, self.positions[p]) for p in sorted(self._todo)]
            )

    @property
    def done(self) -> bool:
        return self._ends is not None and not self._todo

    def _on_error(self, err: KafkaError) -> None:  # served inside consume()
        if err.fatal():
            self._fatal = err
        elif err.code() in _OUTAGE_CODES:
            self._outage()

    def _outage(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()

    def _finish(self, p: int) -> None:
        self._todo.discard(p)
        if self._consumer is not None:
            self._consumer.pause([TopicPartition(self.topic, p)])
        if not self._todo:
            self.close()

    def read(self, timeout_s: float = 0.0) -> list[Message]:
        """Next data messages (possibly none); raises `Fault` after an outage of `outage_s`."""
        consumer = self._consumer
        if consumer is None:
            return []
        msgs = consumer.consume(self.batch_size, timeout_s)
        if self._fatal is not None:
            raise self._fault(f"fatal client error {self._fatal.str()}")
        ends, positions = self._ends, self.positions
        out: list[Message] = []
        progressed = False
        for m in msgs:
            err = m.error()
            if err is not None:
                code = err.code()
                if code == KafkaError._PARTITION_EOF:
                    progressed = True
                    p, off = m.partition() or 0, m.offset() or 0
                    # At the log end: anything still below `end` was a control record or gap.
                    if ends is not None and p in self._todo and off >= ends[p]:
                        self._finish(p)
                    continue
                if code in _OUTAGE_CODES or err.retriable():
                    self._outage()
                    continue
                raise self._fault(f"reading partition {m.partition()}: {err.str()}")
            progressed = True
            p, off = m.partition() or 0, m.offset() or 0  # never None on a data message
            if ends is not None:
                if p not in self._todo or off >= ends[p]:
                    if p in self._todo:
                        self._finish(p)
                    continue
                positions[p] = off + 1
                out.append(m)
                if off + 1 >= ends[p]:
                    self._finish(p)
            else:
                positions[p] = off + 1
                out.append(m)
        now = time.monotonic()
        if progressed:
            self._down_since = None
            self._idle_since = now
        elif self._consumer is not None:
            if ends is not None and self._down_since is None and now - self._idle_since >= 1.0:
                # A bounded read that stalls is suspect even without an error report.
                self._down_since = self._idle_since
            if self._down_since is not None:
                self._check(now)
        return out

    def _check(self, now: float) -> None:
        assert self._down_since is not None and self._consumer is not None
        if now - self._last_probe >= 1.0:
            self._last_probe = now
            p = min(self.positions)
            try:
                self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=0.5, cached=False
                )
            except KafkaException:
                pass
            else:  # it answers: librdkafka is (re)connected and fetching
                self._down_since = None
                self._idle_since = time.monotonic()
                return
        down_s = time.monotonic() - self._down_since
        if down_s >= self.outage_s:
            raise raise_fault(
                "kafka",
                f"broker {self.bootstrap} unreachable for {down_s:.0f} s "
                f"while reading {self.topic}",
                BROKER_CHECK,
            )

    def _fault(self, what: str) -> BaseException:
        return raise_fault("kafka", f"{self.topic} on {self.bootstrap}: {what}", BROKER_CHECK)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class TimeRangeReader:
    """Bounded read of a whole topic between `start_ms` and `end_ms` (half-open).

    Every partition is read from its log start to the high watermark seen at construction
    (`bounds`) and filtered on the record timestamp, so the result is complete whatever order
    the records were written in. Iterating yields `(partition, [Record, ...])` batches, offset
    order within a partition. Partitions are read one consumer per partition, in round-robin,
    so one slow partition does not stall the rest.
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
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise ValueError(f"end_ms {end_ms} < start_ms {start_ms}")
        self.bounds = topic_watermarks(bootstrap, topic, config=config)

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
        """Upper bound of records in range (offsets read; timestamp filtering may drop some)."""
        return sum(end - first for first, end in self.bounds.values())


__all__ = [
    "BROKER_CHECK",
    "PRODUCER_DEFAULTS",
    "CheckedProducer",
    "DeliveryError",
    "PartitionReader",
    "Record",
    "TimeRangeReader",
    "TopicReader",
    "consumer_config",
    "first_timestamp_ms",
    "partition_bounds",
    "topic_partitions",
    "topic_watermarks",
]
