"""A clean stop for long-running flows (paper, later live) on SIGINT / SIGTERM.

Bytewax 0.21 turns a KeyboardInterrupt inside `run_main` into a Rust panic, so the default
handler cannot be used. Instead the signal only sets a flag; every source wrapped by
`StoppableSource` then ends its input (StopIteration), Bytewax closes the last epoch (every
stateful step snapshotted, sinks flushed and closed) and `run_main` returns normally. The shims
in `dataflows/steps.py` check `stopping()` in `on_eof`: a stop is not the end of the data, so
they keep their state (open bars, aligned rows) for the resumed run instead of flushing it.
A second signal while stopping exits at once (exit code 130).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

__all__ = ["StoppableSource", "handle_signals", "request_stop", "stopping"]

_STOP = threading.Event()


def stopping() -> bool:
    """True once a stop was requested: inputs end, stateful steps keep their state."""
    return _STOP.is_set()


def request_stop() -> None:
    _STOP.set()


@contextmanager
def handle_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM request a clean stop while the block runs (main thread only)."""
    _STOP.clear()

    def on_signal(signum: int, _frame: Any) -> None:
        if _STOP.is_set():
            sys.stderr.write("second signal: exiting without a clean stop\n")
            sys.stderr.flush()
            os._exit(130)
        _STOP.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield _STOP
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _STOP.clear()


class _Stoppable(StatefulSourcePartition[Any, Any]):
    def __init__(self, inner: StatefulSourcePartition[Any, Any]) -> None:
        self._inner = inner

    def next_batch(self) -> list[Any]:
        if _STOP.is_set():
            raise StopIteration  # ends the input; the last epoch still commits
        return self._inner.next_batch()

    def next_awake(self) -> datetime | None:
        return None if _STOP.is_set() else self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class StoppableSource(FixedPartitionedSource[Any, Any]):
    """Wraps a source so that a requested stop ends its input cleanly."""

    def __init__(self, inner: FixedPartitionedSource[Any, Any]) -> None:
        self.inner = inner

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Stoppable:
        return _Stoppable(self.inner.build_part(step_id, for_part, resume_state))
