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

import contextlib
import errno
import fcntl
import functools
import logging
import os
import signal
import threading
import time
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal
from urllib.parse import urlparse

import clickhouse_connect
import msgspec
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from infra.faults import Fault, raise_fault
from schemas.messages import (
    Bar,
    DeadLetter,
    EquityPoint,
    FeatureRow,
    FeatureSetInfo,
    Fill,
    Metric,
    Order,
    OrderDenied,
    PositionSnapshot,
    RunInfo,
    Signal,
    Trade,
)

__all__ = [
    "TABLES",
    "TABLE_BY_CLASS",
    "BatchWriter",
    "ClickHouseError",
    "ClickHouseWriteError",
    "Retry",
    "Table",
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
    }
)
TIME_NAMES = frozenset({"start", "end"})


class ClickHouseError(RuntimeError):
    """Misuse or misconfiguration of the storage layer."""


class ClickHouseWriteError(ClickHouseError):
    """An insert failed or could not be verified; the rows stay buffered for a retry."""

    def __init__(self, table: str, rows: int, detail: str) -> None:
        super().__init__(f"ClickHouse insert into {table!r} of {rows} rows failed: {detail}")
        self.table = table
        self.rows = rows


# --------------------------------------------------------------------------- connections

_LOCK = threading.Lock()
_CLIENTS: dict[str, Client] = {}
_CHDB_PATH: str | None = None  # the one chDB path this process has opened


def _chdb_path(dsn: str) -> str | None:
    """The directory of a `chdb:` DSN (None for in-memory); mirrors clickhouse-connect's parse."""
    parsed = urlparse(dsn)
    location = parsed.netloc.rpartition("@")[2] if parsed.netloc else parsed.path
    if location in ("", "memory", ":memory:"):
        return None
    return os.path.realpath(location)


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass(frozen=True, slots=True)
class Retry:
    """`retries` more attempts after the first, sleeping `backoff_s`, doubling, capped."""

    retries: int = 4
    backoff_s: float = 0.5
    cap_s: float = 8.0

    def delays(self) -> list[float]:
        return [min(self.backoff_s * 2**i, self.cap_s) for i in range(max(self.retries, 0))]

    def budget_s(self) -> float:
        return sum(self.delays())


_RETRY = [Retry()]  # process-wide default (cfg.clickhouse, set by the CLI)


def set_retry_defaults(retries: int, backoff_s: float) -> None:
    """Default retry policy of `connect` and `BatchWriter` when a call does not give one."""
    _RETRY[0] = Retry(retries, backoff_s)


def _retry(retries: int | None, backoff_s: float | None) -> Retry:
    d = _RETRY[0]
    return Retry(
        d.retries if retries is None else retries, d.backoff_s if backoff_s is None else backoff_s
    )


def _safe_dsn(dsn: str) -> str:
    """The DSN without credentials (it goes into error messages and logs)."""
    parsed = urlparse(dsn)
    if parsed.password is None and parsed.username is None:
        return dsn.split("?")[0]
    host = parsed.netloc.rpartition("@")[2]
    return parsed._replace(netloc=host, query="").geturl()


def _chain(ex: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = ex
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


_NO_SPACE = ("NOT_ENOUGH_SPACE", "No space left", "errno: 28", "ENOSPC", "Cannot reserve")


def _is_disk_full(ex: BaseException) -> bool:
    for e in _chain(ex):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        if any(k in str(e) for k in _NO_SPACE):
            return True
    return False


def _short(ex: BaseException) -> str:
    """A one-line cause: the innermost OS error if any, else the ClickHouse message's head."""
    for e in reversed(_chain(ex)):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror.lower()
    text = " ".join(str(ex).split())
    text = text.split("DB::Exception: ", 1)[-1]
    for cut in (" Stack trace", ". (", " (version "):
        if cut in text and not text.startswith(cut):
            head, _, tail = text.partition(cut)
            code = tail.split(")")[0] if cut == ". (" else ""
            text = f"{head} ({code})" if code.isupper() else head
            break
    return text[:240] or type(ex).__name__


def _is_auth(ex: BaseException) -> bool:
    text = str(ex)
    return "AUTHENTICATION_FAILED" in text or "Code: 516" in text or "REQUIRED_PASSWORD" in text


def _writable(path: str) -> str | None:
    """None if a file can be created in `path` (made if missing), else why not."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-probe-{os.getpid()}")
        with open(probe, "wb") as fh:
            fh.write(b"x")
        os.unlink(probe)
    except OSError as ex:
        return (ex.strerror or str(ex)).lower()
    return None


def _lock_holder(path: str) -> str | None:
    """`PID n` (or `another process`) if chDB's status file in `path` is locked, else None."""
    status = os.path.join(path, "status")
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            head = os.pread(fd, 200, 0).decode(errors="replace")
            pid = head.split("PID:", 1)[1].split()[0] if "PID:" in head else ""
            return f"PID {pid}" if pid else "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _connect_fault(dsn: str, ex: BaseException) -> tuple[Fault, bool]:
    """(fault to raise, whether retrying may help) for a failed connect."""
    where = _safe_dsn(dsn)
    if dsn.startswith("chdb:"):
        path = _chdb_path(dsn) or ":memory:"
        parent = os.path.dirname(path)
        cause = _writable(path) if path != ":memory:" else None
        if cause is not None:
            what = f"cannot connect to {where}: {path} is not writable ({cause})"
            return Fault("clickhouse", what, f"that {parent} is writable (mount, free space)"), True
        holder = _lock_holder(path) if path != ":memory:" else None
        if holder is not None:
            what = f"cannot connect to {where}: its directory is in use by {holder}"
            check = (
                f"that no other cryptoflow process uses {path} (chDB opens a directory in one "
                "process only), or run a ClickHouse server and set CLICKHOUSE_DSN"
            )
            return Fault("clickhouse", what, check), True
        if _is_disk_full(ex):
            what = f"cannot connect to {where}: no space left under {path}"
            return Fault("clickhouse", what, f"free space under {parent}"), True
        what = f"cannot connect to {where}: {_short(ex)}"
        return Fault("clickhouse", what, f"that {parent} is writable (and the details log)"), True
    if _is_auth(ex):
        what = f"cannot connect to {where}: authentication failed"
        return Fault("clickhouse", what, "the user and password in CLICKHOUSE_DSN"), False
    what = f"cannot connect to {where}: {_short(ex)}"
    return Fault("clickhouse", what, "that the server is up and CLICKHOUSE_DSN"), True


def _record(f: Fault) -> Fault:
    """Register `f` as a fault of this process (the first one wins) and return it, to `raise`."""
    raise_fault(f.component, f.what, f.check)
    return f


def _default_abort() -> None:
    """chDB installs ClickHouse's fatal-signal handlers; on SIGABRT (e.g. a Rust "panic in a
    destructor" in Bytewax) that one logs and then sleeps for minutes. Restore the default so
    an abort ends the process at once (exit 134)."""
    with contextlib.suppress(ValueError, OSError):  # ValueError: not the main thread
        signal.signal(signal.SIGABRT, signal.SIG_DFL)


def _open(dsn: str, database: str) -> Client:
    global _CHDB_PATH
    with _LOCK:
        client = _CLIENTS.get(dsn)
        if client is None:
            if dsn.startswith("chdb:"):
                path = _chdb_path(dsn) or ":memory:"
                if _CHDB_PATH is not None and path != _CHDB_PATH:
                    raise ClickHouseError(
                        f"chDB is already open at {_CHDB_PATH!r} in this process; cannot also open "
                        f"{path!r}. chDB runs one data path per process: use one DSN everywhere, "
                        "or a ClickHouse server (http://host:8123) for several paths or processes."
                    )
                if path != ":memory:":
                    os.makedirs(path, exist_ok=True)
                client = clickhouse_connect.get_client(dsn=dsn)
                _CHDB_PATH = path
                _default_abort()
            else:
                client = clickhouse_connect.get_client(dsn=dsn)
            _CLIENTS[dsn] = client
    client.command(f"CREATE DATABASE IF NOT EXISTS {_quote(database)}")
    return client


def connect(
    dsn: str,
    database: str = "cryptoflow",
    *,
    retries: int | None = None,
    backoff_s: float | None = None,
) -> Client:
    """The process-wide client for `dsn` (created once), with `database` created if missing.

    The client has no default database: always qualify tables as `database.table`, so one
    client serves every database (tests isolate themselves by database name).
    Do not `close()` the returned client; use `close_all()`.

    A server that is down, a chDB directory that is not writable or locked by another process
    is retried `retries` times with backoff (default: `set_retry_defaults`), then raises a
    `Fault` (`clickhouse: cannot connect to <dsn>: <cause>; check ...`).
    """
    delays = _retry(retries, backoff_s).delays()
    for attempt in range(len(delays) + 1):
        try:
            return _open(dsn, database)
        except ClickHouseError:
            raise  # misuse (a second chDB path): not a fault of the component
        except Exception as ex:
            fault, retryable = _connect_fault(dsn, ex)
            if not retryable or attempt == len(delays):
                raise _record(fault) from ex
            log.warning("%s; retrying in %.1f s", fault, delays[attempt])
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")


def fault_for(client_or_dsn: Client | str, what: str, ex: BaseException) -> Fault:
    """A recorded `Fault` for a failed ClickHouse operation (`what`: e.g. `insert into x.y`)."""
    dsn = client_or_dsn if isinstance(client_or_dsn, str) else _dsn_of(client_or_dsn)
    path = _chdb_path(dsn) if dsn.startswith("chdb:") else None
    where = path or (_safe_dsn(dsn) if dsn else "the ClickHouse server")
    if _is_disk_full(ex):
        cause = f"disk full under {where}"
        check = f"free space under {path}" if path else "free space on the server's data disk"
    else:
        cause = _short(ex)
        check = (
            f"that {path} is writable and has free space (and the details log)"
            if path
            else "that the server is up and CLICKHOUSE_DSN (and the server log)"
        )
    return _record(Fault("clickhouse", f"{what} failed: {cause}", check))


def _dsn_of(client: Client) -> str:
    with _LOCK:
        for dsn, c in _CLIENTS.items():
            if c is client:
                return dsn
    return ""


def close_all() -> None:
    """Close every cached client; afterwards a different chDB path may be opened."""
    global _CHDB_PATH
    with _LOCK:
        for client in _CLIENTS.values():
            client.close()
        _CLIENTS.clear()
        _CHDB_PATH = None


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
    """Create the database and every (or the given) table if missing. Idempotent."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {_quote(database)}")
    for t in tables if tables is not None else TABLES.values():
        client.command(create_table_sql(t, database))


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


def arrow_for(table: Table | str, structs: Sequence[msgspec.Struct], run_id: str = "") -> Any:
    """A pyarrow Table for `client.insert_arrow`, or None if a column type has no mapping.

    Arrow is converted to columns in C++ by ClickHouse itself; the Native path serializes in
    Python (LowCardinality dictionaries especially), ~30% slower on chDB for bars.
    """
    t = _table(table)
    layout, _ = _layout(t)
    names, columns = columns_for(t, structs, run_id)
    arrays = []
    for (_, typ), col in zip(layout, columns, strict=True):
        if typ == DATETIME:  # int ns since the epoch: same bits as timestamp[ns, UTC]
            arrays.append(pa.array(col, pa.int64()).view(pa.timestamp("ns", tz="UTC")))
        elif typ in _ARROW_TYPES:
            arrays.append(pa.array(col, _ARROW_TYPES[typ]))
        elif typ.startswith("Array(") and typ[6:-1] in _ARROW_TYPES:
            arrays.append(pa.array(col, pa.list_(_ARROW_TYPES[typ[6:-1]])))
        else:
            return None
    return pa.Table.from_arrays(arrays, names=names)


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
        self._oldest: dict[str, float] = {}  # table -> clock() when its buffer became non-empty
        self.written: dict[str, int] = {}  # rows confirmed written, per table
        self.inserts = 0  # number of insert statements issued

    def add(self, table_name: str, structs: msgspec.Struct | Iterable[msgspec.Struct]) -> None:
        table = _table(table_name)
        buf = self._buffers.setdefault(table.name, [])
        before = len(buf)
        if isinstance(structs, msgspec.Struct):
            buf.append(structs)
        else:
            buf.extend(structs)
        if len(buf) > before:
            cls = table.message_cls
            bad = next((s for s in buf[before:] if type(s) is not cls), None)
            if bad is not None:
                del buf[before:]
                raise ClickHouseError(
                    f"table {table.name!r} takes {cls.__name__}, got {type(bad).__name__}"
                )
            self._oldest.setdefault(table.name, self._clock())
        self.flush_due()

    def pending(self) -> dict[str, int]:
        """Buffered (not yet inserted) rows per table."""
        return {name: len(buf) for name, buf in self._buffers.items() if buf}

    def flush_due(self) -> int:
        """Flush the tables past a threshold; returns rows written."""
        now = self._clock()
        due = [
            name
            for name, buf in self._buffers.items()
            if buf
            and (len(buf) >= self.batch_rows or now - self._oldest[name] >= self.batch_seconds)
        ]
        return sum(self._flush_table(name) for name in due)

    def flush(self) -> int:
        """Flush every table; returns rows written."""
        return sum(self._flush_table(name) for name in list(self._buffers))

    def _flush_table(self, name: str) -> int:
        buf = self._buffers.get(name)
        if not buf:
            return 0
        delays = self._retry.delays()
        for attempt in range(len(delays) + 1):
            try:
                n = self._insert(name, buf)
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
        self._oldest.pop(name, None)
        self.written[name] = self.written.get(name, 0) + n
        return n

    def _insert(self, name: str, buf: list[msgspec.Struct]) -> int:
        """One insert of the whole buffer; raises ClickHouseWriteError (the buffer is kept)."""
        table = TABLES[name]
        n = len(buf)
        try:
            arrow = arrow_for(table, buf, self.run_id)
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
