"""Decode raw wire payloads and validate market data; what fails becomes a DeadLetter with a reason.

Nothing here raises on bad input: the flow must keep running and nothing may be lost silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Set
from typing import TypeVar

import msgspec

from schemas.codec import decoder, encode
from schemas.messages import Bar, DeadLetter, Trade

M = TypeVar("M", Trade, Bar)


def _payload_text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return repr(raw)


def _bad_number(x: float) -> bool:
    return not math.isfinite(x) or x <= 0.0


def trade_problem(t: Trade, universe: Set[str]) -> str | None:
    if t.symbol not in universe:
        return f"unknown symbol {t.symbol!r}"
    if _bad_number(t.price):
        return f"bad price {t.price!r}"
    if _bad_number(t.size):
        return f"bad size {t.size!r}"
    if t.ts_event <= 0:
        return f"bad ts_event {t.ts_event!r}"
    return None


def bar_problem(b: Bar, universe: Set[str]) -> str | None:
    o, h, lo, c = b.open, b.high, b.low, b.close
    # Fast path (NaN fails every comparison, so it falls through to the detailed checks).
    if (
        b.symbol in universe
        and 0.0 < lo <= o <= h < math.inf
        and lo <= c <= h
        and 0.0 <= b.volume < math.inf
        and b.ts_event > 0
        and b.interval_ns > 0
    ):
        return None
    if b.symbol not in universe:
        return f"unknown symbol {b.symbol!r}"
    for name in ("open", "high", "low", "close"):
        v = getattr(b, name)
        if _bad_number(v):
            return f"bad {name} {v!r}"
    if not math.isfinite(b.volume) or b.volume < 0.0:
        return f"bad volume {b.volume!r}"
    if b.low > min(b.open, b.close) or b.high < max(b.open, b.close):
        return "inconsistent OHLC (low/high do not bound open/close)"
    if b.ts_event <= 0 or b.interval_ns <= 0:
        return "bad ts_event or interval_ns"
    return None


def _checker(cls: type[M]) -> Callable[[M, Set[str]], str | None]:
    return trade_problem if cls is Trade else bar_problem  # type: ignore[return-value]


def validate_batch(
    msgs: Iterable[M], cls: type[M], universe: Set[str], source: str
) -> tuple[list[M], list[DeadLetter]]:
    """Already-typed messages (file sources): keep the valid ones, dead-letter the rest."""
    check = _checker(cls)
    good: list[M] = []
    dead: list[DeadLetter] = []
    for m in msgs:
        problem = check(m, universe)
        if problem is None:
            good.append(m)
        else:
            dead.append(dead_letter_for(m, source, problem))
    return good, dead


def decode_batch(
    raws: Iterable[tuple[str, bytes | str | None, int]],
    cls: type[M],
    universe: Set[str],
    source: str,
) -> tuple[list[M], list[DeadLetter]]:
    """Decode (key, payload, ts_init) triples into valid messages and dead letters."""
    dec = decoder(cls)
    check = _checker(cls)
    good: list[M] = []
    dead: list[DeadLetter] = []
    for key, raw, ts_init in raws:
        if not raw:  # a Kafka tombstone (null value) or empty payload
            dead.append(DeadLetter(ts_init, source, "empty payload", "", key))
            continue
        try:
            msg = dec.decode(raw)
        except msgspec.DecodeError as exc:
            dead.append(DeadLetter(ts_init, source, f"malformed: {exc}", _payload_text(raw), key))
            continue
        problem = check(msg, universe)
        if problem is None:
            good.append(msg)
        else:
            dead.append(DeadLetter(ts_init, source, problem, _payload_text(raw), key, msg.ts_event))
    return good, dead


class BarSequenceGuard:
    """Per symbol: bars must arrive in strictly increasing open time (no duplicates, no rewind)."""

    def __init__(self) -> None:
        self.last_ts: int | None = None
        self.rejected = 0

    def check(self, bar: Bar) -> str | None:
        last = self.last_ts
        if last is not None and bar.ts_event <= last:
            self.rejected += 1
            return "duplicate bar" if bar.ts_event == last else "out-of-order bar"
        self.last_ts = bar.ts_event
        return None


def dead_letter_for(msg: Trade | Bar, source: str, reason: str) -> DeadLetter:
    """A dead letter for an already-decoded message (late trade, duplicate bar, ...)."""
    return DeadLetter(
        ts_init=msg.ts_init,
        source=source,
        reason=reason,
        payload=encode(msg).decode(),
        key=msg.symbol,
        ts_event=msg.ts_event,
    )
