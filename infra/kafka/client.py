"""confluent-kafka producer that never loses messages silently (`CheckedProducer`).

Reads live in `infra.kafka.reader` (re-exported here); no Bytewax in either: `dataflows.io.kafka`
wraps them for dataflows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import (
    KafkaError,
    KafkaException,
    Message,
    Producer,
)

Headers = Mapping[str, str | bytes] | list[tuple[str, str | bytes]] | None


_PRODUCER_LOG = logging.getLogger("cryptoflow.kafka.producer")
_PRODUCER_LOG.addHandler(logging.NullHandler())


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
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            **PRODUCER_DEFAULTS,
            # librdkafka's own log lines (a refused connection every 50 ms) go through Python
            # logging: the CLI's details log, never the user's terminal.
            "logger": _PRODUCER_LOG,
        }
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


# Reads, re-exported so `from infra.kafka.client import TimeRangeReader` keeps working.
from infra.kafka.reader import (  # noqa: E402
    BROKER_CHECK,
    Record,
    TimeRangeReader,
    TopicReader,
    consumer_config,
    partition_bounds,
    topic_partitions,
    topic_watermarks,
)

__all__ = [
    "BROKER_CHECK",
    "PRODUCER_DEFAULTS",
    "CheckedProducer",
    "DeliveryError",
    "Record",
    "TimeRangeReader",
    "TopicReader",
    "consumer_config",
    "partition_bounds",
    "topic_partitions",
    "topic_watermarks",
]
