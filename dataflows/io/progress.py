"""Wrap any partitioned source so each emitted batch advances a progress callback."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class _Counted(StatefulSourcePartition[Any, Any]):
    def __init__(self, inner: StatefulSourcePartition[Any, Any], tick: Callable[[int], None]):
        self._inner = inner
        self._tick = tick

    def next_batch(self) -> list[Any]:
        batch = self._inner.next_batch()
        n = sum(len(b) if isinstance(b, list) else 1 for b in batch)
        if n:
            self._tick(n)
        return batch

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class CountedSource(FixedPartitionedSource[Any, Any]):
    def __init__(self, inner: FixedPartitionedSource[Any, Any], tick: Callable[[int], None]):
        self.inner = inner
        self.tick = tick

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Counted:
        return _Counted(self.inner.build_part(step_id, for_part, resume_state), self.tick)


@contextmanager
def counted(source: FixedPartitionedSource[Any, Any], title: str, console: Console, enabled: bool):
    """`with counted(src, "replay bars", console, True) as src:` a source that advances a rich
    progress bar (items so far, elapsed time) by each batch it emits, from any worker thread."""
    lock = threading.Lock()
    with Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
    ) as bar:
        task = bar.add_task("replay", total=None)

        def tick(n: int) -> None:
            with lock:
                bar.advance(task, n)

        yield CountedSource(source, tick)
