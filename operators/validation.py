"""Decode raw wire payloads and validate market data; what fails becomes a DeadLetter with a reason.

These are the stateless rules of a plausible message (docs/validation.md); the per-symbol rules
in time and price are in operators/plausibility.py. Nothing here raises on bad input: the flow
must keep running and nothing may be lost silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import msgspec

from schemas.codec import decoder, encode
from schemas.messages import NS_PER_MINUTE, NS_PER_SECOND, Bar, DeadLetter, OrderFilled, Trade

if TYPE_CHECKING:  # annotations only: operators need not load pydantic
    from schemas.config import BarsConfig, ValidationConfig

M = TypeVar("M", Trade, Bar)

I64 = 2**63  # ClickHouse stores ints and DateTime64(9) in 64 bits; msgspec decodes bigger ints
_INF = math.inf


@dataclass(frozen=True, slots=True)
class Limits:
    """Stateless bounds of a plausible message (cfg.validation, cfg.bars.interval_s)."""

    min_price: float = 1e-12
    max_price: float = 1e9
    max_size: float = 1e12
    interval_ns: int = NS_PER_MINUTE
    venue: str = "binance_spot"  # trades: the only venue whose trades are the symbols' (cfg.venue)

    @classmethod
    def from_config(
        cls, v: ValidationConfig, bars: BarsConfig, venue: str = "binance_spot"
    ) -> Limits:
        return cls(v.min_price, v.max_price, v.max_size, bars.interval_s * NS_PER_SECOND, venue)


LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Where event time may lie: [start, end) of a replay, and (live) at most `max_ahead_ns`
    ahead of `now_ns`, the wall clock read once per batch by the caller."""

    start: int | None = None
    end: int | None = None
    now_ns: int | None = None
    max_ahead_ns: int = 60 * NS_PER_SECOND

    def problem(self, ts: int) -> str | None:
        lo, hi = self.start, self.end
        if (lo is not None and ts < lo) or (hi is not None and ts >= hi):
            return "event time outside the replay range"
        if self.now_ns is not None and ts - self.now_ns > self.max_ahead_ns:
            return (
                f"event time {(ts - self.now_ns) / 1e9:.0f}s ahead of the wall clock "
                f"(limit {self.max_ahead_ns / 1e9:g}s)"
            )
        return None


def payload_text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return repr(raw)


def _bad_int(name: str, v: int) -> str | None:
    return None if 0 < v < I64 else f"bad {name} {v!r} (want 0 < {name} < 2^63)"


def _price_problem(name: str, p: float, lim: Limits) -> str | None:
    if not math.isfinite(p) or p <= 0.0:
        return f"bad {name} {p!r}"
    if not lim.min_price <= p <= lim.max_price:
        return f"{name} {p!r} outside [{lim.min_price:g}, {lim.max_price:g}]"
    return None


def _amount_problem(name: str, x: float, lim: Limits, positive: bool) -> str | None:
    if not math.isfinite(x) or x < 0.0 or (positive and x == 0.0):
        return f"bad {name} {x!r}"
    if x > lim.max_size:
        return f"{name} {x!r} above {lim.max_size:g}"
    return None


def trade_problem(t: Trade, universe: Set[str], lim: Limits = LIMITS) -> str | None:
    p, s = t.price, t.size
    # Fast path (NaN fails every comparison, so it falls through to the detailed checks).
    if (
        t.symbol in universe
        and t.venue == lim.venue
        and lim.min_price <= p <= lim.max_price
        and 0.0 < s <= lim.max_size
        and 0 < t.ts_event < I64
        and 0 < t.ts_init < I64
        and -I64 <= t.trade_id < I64
    ):
        return None
    if t.symbol not in universe:
        return f"unknown symbol {t.symbol!r}"
    if t.venue != lim.venue:
        return (
            f"trade from venue {t.venue!r}, not the config's venue {lim.venue!r} "
            "(the same name on another venue is another instrument)"
        )
    return (
        _price_problem("price", p, lim)
        or _amount_problem("size", s, lim, True)
        or _bad_int("ts_event", t.ts_event)
        or _bad_int("ts_init", t.ts_init)
        or f"bad trade_id {t.trade_id!r} (outside int64)"
    )


def bar_problem(b: Bar, universe: Set[str], lim: Limits = LIMITS) -> str | None:
    o, h, lo, c = b.open, b.high, b.low, b.close
    ts, iv = b.ts_event, b.interval_ns
    if (
        b.symbol in universe
        and lim.min_price <= lo <= o <= h <= lim.max_price
        and lo <= c <= h
        and 0.0 <= b.volume <= lim.max_size
        and 0.0 <= b.buy_volume <= lim.max_size
        and iv == lim.interval_ns
        and 0 < ts < I64
        and ts % iv == 0
        and 0 < b.ts_init < I64
        and 0 <= b.n_trades < I64
    ):
        return None
    if b.symbol not in universe:
        return f"unknown symbol {b.symbol!r}"
    for name in ("open", "high", "low", "close"):
        problem = _price_problem(name, getattr(b, name), lim)
        if problem is not None:
            return problem
    problem = _amount_problem("volume", b.volume, lim, False) or _amount_problem(
        "buy_volume", b.buy_volume, lim, False
    )
    if problem is not None:
        return problem
    if lo > min(o, c) or h < max(o, c):
        return "inconsistent OHLC (low/high do not bound open/close)"
    if iv != lim.interval_ns:
        return f"bad interval_ns {iv!r} (want {lim.interval_ns})"
    problem = _bad_int("ts_event", ts) or _bad_int("ts_init", b.ts_init)
    if problem is not None:
        return problem
    if ts % iv:
        return f"ts_event {ts} off the bar grid ({ts % iv} ns past a multiple of interval_ns)"
    return f"bad n_trades {b.n_trades!r}"


def problem_of(m: Trade | Bar, universe: Set[str], lim: Limits = LIMITS) -> str | None:
    if isinstance(m, Bar):
        return bar_problem(m, universe, lim)
    return trade_problem(m, universe, lim)


def _safe_ts(ts: int) -> int:
    """A time fit for a dead letter's DateTime64 column (0 when it is not)."""
    return ts if 0 <= ts < I64 else 0


def row_origin(m: Trade | Bar, source: str) -> str:
    """Where a typed (file) row came from: its natural key in the source."""
    if isinstance(m, Trade):
        return f"{source}:{m.symbol}:{m.ts_event}:{m.trade_id}"
    return f"{source}:{m.symbol}:{m.ts_event}"


def validate_batch(
    msgs: Iterable[M],
    cls: type[M],
    universe: Set[str],
    source: str,
    lim: Limits = LIMITS,
    window: TimeWindow | None = None,
) -> tuple[list[M], list[DeadLetter]]:
    """Already-typed messages (file sources): keep the valid ones, dead-letter the rest.

    A rejected row's origin is its natural key (plus `#n` for the n-th repeat in the batch):
    typed rows carry no position."""
    check = bar_problem if cls is Bar else trade_problem
    good: list[M] = []
    dead: list[DeadLetter] = []
    seen: dict[str, int] = {}
    for m in msgs:
        problem = check(m, universe, lim)  # type: ignore[arg-type]
        if problem is None and window is not None:
            problem = window.problem(m.ts_event)
        if problem is None:
            good.append(m)
            continue
        origin = row_origin(m, source)
        n = seen[origin] = seen.get(origin, -1) + 1
        dead.append(dead_letter_for(m, source, problem, f"{origin}#{n}" if n else origin))
    return good, dead


def decode_batch(
    raws: Iterable[tuple[str, bytes | str | None, int, str]],
    cls: type[M],
    universe: Set[str],
    source: str,
    lim: Limits = LIMITS,
    window: TimeWindow | None = None,
) -> tuple[list[M], list[DeadLetter]]:
    """Decode (key, payload, ts_init, origin) records into valid messages and dead letters;
    `origin` identifies the record in its input (Kafka: "<topic>/<partition>/<offset>")."""
    dec = decoder(cls)
    check = bar_problem if cls is Bar else trade_problem
    good: list[M] = []
    dead: list[DeadLetter] = []
    for key, raw, ts_init, origin in raws:
        if not raw:  # a Kafka tombstone (null value) or empty payload
            dead.append(DeadLetter(_safe_ts(ts_init), source, "empty payload", "", key, 0, origin))
            continue
        try:
            msg = dec.decode(raw)
        except msgspec.DecodeError as exc:
            text = payload_text(raw)
            dead.append(
                DeadLetter(_safe_ts(ts_init), source, f"malformed: {exc}", text, key, 0, origin)
            )
            continue
        problem = check(msg, universe, lim)  # type: ignore[arg-type]
        if problem is None and window is not None:
            problem = window.problem(msg.ts_event)
        if problem is None:
            good.append(msg)
        else:
            dead.append(
                DeadLetter(
                    _safe_ts(ts_init),
                    source,
                    problem,
                    payload_text(raw),
                    key,
                    _safe_ts(msg.ts_event),
                    origin,
                )
            )
    return good, dead


def dead_letter_for(
    msg: Trade | Bar | OrderFilled, source: str, reason: str, origin: str
) -> DeadLetter:
    """A dead letter for an already-decoded message (late trade, duplicate bar, a fill the
    account refused, ...);
    stateful steps give `origin` as "<step>:<symbol>:<n>" from a counter in their state."""
    try:
        payload = encode(msg).decode()
    except OverflowError:  # an int msgspec cannot write back (decoded from a bigger one)
        payload = repr(msg)
    return DeadLetter(
        ts_init=_safe_ts(msg.ts_init),
        source=source,
        reason=reason,
        payload=payload,
        key=msg.symbol,
        ts_event=_safe_ts(msg.ts_event),
        origin=origin,
    )
