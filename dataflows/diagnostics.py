"""What a failed command shows: one line naming the component and what to check, with the
traceback, Rust panics and library output in a log file (or on the terminal with --debug)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from schemas.config import data_dir

# Exit codes: usage/input errors, component faults (Kafka, ClickHouse, disk), anything else.
EXIT_USAGE, EXIT_FAULT, EXIT_UNEXPECTED, EXIT_INTERRUPTED = 2, 3, 1, 130


_LOG_MIN_FREE = 64 * 1024 * 1024  # a data dir with less free space logs to the temp dir


def _log_path(verb: str) -> Path | None:
    """A fresh log file for this command: `<data dir>/logs/`, else (not writable, or nearly
    full: the fault may be a full disk) the temp dir's."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidates = [(data_dir() / "logs", _LOG_MIN_FREE), (Path(tempfile.gettempdir()), 0)]
    for base, min_free in candidates:
        if min_free == 0:
            base = base / "cryptoflow-logs"
        path = base / f"{verb}-{stamp}-{os.getpid()}.log"
        try:
            base.mkdir(parents=True, exist_ok=True)
            if shutil.disk_usage(base).free < min_free:
                continue
            path.touch()
            return path
        except OSError:
            continue
    return None


class _QuietHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Logs to the details file; a failed write (disk full) is dropped, never reported on
    the terminal ("--- Logging error ---")."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def _writes_fd2(stream: object) -> bool:
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False  # pytest's capture, a StringIO: leave it alone


class Diagnostics:
    """While a command runs (unless --debug): fd 2 goes to a log file, so Rust panics,
    librdkafka and chDB output land there, while Python's `sys.stderr` (progress bar, messages)
    keeps writing to the terminal through a saved duplicate. Library logging goes to the log."""

    def __init__(self, verb: str, debug: bool) -> None:
        self.verb = verb
        self.debug = debug
        self.path: Path | None = None
        self._log: Any = None
        self._saved_fd: int | None = None
        self._old_stderr: Any = None
        self._handler: logging.Handler | None = None
        self._lock = threading.Lock()
        self._said = False

    def __enter__(self) -> Diagnostics:
        if self.debug:
            logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
            return self
        self.path = _log_path(self.verb)
        if self.path is None:
            return self
        self._log = open(self.path, "a", buffering=1, errors="backslashreplace")
        self._handler = _QuietHandler(self._log)
        self._handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        logging.getLogger().addHandler(self._handler)  # root: WARNING and up, as by default
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self._saved_fd = os.dup(2)
        os.dup2(self._log.fileno(), 2)
        if _writes_fd2(sys.stderr):
            self._old_stderr = sys.stderr
            sys.stderr = open(
                self._saved_fd,
                "w",
                buffering=1,
                encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                errors="backslashreplace",
                closefd=False,
            )
        return self

    def note(self, text: str) -> None:
        """Append to the log (best effort: the disk may be full)."""
        if self._log is not None:
            with contextlib.suppress(Exception):
                self._log.write(text if text.endswith("\n") else text + "\n")
                self._log.flush()

    def __exit__(self, *_: object) -> None:
        if self._saved_fd is None and self._log is None:
            return
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        if self._old_stderr is not None:
            sys.stderr = self._old_stderr
        if self._saved_fd is not None:
            os.dup2(self._saved_fd, 2)
            os.close(self._saved_fd)
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
        with contextlib.suppress(Exception):
            self._log.close()

    def say(self, line: str) -> bool:
        """Print the one user-facing line (once per command: main or the watchdog)."""
        with self._lock:
            if self._said:
                return False
            self._said = True
        if self.path is not None and not self.debug:
            line += f" (details: {self.path})"
        with contextlib.suppress(Exception):
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        return True

    def discard_if_empty(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                if self.path.stat().st_size == 0:
                    self.path.unlink()


def _innermost(exc: BaseException) -> BaseException:
    """The root of an exception chain (Bytewax wraps step errors in its runtime error)."""
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc


def _one_line(text: str, limit: int = 300) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def report(exc: BaseException, diag: Diagnostics) -> int:
    """Say what went wrong in ONE line on stderr (the traceback goes to the log, or to the
    terminal with --debug) and return the exit code."""
    from dataflows.runner import fault_of

    fault = fault_of(exc)
    if fault is None and isinstance(exc, (ValueError, FileNotFoundError)):
        # One line, as written: no markup (`[strategy]` is text) and no wrapping.
        Console(stderr=True).print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_USAGE
    tb = "".join(traceback.format_exception(exc))
    if diag.debug:
        sys.stderr.write(tb)
    else:
        diag.note(tb)
    # Bytewax wraps a Ctrl-C inside `run_main` in its own runtime error: look at the root.
    if isinstance(exc, KeyboardInterrupt) or isinstance(_innermost(exc), KeyboardInterrupt):
        line = f"interrupted: {diag.verb} stopped before it finished"
        code = EXIT_INTERRUPTED
    elif fault is not None:
        line, code = f"error: {fault}", EXIT_FAULT
    else:
        root = _innermost(exc)
        line = f"error: unexpected {type(root).__name__}: {_one_line(str(root))}"
        code = EXIT_UNEXPECTED
    diag.say(line)
    return code


# Once a fault is recorded, the command has this long to report it and end by itself; after
# that the watchdog reports it and exits (a teardown stuck on a dead broker, chDB threads).
FAULT_GRACE_S = 15.0


def watchdog(diag: Diagnostics, done: threading.Event) -> None:
    from infra import faults

    while not done.wait(0.2):
        fault = faults.first()
        if fault is None:
            continue
        if done.wait(FAULT_GRACE_S):
            return
        if diag.say(f"error: {fault}"):
            diag.note(f"watchdog: no exit {FAULT_GRACE_S:g} s after the fault; exiting")
            os._exit(EXIT_FAULT)
        return


def pop_debug(argv: list[str]) -> bool:
    """`--debug` is global; accept it after the verb too (not after a `--`)."""
    end = argv.index("--") if "--" in argv else len(argv)
    found = "--debug" in argv[:end]
    if found:
        argv[:end] = [a for a in argv[:end] if a != "--debug"]
    return found
