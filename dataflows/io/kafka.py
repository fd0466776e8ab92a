"""Bytewax 0.21 source and sink for Kafka, built on `infra.kafka.client`.

`KafkaRangeSource` emits one item per poll: a *list* of `RawMessage`s, so Bytewax's per-item
cost is paid per batch (flatten downstream where per-message routing is needed). A bounded
replay is correct whatever order the topic was written in: it reads every partition from its
log start to the high watermark captured at build, keeps the records in range, sorts them by
(timestamp, partition, offset) and emits them from ONE Bytewax partition, so each symbol comes
in event-time order exactly as a file replay (docs/replay.md). A tailing source does the same
for its history, then follows new records as they arrive. The resume state is the bounds and
the count emitted (history), or the next offset per partition (tailing).

`KafkaCheckedSink` fixes the stock `KafkaSink`, which drops undelivered messages silently: every
`write_batch` flushes and raises `DeliveryError` unless the broker acknowledged everything.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError

from dataflows.io.pacing import Pace, check_speed
from infra import faults
from infra.faults import Fault, raise_fault
from infra.kafka.client import (
    CheckedProducer,
    DeliveryError,
    TopicReader,
    topic_watermarks,
)

__all__ = [
    "DeliveryError",
    "DeliveryFault",
    "KafkaCheckedSink",
    "KafkaRangeSource",
    "RawMessage",
    "SinkItem",
]


class RawMessage(msgspec.Struct, frozen=True, gc=False):
    """One Kafka record as read: undecoded value, utf-8 key, CreateTime in ms."""

    key: str | None
    value: bytes
    timestamp_ms: int
    partition: int
    offset: int


# (key, value) or (key, value, timestamp_ms); timestamp 0/None = broker time.
SinkItem = tuple[str | bytes | None, bytes] | tuple[str | bytes | None, bytes, int | None]

_MIN_BACKOFF = timedelta(milliseconds=5)
_MAX_BACKOFF = timedelta(milliseconds=100)
_SCAN_SLICE_S = 0.1  # a scanning next_batch returns to Bytewax after this much reading

# Resume state: phase 1 (the sorted history) {"starts": {p: log start}, "ends": {p: watermark},
# "emitted": n, "origin": ms | None}; phase 2 (tailing) {"live": {p: next offset}, "origin": ...}.
State = dict[str, Any]


class _Kept:
    """In-range records of a scan, compactly: values in one bytearray, the rest in arrays.

    About 30 bytes per record plus its value (docs/replay.md), instead of ~100 for a Message
    or RawMessage object.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.ends = array("q")  # end of each value in `buf`
        self.ts = array("q")
        self.part = array("i")
        self.off = array("q")
        self.key = array("i")  # index into `keys`; -1 = no key
        self.keys: list[str] = []
        self._key_ids: dict[bytes, int] = {}
        self.sorted = False
        self.n = 0

    def add(self, msgs: list[Any], lo: int | None, hi: int | None) -> None:
        buf, ends, tss, part, off, key = self.buf, self.ends, self.ts, self.part, self.off, self.key
        ids = self._key_ids
        for m in msgs:
            ts = m.timestamp()[1]
            if (lo is not None and ts < lo) or (hi is not None and ts >= hi):
                continue
            buf += m.value() or b""
            ends.append(len(buf))
            tss.append(ts)
            part.append(m.partition())
            off.append(m.offset())
            k = m.key()
            if k is None:
                key.append(-1)
            else:
                i = ids.get(k)
                if i is None:
                    i = ids[k] = len(self.keys)
                    self.keys.append(k.decode())
                key.append(i)

    def __len__(self) -> int:
        return self.n if self.sorted else len(self.ts)

    def sort(self) -> None:
        """Order by (timestamp, partition, offset): deterministic whatever the arrival order."""
        self.n = len(self.ts)
        ts = np.frombuffer(self.ts, np.int64)
        part = np.frombuffer(self.part, np.int32)
        off = np.frombuffer(self.off, np.int64)
        order = np.lexsort((off, part, ts))  # stable; the last key is the primary one
        ends = np.frombuffer(self.ends, np.int64)
        starts = np.zeros_like(ends)
        starts[1:] = ends[:-1]
        # Sorted columns replace the arrays (numpy from here on); `buf` stays as read.
        self.s_ts = ts[order]
        self.s_part = part[order]
        self.s_off = off[order]
        self.s_key = np.frombuffer(self.key, np.int32)[order]
        self.s_start = starts[order]
        self.s_end = ends[order]
        del self.ts, self.part, self.off, self.key, self.ends, self._key_ids
        self.sorted = True

    def messages(self, i: int, j: int) -> list[RawMessage]:
        mv = memoryview(self.buf)
        keys = [*self.keys, None]  # index -1 -> None
        return [
            RawMessage(keys[k], bytes(mv[a:b]), t, p, o)
            for k, a, b, t, p, o in zip(
                self.s_key[i:j].tolist(),
                self.s_start[i:j].tolist(),
                self.s_end[i:j].tolist(),
                self.s_ts[i:j].tolist(),
                self.s_part[i:j].tolist(),
                self.s_off[i:j].tolist(),
                strict=True,
            )
        ]


def _raw(msgs: list[Any], start_ms: int | None) -> list[RawMessage]:
    out = []
    for m in msgs:
        ts = m.timestamp()[1]
        if start_ms is not None and ts < start_ms:
            continue
        k = m.key()
        out.append(
            RawMessage(
                k.decode() if k is not None else None,
                m.value() or b"",
                ts,
                m.partition(),
                m.offset(),
            )
        )
    return out


class _RangePartition(StatefulSourcePartition[list[RawMessage], State]):
    """The whole topic as one Bytewax partition.

    Phase 1: scan every partition from `starts` to `ends` (its log start and the high watermark
    captured when the source was built), keep the records in the time range, sort them by
    (timestamp, partition, offset) and emit them in batches. Bounded sources stop there. Tail
    sources then enter phase 2: read on from `ends` on every partition, emitting in arrival
    order and skipping records older than `start_ms`.
    """

    def __init__(self, src: KafkaRangeSource, state: State) -> None:
        self._src = src
        self._awake: datetime | None = None
        self._backoff = _MIN_BACKOFF
        self._origin: int | None = state.get("origin", src.start_ms)
        self._pace: Pace | None = None
        self._pending: list[RawMessage] = []  # phase 2, paced: read but not yet due
        self._kept: _Kept | None = None
        self._scan: TopicReader | None = None
        self._live: TopicReader | None = None
        self._pos = 0
        if "live" in state:
            self._start_live({int(p): int(o) for p, o in state["live"].items()})
            return
        self._starts = {int(p): int(o) for p, o in state["starts"].items()}
        self._ends = {int(p): int(o) for p, o in state["ends"].items()}
        self._emitted = int(state.get("emitted", 0))
        self._kept = _Kept()
        self._scan = TopicReader(
            src.bootstrap,
            src.topic,
            self._starts,
            self._ends,
            batch_size=src.batch_size,
            outage_s=src.outage_s,
            config=src._config,
        )

    # -- phase 1 -------------------------------------------------------------------------

    def _scan_some(self) -> None:
        scan, kept = self._scan, self._kept
        assert scan is not None and kept is not None
        lo, hi = self._src.start_ms, None if self._src.tail else self._src.end_ms
        deadline = time.monotonic() + _SCAN_SLICE_S
        while not scan.done and time.monotonic() < deadline:
            kept.add(scan.read(0.05), lo, hi)
        if scan.done:
            scan.close()
            self._scan = None
            kept.sort()
            if len(kept) < self._emitted:
                raise raise_fault(
                    "kafka",
                    f"cannot resume the replay of {self._src.topic}: the snapshot emitted "
                    f"{self._emitted} records but the same offsets now hold {len(kept)}",
                    "that the topic was not deleted or recreated since the snapshot",
                )
            self._pos = self._emitted
            if self._origin is None and len(kept):
                self._origin = int(kept.s_ts[0])

    def _sorted_batch(self) -> list[list[RawMessage]]:
        kept = self._kept
        assert kept is not None
        n = len(kept)
        if self._pos >= n:
            self._kept = None  # free the history
            if not self._src.tail:
                raise StopIteration
            self._start_live(self._next_live_offsets())
            return []
        j = min(self._pos + self._src.batch_size, n)
        pace = self._pacer()
        if pace is not None:
            due = pace.due(kept.s_ts[self._pos : j] * 1_000_000)
            if due == 0:
                self._awake = pace.wake_at(int(kept.s_ts[self._pos]) * 1_000_000)
                return []
            j = self._pos + due
        self._awake = None
        batch = kept.messages(self._pos, j)
        self._pos = j
        return [batch]

    def _next_live_offsets(self) -> dict[int, int]:
        # Partitions added since the watermarks were captured are read from their log start.
        marks = self._src.watermarks()
        return {p: self._ends.get(p, lo) for p, (lo, _hi) in marks.items()}

    # -- phase 2 -------------------------------------------------------------------------

    def _start_live(self, positions: dict[int, int]) -> None:
        src = self._src
        self._live = TopicReader(
            src.bootstrap,
            src.topic,
            positions,
            None,
            batch_size=src.batch_size,
            outage_s=src.outage_s,
            config={"auto.offset.reset": "earliest", **src._config},
        )

    def _live_batch(self) -> list[list[RawMessage]]:
        live = self._live
        assert live is not None
        batch = self._pending
        self._pending = []
        if not batch:
            msgs = live.read(0.0)  # never block: downstream steps share this worker thread
            batch = _raw(msgs, self._src.start_ms)
            if not batch:
                # Nothing new: sleep via next_awake instead of spinning on empty polls.
                self._awake = datetime.now(UTC) + self._backoff
                self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
                return []
        self._backoff = _MIN_BACKOFF
        self._awake = None
        if self._origin is None:
            self._origin = min(m.timestamp_ms for m in batch)
        pace = self._pacer()
        if pace is not None:
            ts = np.fromiter((m.timestamp_ms for m in batch), np.int64, len(batch)) * 1_000_000
            due = pace.due(ts)
            if due < len(batch):
                self._pending = batch[due:]
                self._awake = pace.wake_at(int(ts[due]))
                batch = batch[:due]
                if not batch:
                    return []
        return [batch]

    # -- Bytewax -------------------------------------------------------------------------

    def _pacer(self) -> Pace | None:
        if self._pace is None and self._src.speed is not None and self._origin is not None:
            self._pace = Pace(self._src.speed, self._origin * 1_000_000)
        return self._pace

    def next_batch(self) -> list[list[RawMessage]]:
        if self._scan is not None:
            self._scan_some()
            self._awake = None
            return []
        if self._kept is not None:
            return self._sorted_batch()
        return self._live_batch()

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> State:
        if self._live is not None:
            live = dict(self._live.positions)
            for m in reversed(self._pending):  # not yet emitted: read again on resume
                live[m.partition] = m.offset
            return {"live": live, "origin": self._origin}
        return {
            "starts": dict(self._starts),
            "ends": dict(self._ends),
            "emitted": self._pos if self._scan is None else self._emitted,
            "origin": self._origin,
        }

    def close(self) -> None:
        for reader in (self._scan, self._live):
            if reader is not None:
                reader.close()


class KafkaRangeSource(FixedPartitionedSource[list[RawMessage], State]):
    """Read one topic between `start_ms` and `end_ms` (half-open, record timestamps).

    Correct whatever order the history was written in (backfills, files in any order,
    duplicates, any number of partitions): every partition is read from its log start to the
    high watermark captured when the source is built, the records in range are sorted by
    (timestamp, partition, offset) and emitted from ONE Bytewax partition, so each symbol's
    records come in event-time order exactly as a file replay gives them (docs/replay.md).
    Duplicated records are emitted as they are (the flow dead-letters duplicate bars).

    `end_ms=None` tails forever (live) unless `tail=False`, which stops at the watermarks.
    Tailing (`tail=True`) first replays `[start_ms, ...)` sorted up to the watermarks, then
    emits new records as they arrive (arrival order), skipping those older than `start_ms`.
    `start_ms=None` starts at the log start. Items are lists of up to `batch_size`
    `RawMessage`s. `speed` paces a replay: event time advances `speed` x wall time from
    `start_ms` (or the earliest record); None = as fast as possible.

    `outage_s`: how long the broker may be unreachable while reading before a kafka `Fault`
    is raised (a broker back in time loses nothing). Metadata at start (partitions,
    watermarks) fails within `metadata_timeout_s` with a `Fault` naming the problem.
    """

    PART = "all"

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        *,
        batch_size: int = 10_000,
        tail: bool | None = None,
        speed: float | None = None,
        outage_s: float = 30.0,
        metadata_timeout_s: float = 5.0,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise ValueError(f"end_ms {end_ms} < start_ms {start_ms}")
        if tail and end_ms is not None:
            raise ValueError("tail=True needs end_ms=None")
        if outage_s <= 0:
            raise ValueError("outage_s must be > 0")
        check_speed(speed)
        self.bootstrap = bootstrap
        self.topic = topic
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.batch_size = batch_size
        self.tail = end_ms is None if tail is None else tail
        self.speed = speed
        self.outage_s = outage_s
        self.metadata_timeout_s = metadata_timeout_s
        self._config = dict(consumer_config or {})

    def list_parts(self) -> list[str]:
        return [self.PART]

    def watermarks(self) -> dict[int, tuple[int, int]]:
        """`{partition: (log start, high watermark)}` now (a kafka `Fault` if unavailable)."""
        return topic_watermarks(
            self.bootstrap, self.topic, timeout_s=self.metadata_timeout_s, config=self._config
        )

    def build_part(
        self, step_id: str, for_part: str, resume_state: State | None
    ) -> _RangePartition:
        if for_part != self.PART:
            raise ValueError(f"unknown partition {for_part!r} of {self!r}")
        if resume_state is not None and not isinstance(resume_state, dict):
            raise ValueError(
                f"resume state {resume_state!r} of {self.topic} is not this source's "
                "(a snapshot of an older cryptoflow?)"
            )
        marks = self.watermarks()  # also checks the broker and the topic before any work
        if resume_state is None:
            state: State = {
                "starts": {p: lo for p, (lo, _hi) in marks.items()},
                "ends": {p: hi for p, (_lo, hi) in marks.items()},
                "emitted": 0,
                "origin": self.start_ms,
            }
        else:
            state = dict(resume_state)
            if "live" in state:
                # Partitions added since the snapshot are read from their log start.
                live = {int(p): int(o) for p, o in state["live"].items()}
                state["live"] = {p: live.get(p, lo) for p, (lo, _hi) in marks.items()}
            else:
                for p, start in state["starts"].items():
                    lo = marks.get(int(p), (start, start))[0]
                    if lo > int(start):
                        raise raise_fault(
                            "kafka",
                            f"cannot resume the replay of {self.topic}: partition {p} now "
                            f"starts at offset {lo}, the snapshot read it from {start} "
                            "(retention removed records)",
                            f"the retention of {self.topic} (project topics keep data forever)",
                        )
        return _RangePartition(self, state)

    def __repr__(self) -> str:
        return f"KafkaRangeSource({self.topic!r}, {self.start_ms}, {self.end_ms}, tail={self.tail})"


_KAFKA_CHECK = "that the broker is running (cryptoflow infra status) and KAFKA_BOOTSTRAP"


class DeliveryFault(DeliveryError, Fault):
    """An undelivered sink batch: both the `DeliveryError` it is and the one-line `Fault`."""

    def __init__(self, what: str, check: str, err: DeliveryError) -> None:
        Fault.__init__(self, "kafka", what, check)
        self.failed = err.failed
        self.undelivered = err.undelivered
        self.first_error = err.first_error


def _kafka_error_text(err: Any) -> str:
    if isinstance(err, KafkaError):
        return f"{err.name()}: {err.str()}"
    return " ".join(str(err).split()) if err is not None else "no acknowledgement"


_OUTAGE_CODES = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
    }
)


class _CheckedSinkPartition(StatelessSinkPartition[SinkItem]):
    def __init__(
        self,
        producer: CheckedProducer,
        topic: str,
        headers: list[tuple[str, bytes]] | None,
        flush_timeout_s: float,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._headers = headers
        self._timeout = flush_timeout_s
        self._dead = False  # after a fault: nothing more is sent, teardown never waits

    def _flush(self) -> None:
        try:
            self._producer.flush(self._timeout)
        except DeliveryError as err:
            self._dead = True
            self._producer.abort()
            raise self._fault(err) from err

    def _fault(self, err: DeliveryError) -> DeliveryFault:
        n = err.failed + err.undelivered
        first = err.first_error
        code = first.code() if isinstance(first, KafkaError) else None
        if first is None or code in _OUTAGE_CODES:
            waited = self._producer.message_timeout_s
            what = (
                f"{n} messages to {self._topic} not acknowledged for {waited:g} s "
                f"({_kafka_error_text(first)})"
            )
            check = _KAFKA_CHECK
        else:
            what = f"{n} messages to {self._topic} rejected ({_kafka_error_text(first)})"
            check = f"the settings of topic {self._topic} (e.g. max.message.bytes) and the broker"
        fault = DeliveryFault(what, check, err)
        raise_fault(fault.component, fault.what, fault.check)  # the process's first fault wins
        return fault

    def write_batch(self, items: list[SinkItem]) -> None:
        if self._dead:
            return
        rows = ((it[0], it[1], it[2] if len(it) > 2 else None) for it in items)
        self._producer.produce_many(self._topic, rows, self._headers)  # type: ignore[arg-type]
        self._flush()  # raises DeliveryFault: the dataflow fails with a one-line cause

    def close(self) -> None:
        # After a fault anywhere, Bytewax calls this while unwinding: never wait on the broker
        # and never raise there (a second exception aborts the process).
        if self._dead or faults.first() is not None:
            self._producer.abort()
            return
        self._flush()


class KafkaCheckedSink(DynamicSink[SinkItem]):
    """Write `(key, value[, timestamp_ms])` items to one topic, verifying every delivery.

    Each worker has its own idempotent producer. `headers` (a mapping or `(name, value)` pairs,
    e.g. run_id) are added to every message. A failed or timed-out delivery raises
    `DeliveryFault` (a `DeliveryError` and an `infra.faults.Fault`) from `write_batch`.

    `outage_s` (cfg.kafka.outage_s) is how long the broker may be away: messages wait for it
    that long (a broker back in time loses nothing), and a flush waits at most a few seconds
    more; without it, `flush_timeout_s` bounds the flush and librdkafka's defaults apply.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]] | None = None,
        producer_config: Mapping[str, Any] | None = None,
        flush_timeout_s: float | None = None,
        outage_s: float | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
        self._headers = [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs] or None
        self._config = dict(producer_config or {})
        self.outage_s = outage_s
        if flush_timeout_s is None:
            # Past message.timeout.ms every message is either acked or failed: a few seconds
            # more lets the failure reports arrive, so the error names the cause.
            flush_timeout_s = 30.0 if outage_s is None else outage_s + min(5.0, outage_s)
        self._timeout = flush_timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CheckedSinkPartition:
        producer = CheckedProducer(self.bootstrap, self._config, outage_s=self.outage_s)
        return _CheckedSinkPartition(producer, self.topic, self._headers, self._timeout)
