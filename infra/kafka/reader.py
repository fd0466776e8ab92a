"""Bounded and tailing reads of Kafka topics, whatever order their history was written in.

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

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from infra.faults import raise_fault


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
_LEADER_CODES = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE})
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
            while True:
                left = max(deadline - time.monotonic(), 0.5)
                try:
                    lo, hi = consumer.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=left, cached=False
                    )
                    break
                except KafkaException as exc:
                    err = exc.args[0] if exc.args else None
                    # A topic created a moment ago has no partition leader yet: wait for it.
                    if (
                        isinstance(err, KafkaError)
                        and err.code() in _LEADER_CODES
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.1)
                        continue
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


def newest_timestamp_ms(
    bootstrap: str, topic: str, *, timeout_s: float = 5.0, config: Mapping[str, Any] | None = None
) -> int | None:
    """Largest timestamp among the last record of each partition (None: the topic is empty)."""
    marks = topic_watermarks(bootstrap, topic, timeout_s=timeout_s, config=config)
    last = {p: hi - 1 for p, (lo, hi) in marks.items() if hi > lo}
    if not last:
        return None
    reader = TopicReader(
        bootstrap, topic, last, {p: off + 1 for p, off in last.items()}, config=config
    )
    best: int | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while not reader.done and time.monotonic() < deadline:
            for m in reader.read(0.2):
                ts = m.timestamp()[1]
                best = ts if best is None else max(best, ts)
    finally:
        reader.close()
    return best


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
    order within a partition (one `TopicReader`: an unreachable broker is a `Fault`, not a hang).
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
        starts = {p: lo for p, (lo, hi) in self.bounds.items() if hi > lo}
        ends = {p: hi for p, (lo, hi) in self.bounds.items() if hi > lo}
        reader = TopicReader(
            self.bootstrap,
            self.topic,
            starts,
            ends,
            batch_size=self.batch_size,
            config=self._config,
        )
        lo_ms, hi_ms = self.start_ms, self.end_ms
        try:
            while not reader.done:
                by_part: dict[int, list[Record]] = {}
                for m in reader.read(self.poll_timeout_s):
                    ts = m.timestamp()[1]
                    if (lo_ms is not None and ts < lo_ms) or (hi_ms is not None and ts >= hi_ms):
                        continue
                    rec = Record(m.key(), m.value(), ts, m.offset() or 0)
                    by_part.setdefault(m.partition() or 0, []).append(rec)
                yield from by_part.items()
        finally:
            reader.close()

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
    "Record",
    "TimeRangeReader",
    "TopicReader",
    "consumer_config",
    "newest_timestamp_ms",
    "partition_bounds",
    "topic_partitions",
    "topic_watermarks",
]
