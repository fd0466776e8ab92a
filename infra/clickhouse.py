"""ClickHouse storage: connection, DDL generated from the wire schemas, batched verified inserts.

One code path for an embedded chDB (`chdb:///abs/path`) and a server (`http://host:8123`):
everything goes through clickhouse-connect. Tables are `ReplacingMergeTree` ordered by each
message's natural key, so replaying an epoch (at-least-once delivery) leaves `FINAL` results
unchanged. Read with `FINAL` (see `count_final`) until background merges have collapsed
duplicates.

chDB runs ONE data path per process: `connect` caches one client per DSN and refuses a second
chDB path with a clear error. Several processes (or paths) need a ClickHouse server.

Faults (docs/faults.md): `connect` and `BatchWriter` retry a failed connect or insert a bounded
number of times with exponential backoff (`set_retry_defaults`, or per call), then raise a
one-line `infra.faults.Fault` naming the DSN or table, the cause and what to check.
"""

from __future__ import annotations

import functools
import logging
import time
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal

import msgspec
import numpy as np
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from infra.clickhouse_client import (  # re-exported: callers import them from here
    ClickHouseError,
    ClickHouseWriteError,
    Retry,
    _quote,
    _retry,
    close_all,
    connect,
    fault_for,
    set_retry_defaults,
)
from schemas.blocks import RowBlock, class_of, expand
from schemas.messages import (
    Bar,
    DeadLetter,
    EquityPoint,
    FeatureRow,
    FeatureSetInfo,
    Fill,
    Liquidation,
    Metric,
    ModelInfo,
    Order,
    OrderDenied,
    OrderExpired,
    PositionSnapshot,
    Prediction,
    RoundTrip,
    RunInfo,
    Signal,
    Trade,
    TradingStateChanged,
)

__all__ = [
    "TABLES",
    "TABLE_BY_CLASS",
    "BatchWriter",
    "ClickHouseError",
    "ClickHouseWriteError",
    "Retry",
    "Table",
    "clear_run",
    "close_all",
    "column_type",
    "columns_for",
    "connect",
    "count_final",
    "create_table_sql",
    "ensure_tables",
    "fault_for",
    "query_df",
    "rows_for",
    "set_retry_defaults",
    "table_columns",
]

log = logging.getLogger(__name__)

DATETIME = "DateTime64(9, 'UTC')"  # spelled as system.columns reports it, so DDL checks compare
LOW_CARDINALITY_NAMES = frozenset(
    {
        "symbol",
        "side",
        "venue",
        "strategy",
        "account",
        "source",
        "rule",
        "mode",
        "liquidity",
        "order_type",
        "aggressor",
        "name",  # Metric.name: a small fixed set of metric names
        "feature_set",
        "version",
        "producer",
        "model",
        "model_version",
        "feature_version",
        "kind",
        "exit_reason",  # RoundTrip: a handful of exit causes
    }
)
TIME_NAMES = frozenset({"start", "end"})


# --------------------------------------------------------------------------- schema → DDL


def column_type(name: str, python_type: Any) -> str:
    """ClickHouse type of a message field (from its resolved annotation)."""
    origin = typing.get_origin(python_type)
    if origin is Literal:
        values = typing.get_args(python_type)
        if all(isinstance(v, str) for v in values):
            return "LowCardinality(String)"
        raise TypeError(f"field {name!r}: only Literal[str, ...] is supported, got {python_type}")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(python_type) if a is not type(None)]
        if len(args) == 1:
            inner = column_type(name, args[0])
            if inner.startswith("LowCardinality("):
                return f"LowCardinality(Nullable({inner[len('LowCardinality(') : -1]}))"
            return f"Nullable({inner})"
        raise TypeError(f"field {name!r}: unions are not supported, got {python_type}")
    if origin in (tuple, list):
        args = [a for a in typing.get_args(python_type) if a is not Ellipsis]
        if len(args) == 1:
            return f"Array({column_type(name, args[0])})"
        raise TypeError(f"field {name!r}: only homogeneous sequences are supported")
    if python_type is bool:  # before int: bool is an int subclass
        return "Bool"
    if python_type is int:
        return DATETIME if name.startswith("ts_") or name in TIME_NAMES else "Int64"
    if python_type is float:
        return "Float64"
    if python_type is str:
        return "LowCardinality(String)" if name in LOW_CARDINALITY_NAMES else "String"
    raise TypeError(f"field {name!r}: no ClickHouse type for {python_type!r}")


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    message_cls: type[msgspec.Struct]
    order_by: tuple[str, ...]  # the natural key (column names or expressions)


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table("trades", Trade, ("run_id", "symbol", "trade_id")),
        Table("bars", Bar, ("run_id", "symbol", "interval_ns", "ts_event")),
        Table("signals", Signal, ("run_id", "strategy", "symbol", "ts_event")),
        Table("orders", Order, ("run_id", "order_id")),
        Table("order_denials", OrderDenied, ("run_id", "intent_id")),
        Table("fills", Fill, ("run_id", "fill_id")),
        Table("order_expiries", OrderExpired, ("run_id", "order_id")),
        Table("liquidations", Liquidation, ("run_id", "account", "symbol", "ts_event")),
        Table(
            "trading_state", TradingStateChanged, ("run_id", "account", "symbol", "ts_event", "new")
        ),
        Table("positions", PositionSnapshot, ("run_id", "symbol", "ts_event")),
        Table("equity", EquityPoint, ("run_id", "account", "ts_event")),
        Table("metrics", Metric, ("run_id", "name", "labels", "ts_event")),
        Table(
            "dead_letters",
            DeadLetter,
            # origin is unique per input record: identical bad payloads stay separate rows,
            # while a rerun (same origins) replaces its own rows
            ("run_id", "source", "origin", "ts_init"),
        ),
        Table("runs", RunInfo, ("run_id",)),
        Table("features", FeatureRow, ("run_id", "version", "symbol", "ts_event")),
        Table("feature_sets", FeatureSetInfo, ("run_id", "version")),
        Table("predictions", Prediction, ("run_id", "producer", "symbol", "ts_event")),
        Table("models", ModelInfo, ("run_id", "name", "version")),
        Table("round_trips", RoundTrip, ("run_id", "symbol", "trip_id")),
    )
}
TABLE_BY_CLASS: dict[type[msgspec.Struct], Table] = {t.message_cls: t for t in TABLES.values()}


def _table(table: Table | str) -> Table:
    if isinstance(table, Table):
        return table
    try:
        return TABLES[table]
    except KeyError:
        raise ClickHouseError(f"unknown table {table!r}; known: {sorted(TABLES)}") from None


@functools.cache
def _layout(table: Table) -> tuple[tuple[tuple[str, str], ...], bool]:
    """((column, type), ...) with run_id first, and whether run_id comes from the struct."""
    hints = typing.get_type_hints(table.message_cls, include_extras=False)
    fields = [
        (f.name, column_type(f.name, hints[f.name]))
        for f in msgspec.structs.fields(table.message_cls)
    ]
    own = bool(fields) and fields[0][0] == "run_id"
    if any(name == "run_id" for name, _ in fields) and not own:
        raise ClickHouseError(f"{table.message_cls.__name__}.run_id must be its first field")
    if own:
        fields[0] = ("run_id", "LowCardinality(String)")
        return tuple(fields), True
    return (("run_id", "LowCardinality(String)"), *fields), False


def table_columns(table: Table | str) -> list[tuple[str, str]]:
    """[(column, ClickHouse type), ...] of a table, run_id first."""
    return list(_layout(_table(table))[0])


def create_table_sql(table: Table | str, database: str) -> str:
    t = _table(table)
    cols = ",\n    ".join(f"{_quote(n)} {typ}" for n, typ in table_columns(t))
    key = t.order_by[0] if len(t.order_by) == 1 else f"({', '.join(t.order_by)})"
    return (
        f"CREATE TABLE IF NOT EXISTS {_quote(database)}.{_quote(t.name)} (\n    {cols}\n)\n"
        f"ENGINE = ReplacingMergeTree\nORDER BY {key}"
    )


def ensure_tables(
    client: Client, database: str, tables: Iterable[Table | str] | None = None
) -> None:
    """Create the database and every (or the given) table if missing; with every table, also
    the analytics views over them (infra/clickhouse_views.py). Idempotent."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {_quote(database)}")
    for t in tables if tables is not None else TABLES.values():
        client.command(create_table_sql(t, database))
    if tables is None:
        from infra.clickhouse_views import ensure_views

        ensure_views(client, database)


# --------------------------------------------------------------------------- rows

_astuple = msgspec.structs.astuple


def rows_for(
    table: Table | str, structs: Iterable[msgspec.Struct], run_id: str = ""
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column_names, rows) for a row-oriented `client.insert`, run_id prepended to each row.

    Tables whose message carries its own `run_id` (runs) use the struct's value and ignore
    `run_id`. Structs must be of the table's message class (BatchWriter checks this).
    """
    layout, own = _layout(_table(table))
    names = [n for n, _ in layout]
    if own:
        return names, list(map(_astuple, structs))
    return names, [(run_id, *_astuple(s)) for s in structs]


@functools.cache
def _getters(table: Table) -> tuple[Callable[[Any], Any], ...]:
    return tuple(attrgetter(f.name) for f in msgspec.structs.fields(table.message_cls))


def columns_for(
    table: Table | str, structs: Sequence[msgspec.Struct], run_id: str = ""
) -> tuple[list[str], list[list[Any]]]:
    """(column_names, columns) for `client.insert(..., column_oriented=True)`.

    What BatchWriter uses: clickhouse-connect serializes columns ~4x faster than rows (it
    would transpose rows in Python), and one attrgetter pass per field is as fast as astuple.
    """
    t = _table(table)
    layout, own = _layout(t)
    columns = [list(map(g, structs)) for g in _getters(t)]
    if not own:
        columns.insert(0, [run_id] * len(structs))
    return [n for n, _ in layout], columns


_ARROW_TYPES: dict[str, Any] = {
    "Int64": pa.int64(),
    "Float64": pa.float64(),
    "Bool": pa.bool_(),
    "String": pa.string(),
    "LowCardinality(String)": pa.string(),
}


def _list_array(values: list[Any], typ: Any) -> Any:
    """Rows of equal-width float tuples (feature values) as one list array built from a 2-D
    numpy array: twice as fast as pyarrow's walk of nested Python sequences. Anything else
    (ragged rows, None, other element types, > 2**31 values) goes through `pa.array`."""
    if values and pa.types.is_float64(typ.value_type):
        try:
            flat = np.array(values)
        except ValueError:  # ragged
            flat = None
        if flat is not None and flat.dtype == np.float64 and flat.ndim == 2 and flat.size < 2**31:
            n, width = flat.shape
            offsets = pa.array(np.arange(n + 1, dtype=np.int32) * np.int32(width))
            return pa.ListArray.from_arrays(offsets, pa.array(flat.ravel()), type=typ)
    return pa.array(values, typ)


def arrow_for(
    table: Table | str,
    structs: Sequence[msgspec.Struct],
    run_id: str = "",
    blocks: Sequence[RowBlock] = (),
) -> Any:
    """A pyarrow Table for `client.insert_arrow` (the structs' rows, then each block's), or None
    if a column type has no mapping.

    Arrow is converted to columns in C++ by ClickHouse itself; the Native path serializes in
    Python (LowCardinality dictionaries especially), ~30% slower on chDB for bars. A block's
    columns become arrays directly, without a struct (its constants: one repeated scalar).
    """
    t = _table(table)
    layout, own = _layout(t)
    types = []
    for _, typ in layout:
        if typ == DATETIME:
            types.append(pa.int64())
        elif typ in _ARROW_TYPES:
            types.append(_ARROW_TYPES[typ])
        elif typ.startswith("Array(") and typ[6:-1] in _ARROW_TYPES:
            types.append(pa.list_(_ARROW_TYPES[typ[6:-1]]))
        else:
            return None
    names = [n for n, _ in layout]
    n = len(structs) + sum(map(len, blocks))
    if n == 0:
        return None
    # One array per column over every row: a table of many small chunks (one per block) costs
    # chDB's Arrow import about twice as much as the same rows in one chunk.
    struct_cols = columns_for(t, structs, run_id)[1] if structs else [[] for _ in names]
    arrays = []
    for name, typ, head in zip(names, types, struct_cols, strict=True):
        if name == "run_id" and not own:
            arrays.append(pa.repeat(pa.scalar(run_id, typ), n))
            continue
        constant = not structs and all(name in b.const for b in blocks)  # blocks only: n > 0
        if constant and len({repr(b.const[name]) for b in blocks}) == 1:  # one value, every row
            arrays.append(pa.repeat(pa.scalar(blocks[0].const[name], typ), n))
            continue
        values = list(head)
        for b in blocks:
            values.extend(b.column(name))
        arrays.append(_list_array(values, typ) if pa.types.is_list(typ) else pa.array(values, typ))
    ts = pa.timestamp("ns", tz="UTC")  # int ns since the epoch: the same bits
    return pa.Table.from_arrays(
        [a.view(ts) if typ == DATETIME else a for a, (_, typ) in zip(arrays, layout, strict=True)],
        names=names,
    )


# --------------------------------------------------------------------------- writer


class BatchWriter:
    """Buffers structs per table and inserts them in verified batches.

    A table is flushed when it holds >= `batch_rows` rows or its oldest buffered row is
    >= `batch_seconds` old; both are checked (for every table) on each `add`. Call `flush()`
    at the end, and `flush_due()` from a timer if input can pause. Not thread-safe: use one
    writer per thread (the Bytewax sink uses one partition, hence one writer).

    A failed insert is retried `retries` times, backing off from `retry_backoff_s` (doubling,
    capped at 8 s; defaults: `set_retry_defaults`). The rows stay buffered meanwhile, and a
    re-sent insert is safe (ReplacingMergeTree by natural key). When every attempt failed, a
    `Fault` naming the table and the cause is raised (its `__cause__` is a
    `ClickHouseWriteError`); the rows are still buffered, so a later `flush` may deliver them.
    """

    def __init__(
        self,
        client: Client,
        database: str,
        run_id: str,
        batch_rows: int = 1000,
        batch_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        retries: int | None = None,
        retry_backoff_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if batch_rows <= 0 or batch_seconds <= 0:
            raise ValueError("batch_rows and batch_seconds must be > 0")
        if not run_id:
            raise ValueError("run_id must not be empty: it is part of every natural key")
        self.client = client
        self.database = database
        self.run_id = run_id
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self._clock = clock
        self._retry = _retry(retries, retry_backoff_s)
        self._sleep = sleep
        self._buffers: dict[str, list[msgspec.Struct]] = {}
        self._blocks: dict[str, list[RowBlock]] = {}  # columnar rows, written as Arrow arrays
        self._block_rows: dict[str, int] = {}  # rows in _blocks, per table
        self._oldest: dict[str, float] = {}  # table -> clock() when its buffer became non-empty
        self.written: dict[str, int] = {}  # rows confirmed written, per table
        self.inserts = 0  # number of insert statements issued

    def add(
        self,
        table_name: str,
        structs: msgspec.Struct | RowBlock | Iterable[msgspec.Struct | RowBlock],
    ) -> None:
        """Buffer one struct, one `RowBlock`, or many of either (all of the table's class)."""
        table = _table(table_name)
        cls = table.message_cls
        if isinstance(structs, msgspec.Struct | RowBlock):
            structs = [structs]
        items = structs if isinstance(structs, list) else list(structs)
        rows = [s for s in items if type(s) is cls]
        blocks: list[RowBlock] = []
        if len(rows) != len(items):
            blocks = [b for b in items if type(b) is RowBlock and b.cls is cls]
            if len(rows) + len(blocks) != len(items):
                bad = next(s for s in items if class_of(s) is not cls)
                raise ClickHouseError(
                    f"table {table.name!r} takes {cls.__name__}, got {class_of(bad).__name__}"
                )
            blocks = [b for b in blocks if len(b)]
        if rows:
            self._buffers.setdefault(table.name, []).extend(rows)
        if blocks:
            self._blocks.setdefault(table.name, []).extend(blocks)
            self._block_rows[table.name] = self._block_rows.get(table.name, 0) + sum(
                map(len, blocks)
            )
        if rows or blocks:
            self._oldest.setdefault(table.name, self._clock())
        self.flush_due()

    def _count(self, name: str) -> int:
        return len(self._buffers.get(name, ())) + self._block_rows.get(name, 0)

    def pending(self) -> dict[str, int]:
        """Buffered (not yet inserted) rows per table."""
        counts = {name: self._count(name) for name in {*self._buffers, *self._blocks}}
        return {name: n for name, n in counts.items() if n}

    def flush_due(self) -> int:
        """Flush the tables past a threshold; returns rows written."""
        now, rows, age = self._clock(), self.batch_rows, self.batch_seconds
        due = [n for n, t in self._oldest.items() if self._count(n) >= rows or now - t >= age]
        return sum(self._flush_table(name) for name in due)

    def flush(self) -> int:
        """Flush every table; returns rows written."""
        return sum(self._flush_table(name) for name in list(self._oldest))

    def _flush_table(self, name: str) -> int:
        buf = self._buffers.get(name, [])
        blocks = self._blocks.get(name, [])
        if not buf and not blocks:
            return 0
        delays = self._retry.delays()
        for attempt in range(len(delays) + 1):
            try:
                n = self._insert(name, buf, blocks)
                break
            except ClickHouseWriteError as err:
                if attempt == len(delays):
                    what = f"insert of {err.rows} rows into {err.table}" + (
                        f" ({attempt + 1} attempts)" if attempt else ""
                    )
                    raise fault_for(self.client, what, err) from err
                log.warning("%s; retrying in %.1f s", err, delays[attempt])
                self._sleep(delays[attempt])
        buf.clear()
        blocks.clear()
        self._block_rows.pop(name, None)
        self._oldest.pop(name, None)
        self.written[name] = self.written.get(name, 0) + n
        return n

    def _insert(self, name: str, buf: list[msgspec.Struct], blocks: list[RowBlock]) -> int:
        """One insert of the whole buffer; raises ClickHouseWriteError (the buffer is kept)."""
        table = TABLES[name]
        n = len(buf) + sum(map(len, blocks))
        try:
            arrow = arrow_for(table, buf, self.run_id, blocks)
            if arrow is None and blocks:  # a column type without an Arrow mapping: as structs
                buf = [*buf, *expand(blocks)]
            if arrow is not None:
                summary = self.client.insert_arrow(name, arrow, database=self.database)
            else:
                column_names, columns = columns_for(table, buf, self.run_id)
                # Passing the types skips clickhouse-connect's DESCRIBE round trip per insert.
                summary = self.client.insert(
                    name,
                    columns,
                    column_names=column_names,
                    database=self.database,
                    column_type_names=[typ for _, typ in _layout(table)[0]],
                    column_oriented=True,
                )
        except Exception as ex:  # rows stay buffered: a retry re-sends them (idempotent tables)
            raise ClickHouseWriteError(
                f"{self.database}.{name}", n, f"{type(ex).__name__}: {ex}"
            ) from ex
        self.inserts += 1
        # chDB and HTTP both report written_rows for synchronous inserts. Materialized views may
        # add to it, so only fewer rows is an error. Without the key (a server or proxy that
        # drops the summary) the absence of an exception is the only signal: a synchronous
        # insert that returns normally has committed.
        reported = summary.summary.get("written_rows") if summary is not None else None
        if reported is not None and int(reported) < n:
            raise ClickHouseWriteError(
                f"{self.database}.{name}", n, f"server reports only {reported} rows written"
            )
        if reported is None:
            log.debug("no written_rows in insert summary for %s; trusting the insert", name)
        return n


# --------------------------------------------------------------------------- queries


def query_df(
    client: Client, sql: str, parameters: dict[str, Any] | Sequence[Any] | None = None
) -> Any:
    """Run a query and return a polars DataFrame (LowCardinality columns as plain strings).

    `parameters` binds `{name:Type}` server-side placeholders (or `%(name)s` client-side).
    """
    import polars as pl  # heavy import; only reports and tests need it

    table = client.query_arrow(sql, parameters=parameters)
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df.with_columns(pl.col(pl.Categorical).cast(pl.String))


def clear_run(client: Client, database: str, run_id: str) -> None:
    """Delete every row of `run_id` from every table (synchronously), so a rerun is exactly what
    it writes — also when the engine's semantics changed and its rows no longer share keys with
    the old ones (which ReplacingMergeTree would then keep beside the new ones)."""
    for t in TABLES.values():
        client.command(
            f"ALTER TABLE {_quote(database)}.{_quote(t.name)} DELETE "
            "WHERE run_id = {run_id:String} SETTINGS mutations_sync = 2",
            parameters={"run_id": run_id},
        )


def count_final(client: Client, database: str, table: str, run_id: str) -> int:
    """Deduplicated row count of one run in one table."""
    t = _table(table)
    return int(
        client.command(
            f"SELECT count() FROM {_quote(database)}.{_quote(t.name)} FINAL "
            "WHERE run_id = {run_id:String}",
            parameters={"run_id": run_id},
        )
    )
