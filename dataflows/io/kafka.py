"""Bytewax 0.21 source and sink for Kafka, built on `infra.kafka.client`.

`KafkaRangeSource` emits one item per poll: a *list* of `RawMessage`s, so Bytewax's per-item
cost is paid per batch (flatten downstream where per-message routing is needed). One Bytewax
partition per Kafka partition; the resume state is the next offset to read.

`KafkaCheckedSink` fixes the stock `KafkaSink`, which drops undelivered messages silently: every
`write_batch` flushes and raises `DeliveryError` unless the broker acknowledged everything.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaException

from dataflows.io.pacing import Pace, check_speed
from infra.kafka.client import (
    CheckedProducer,
    DeliveryError,
    PartitionReader,
    first_timestamp_ms,
    partition_bounds,
    topic_partitions,
)

__all__ = ["DeliveryError", "KafkaCheckedSink", "KafkaRangeSource", "RawMessage", "SinkItem"]


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


class _RangePartition(StatefulSourcePartition[list[RawMessage], int]):
    def __init__(
        self, reader: PartitionReader, speed: float | None = None, origin_ms: int = 0
    ) -> None:
        self._reader = reader
        self._awake: datetime | None = None
        self._backoff = _MIN_BACKOFF
        # Paced replay: messages not yet due wait in `_pending` (read no further meanwhile,
        # so memory stays one batch).
        self._pace = Pace(speed, origin_ms * 1_000_000) if speed is not None else None
        self._pending: list[RawMessage] = []

    def _read(self) -> list[RawMessage]:
        reader = self._reader
        msgs = reader.read_raw(0.0)  # never block: other partitions share this worker thread
        part = reader.partition
        return [
            RawMessage(
                k.decode() if (k := m.key()) is not None else None,
                m.value(),
                m.timestamp()[1],
                part,
                m.offset(),
            )
            for m in msgs
        ]

    def next_batch(self) -> list[list[RawMessage]]:
        batch = self._pending or self._read()
        self._pending = []
        if not batch:
            if self._reader.done:
                raise StopIteration
            # Nothing buffered yet: sleep via next_awake instead of spinning on empty polls.
            self._awake = datetime.now(UTC) + self._backoff
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
            return []
        self._backoff = _MIN_BACKOFF
        self._awake = None
        if self._pace is not None:
            ts = np.fromiter((m.timestamp_ms for m in batch), np.int64, len(batch)) * 1_000_000
            due = self._pace.due(ts)
            if due < len(batch):
                self._pending = batch[due:]
                self._awake = self._pace.wake_at(int(ts[due]))
                batch = batch[:due]
                if not batch:
                    return []
        return [batch]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._pending[0].offset if self._pending else self._reader.next_offset

    def close(self) -> None:
        self._reader.close()


class KafkaRangeSource(FixedPartitionedSource[list[RawMessage], int]):
    """Read one topic between `start_ms` and `end_ms` (half-open, record timestamps).

    `end_ms=None` tails forever (live) unless `tail=False`, which stops at the high watermark
    seen when the partition is built. `start_ms=None` starts at the beginning of the log.
    Items are lists of up to `batch_size` `RawMessage`s from one partition, in offset order.
    `speed` paces a replay: event time advances `speed` x wall time from `start_ms` (or the
    topic's first timestamp); None = as fast as possible.
    """

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
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise ValueError(f"end_ms {end_ms} < start_ms {start_ms}")
        if tail and end_ms is not None:
            raise ValueError("tail=True needs end_ms=None")
        check_speed(speed)
        self.bootstrap = bootstrap
        self.topic = topic
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.batch_size = batch_size
        self.tail = end_ms is None if tail is None else tail
        self.speed = speed
        self._config = dict(consumer_config or {})

    def list_parts(self) -> list[str]:
        try:
            return [str(p) for p in topic_partitions(self.bootstrap, self.topic)]
        except KafkaException as exc:
            raise RuntimeError(
                f"cannot list partitions of Kafka topic {self.topic!r}: {exc}"
            ) from exc

    @functools.cached_property
    def _origin_ms(self) -> int:
        # Same answer on every worker: the earliest first record over all partitions (looked up
        # once per process, not once per partition).
        if self.start_ms is not None:
            return self.start_ms
        bounds = partition_bounds(self.bootstrap, self.topic, None, None, config=self._config)
        first = first_timestamp_ms(self.bootstrap, self.topic, bounds, config=self._config)
        return first or 0

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _RangePartition:
        part = int(for_part)
        end_ms = None if self.tail else self.end_ms
        # The start offset is only needed on a fresh start; the end offset always (bounded).
        need_start = resume_state is None and self.start_ms is not None
        first, end = 0, None
        if need_start or not self.tail:
            try:
                first, end = partition_bounds(
                    self.bootstrap,
                    self.topic,
                    self.start_ms if need_start else None,
                    end_ms,
                    partitions=[part],
                    config=self._config,
                )[part]
            except KafkaException as exc:
                raise RuntimeError(f"offsets for {self.topic}[{part}]: {exc}") from exc
        if resume_state is not None:
            first = resume_state
        elif self.start_ms is None and self.tail:
            first = 0  # log start; auto.offset.reset clamps it past retention
        reader = PartitionReader(
            self.bootstrap,
            self.topic,
            part,
            first,
            None if self.tail else end,
            batch_size=self.batch_size,
            start_ms=self.start_ms,
            end_ms=end_ms,
            config={"auto.offset.reset": "earliest", **self._config},
        )
        origin = self._origin_ms if self.speed is not None else 0
        return _RangePartition(reader, self.speed, origin)


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

    def write_batch(self, items: list[SinkItem]) -> None:
        rows = ((it[0], it[1], it[2] if len(it) > 2 else None) for it in items)
        self._producer.produce_many(self._topic, rows, self._headers)  # type: ignore[arg-type]
        self._producer.flush(self._timeout)  # raises DeliveryError: the dataflow fails loudly

    def close(self) -> None:
        self._producer.flush(self._timeout)


class KafkaCheckedSink(DynamicSink[SinkItem]):
    """Write `(key, value[, timestamp_ms])` items to one topic, verifying every delivery.

    Each worker has its own idempotent producer. `headers` (a mapping or `(name, value)` pairs,
    e.g. run_id) are added to every message. A failed or timed-out delivery raises
    `DeliveryError` from `write_batch`.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]] | None = None,
        producer_config: Mapping[str, Any] | None = None,
        flush_timeout_s: float = 30.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
        self._headers = [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs] or None
        self._config = dict(producer_config or {})
        self._timeout = flush_timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CheckedSinkPartition:
        producer = CheckedProducer(self.bootstrap, self._config)
        return _CheckedSinkPartition(producer, self.topic, self._headers, self._timeout)
