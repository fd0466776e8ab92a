"""ClickHouse connections: one cached client per DSN (chDB runs ONE data path per process),
bounded retries with backoff, and connect/insert failures turned into one-line faults that say
what to check (docs/faults.md). Storage itself (DDL, rows, writer) is `infra.clickhouse`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from infra.faults import Fault, raise_fault

log = logging.getLogger("infra.clickhouse")


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
