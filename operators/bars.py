"""Trades -> time bars per symbol, in event time, with a grace period for out-of-order trades.

Deterministic by construction: a bucket [s, s+I) closes when the symbol's watermark (the largest
trade time seen) reaches s + I + grace. The decision is made per trade, so where the batch
boundaries fall cannot change the output. A closed bucket is never reopened: a later trade for it
is counted as late and handed back to the caller (to a dead-letter output), so no bar is emitted
twice. Open/close are the trades with the smallest/largest (ts_event, trade_id), and volumes are
summed in exact fixed point, so arrival order inside the grace window does not matter.

With `rules`, every trade first passes the symbol's plausibility guard (operators/plausibility.py):
a quarantined trade never reaches a bucket, so it can never move the watermark.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from operators.fixedpoint import SCALE, to_fp
from operators.plausibility import Plausibility, Rules
from schemas.messages import Bar, Trade


@dataclass(slots=True)
class _Bucket:
    open_key: tuple[int, int]
    open: float
    close_key: tuple[int, int]
    close: float
    high: float
    low: float
    volume_fp: int = 0
    buy_volume_fp: int = 0
    n_trades: int = 0
    trade_ids: set[int] = field(default_factory=set)


class BarBuilder:
    """State for one symbol. `update(trades) -> (bars, rejects)`; rejects are (trade, reason)."""

    def __init__(
        self, symbol: str, interval_ns: int, grace_ns: int, rules: Rules | None = None
    ) -> None:
        if interval_ns <= 0 or grace_ns < 0:
            raise ValueError("interval_ns must be > 0 and grace_ns >= 0")
        self.guard: Plausibility[Trade] | None = (
            None if rules is None else Plausibility(rules, ordered=False, kind="trade")
        )
        self.symbol = symbol
        self.interval_ns = interval_ns
        self.grace_ns = grace_ns
        self._buckets: dict[int, _Bucket] = {}
        self._watermark = -1
        self._closed_until = -(2**62)  # every bucket starting before this has been emitted
        self._deadline = 2**62  # watermark at which the oldest open bucket closes
        self.late = 0
        self.duplicates = 0
        self.bars_emitted = 0

    def update(self, trades: Iterable[Trade]) -> tuple[list[Bar], list[tuple[Trade, str]]]:
        bars: list[Bar] = []
        rejects: list[tuple[Trade, str]] = []
        interval = self.interval_ns
        buckets = self._buckets
        if self.guard is not None:
            trades = self._plausible(trades, rejects)
        for t in trades:
            ts = t.ts_event
            start = ts - ts % interval
            # Late: the bucket is closed, or would have been had it had a trade
            # (watermark past its end + grace); flush() closes without moving the watermark.
            if start < self._closed_until or start + interval + self.grace_ns <= self._watermark:
                self.late += 1
                rejects.append((t, "late: bar already closed"))
                continue
            key = (ts, t.trade_id)
            b = buckets.get(start)
            if b is None:
                b = _Bucket(key, t.price, key, t.price, t.price, t.price)
                buckets[start] = b
                self._deadline = min(self._deadline, start + interval + self.grace_ns)
            elif t.trade_id in b.trade_ids:
                self.duplicates += 1
                rejects.append((t, "duplicate trade_id"))
                continue
            b.trade_ids.add(t.trade_id)
            price = t.price
            if key < b.open_key:
                b.open_key, b.open = key, price
            if key > b.close_key:
                b.close_key, b.close = key, price
            if price > b.high:
                b.high = price
            if price < b.low:
                b.low = price
            size_fp = to_fp(t.size)
            b.volume_fp += size_fp
            if t.aggressor == "buy":
                b.buy_volume_fp += size_fp
            b.n_trades += 1
            if ts > self._watermark:
                self._watermark = ts
                if ts >= self._deadline:
                    self._close_until(ts - self.grace_ns, bars)
        return bars, rejects

    def _plausible(
        self, trades: Iterable[Trade], rejects: list[tuple[Trade, str]]
    ) -> Iterable[Trade]:
        check = self.guard.check  # type: ignore[union-attr]
        for t in trades:
            verdicts = check(t)
            if verdicts is None:
                yield t
                continue
            for m, reason in verdicts:
                if reason is None:
                    yield m
                else:
                    rejects.append((m, reason))

    def flush_quarantine(self) -> list[tuple[Trade, str]]:
        """End of input: trades still held by the guard (never confirmed) are rejected."""
        return [] if self.guard is None else [(t, r) for t, r in self.guard.flush() if r]

    @property
    def rejected(self) -> int:
        """Every trade rejected so far (late, duplicate, quarantined): a dead-letter counter."""
        q = 0 if self.guard is None else self.guard.quarantined
        return self.late + self.duplicates + q

    def flush(self) -> list[Bar]:
        """Emit every open bucket (end of a bounded replay). Later trades for them are late."""
        bars: list[Bar] = []
        if self._buckets:
            self._close_until(max(self._buckets) + self.interval_ns, bars)
        return bars

    @property
    def watermark(self) -> int:
        """Largest trade time seen (-1 before the first trade)."""
        return self._watermark

    @property
    def open_buckets(self) -> int:
        return len(self._buckets)

    def _close_until(self, limit: int, out: list[Bar]) -> None:
        """Close buckets whose end is <= limit, oldest first."""
        interval = self.interval_ns
        for start in sorted(s for s in self._buckets if s + interval <= limit):
            b = self._buckets.pop(start)
            out.append(
                Bar(
                    symbol=self.symbol,
                    ts_event=start,
                    # when it closes in event time, whatever the arrival order or batching
                    ts_init=start + interval + self.grace_ns,
                    open=b.open,
                    high=b.high,
                    low=b.low,
                    close=b.close,
                    volume=b.volume_fp / SCALE,
                    interval_ns=interval,
                    n_trades=b.n_trades,
                    buy_volume=b.buy_volume_fp / SCALE,
                )
            )
            self.bars_emitted += 1
            self._closed_until = max(self._closed_until, start + interval)
        self._deadline = min(self._buckets) + interval + self.grace_ns if self._buckets else 2**62
