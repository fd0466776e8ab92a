"""Heartbeat of a running flow: counts what its events say (bars, orders, fills, dead letters,
equity) and prints one line every `interval_s` of wall time from a background thread, so an idle
paper trader still says that it is alive and how far behind the market it is."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from schemas.blocks import RowBlock
from schemas.messages import Bar, DeadLetter, EquityPoint, Fill, Order


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


class FlowStats:
    """Counters shared by every worker of this process (updated under a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bars = 0
        self.orders = 0
        self.fills = 0
        self.dead = 0
        self.last_close: dict[str, int] = {}  # per symbol, latest bar close (event time)
        self.equity: dict[str, float] = {}  # per account

    def add(self, batch: list[Any]) -> None:
        bars = orders = fills = dead = 0
        last: dict[str, int] = {}
        eq: dict[str, float] = {}
        for m in batch:
            t = type(m)
            if t is Bar:
                bars += 1
                last[m.symbol] = m.ts_event + m.interval_ns
            elif t is EquityPoint:
                eq[m.account] = m.equity
            elif t is RowBlock and m.cls is EquityPoint and len(m):  # the last is the latest
                eq[m.last("account")] = m.last("equity")
            elif t is Order:
                orders += 1
            elif t is Fill:
                fills += 1
            elif t is DeadLetter:
                dead += 1
        with self.lock:
            self.bars += bars
            self.orders += orders
            self.fills += fills
            self.dead += dead
            self.last_close.update(last)
            self.equity.update(eq)

    def line(self, now_ns: int) -> str:
        with self.lock:
            if not self.bars:
                return "waiting for bars: none received yet"
            # The stalest symbol: the account is only as current as its oldest price.
            close = min(self.last_close.values())
            lag = (now_ns - close) / 1e9
            equity = sum(self.equity.values())
            return (
                f"bars {self.bars:,} (last close {_utc(close)} UTC, lag {lag:,.1f} s)"
                f" | orders {self.orders:,} | fills {self.fills:,} | dead letters {self.dead:,}"
                f" | equity {equity:,.2f}"
            )


class _Partition(StatelessSinkPartition[list[Any]]):
    def __init__(self, stats: FlowStats) -> None:
        self.stats = stats

    def write_batch(self, items: list[list[Any]]) -> None:
        for batch in items:
            self.stats.add(batch)


class MonitorSink(DynamicSink[list[Any]]):
    """Consumes the flow's event batches into `stats` (nothing leaves the process)."""

    def __init__(self, stats: FlowStats) -> None:
        self.stats = stats

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self.stats)


class Heartbeat:
    """`with Heartbeat(stats, 10, print_fn):` prints `stats.line()` every interval."""

    def __init__(self, stats: FlowStats, interval_s: float, emit: Callable[[str], None]) -> None:
        self.stats = stats
        self.interval_s = interval_s
        self.emit = emit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.emit(self.stats.line(time.time_ns()))

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
