"""Bytewax 0.21 sink writing message structs to ClickHouse through `infra.clickhouse.BatchWriter`.

The sink has ONE partition, so exactly one worker (whichever owns it) writes, however many
workers run: Bytewax routes every item there.

Item shape. `FixedPartitionedSink` consumes `(key, value)` 2-tuples; the key (a str) only
routes (`part_fn` ignores it: always partition 0) and Bytewax strips it, handing the partition
just the values. So the value must say which table it goes to. Two ways:

- `op.output("ch", stream, sink)` with items `(table_name, struct)` or
  `(table_name, [struct, ...])`: the value is the struct (or list) and the table is looked up
  from its class (`TABLE_BY_CLASS`; one table per message class). The key is not checked.
- `clickhouse_output("ch", stream, sink)` with the same items: the table name is kept in the
  value, so it is authoritative (use this if a class is ever stored in several tables).

Delivery: the partition flushes all buffers in `snapshot()` (end of every epoch) and in
`close()`, so rows of a committed epoch are in ClickHouse before recovery could skip past them.
Tables are idempotent on replay (ReplacingMergeTree by natural key), so at-least-once is enough.
Time-based flushes happen only when items arrive (a sink has no timer); the epoch snapshot
bounds the staleness to one epoch interval.

Faults: connecting and every insert are retried `retries` times with backoff from
`retry_backoff_s` (cfg.clickhouse), then the step raises a one-line `infra.faults.Fault`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Stream, operator
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from infra import faults
from infra.clickhouse import (
    TABLE_BY_CLASS,
    BatchWriter,
    ClickHouseError,
    connect,
    ensure_tables,
    fault_for,
)
from infra.faults import Fault
from schemas.blocks import RowBlock, class_of

PART = "clickhouse"


def _table_of(item: msgspec.Struct | RowBlock) -> str:
    table = TABLE_BY_CLASS.get(class_of(item))
    if table is None:
        raise ClickHouseError(f"no ClickHouse table stores {class_of(item).__name__}")
    return table.name


class _ClickHousePartition(StatefulSinkPartition[Any, None]):
    """After a fault (here or anywhere in the process) `close()` writes nothing and never
    raises: Bytewax calls it while unwinding from the failure, and a second exception there is
    a "panic in a destructor", which aborts the process (chDB's abort handler then stalls it
    for minutes). The rows of the failed epoch are not committed; a rerun or resume replays
    them (idempotent tables)."""

    def __init__(self, writer: BatchWriter) -> None:
        self.writer = writer
        self._dead = False

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except BaseException:
            self._dead = True
            raise

    def write_batch(self, values: list[Any]) -> None:
        if self._dead:
            return
        self._guard(lambda: self._write(values))

    def _write(self, values: list[Any]) -> None:
        add = self.writer.add
        for value in values:
            if isinstance(value, tuple):  # (table_name, struct | [structs]) from clickhouse_output
                table, payload = value
                add(table, payload)
            elif isinstance(value, (msgspec.Struct, RowBlock)):
                add(_table_of(value), value)
            elif value:  # a non-empty list of structs, all of the first one's class
                add(_table_of(value[0]), value)
        # add() checks the size/age thresholds; this also catches a table that got no rows now.
        self.writer.flush_due()

    def snapshot(self) -> None:
        # No resume position: replays are idempotent. Flushing makes the epoch durable.
        if not self._dead:
            self._guard(self.writer.flush)
        return None

    def close(self) -> None:
        if self._dead or faults.first() is not None:
            return
        self._guard(self.writer.flush)


class ClickHouseSink(FixedPartitionedSink[Any, None]):
    """Writes `(table_name, struct | list[struct])` items (see module doc) to `database`."""

    def __init__(
        self,
        dsn: str,
        database: str,
        run_id: str,
        batch_rows: int = 1000,
        batch_seconds: float = 1.0,
        *,
        retries: int | None = None,
        retry_backoff_s: float | None = None,
    ) -> None:
        self.dsn = dsn
        self.database = database
        self.run_id = run_id
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.retries = retries  # None: infra.clickhouse's process default
        self.retry_backoff_s = retry_backoff_s
        self.writer: BatchWriter | None = None  # the built partition's writer (tests, metrics)

    def list_parts(self) -> list[str]:
        # Every worker may list it; Bytewax builds it on exactly one of them.
        return [PART]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> StatefulSinkPartition[Any, None]:
        client = connect(
            self.dsn, self.database, retries=self.retries, backoff_s=self.retry_backoff_s
        )
        try:
            ensure_tables(client, self.database)
        except Fault:
            raise
        except Exception as ex:
            raise fault_for(client, f"creating the tables of {self.database}", ex) from ex
        self.writer = BatchWriter(
            client,
            self.database,
            self.run_id,
            self.batch_rows,
            self.batch_seconds,
            retries=self.retries,
            retry_backoff_s=self.retry_backoff_s,
        )
        return _ClickHousePartition(self.writer)


@operator
def clickhouse_output(
    step_id: str,
    up: Stream[tuple[str, msgspec.Struct | Iterable[msgspec.Struct]]],
    sink: ClickHouseSink,
) -> None:
    """Write `(table_name, struct | list[struct])` items, keeping the table name explicit."""
    keyed = op.map("key", up, lambda item: (PART, item))
    op.output("sink", keyed, sink)
