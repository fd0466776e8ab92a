"""Per-symbol plausibility in time and price: one hostile message must not move the state.

A message that passed the stateless checks (operators/validation.py) is judged against the
symbol's *good state*: the watermark (largest accepted event time), the last good price and
`scale`, an EWMA of per-message log ranges/moves. It is implausible when its event time is more
than `hold_ahead_ns` ahead of the watermark, or when any of its prices is further (in log terms)
from the last good price than the band max(move_floor, move_k * scale).

An implausible message is HELD as a candidate, never dropped: real jumps (a gap after an outage,
a regime change) must survive. Each next message is judged first against the good state, then
against the last candidate:
  * consistent with the good state: the stream went on normally, so the held candidates were
    outliers and are dead-lettered (with the reason they were held); the message is accepted;
  * consistent with the last candidate (same price band, no rewind, within `max_ahead_ns` of
    it): it joins the candidates; once `confirm` messages have followed the first one, the jump
    is accepted and every held message is released in order;
  * neither: the held chain is dead-lettered and this message becomes the only candidate.
At end of input (`flush`) leftover candidates are dead-lettered.

Bars (`ordered=True`) must also have strictly increasing open times: a duplicate or a rewind is
dead-lettered at once and changes nothing. Trades may arrive out of order (the bar builder's grace
period handles lateness), so no ordering is required of them.

Pure and picklable: no clock, no I/O; the same input gives the same output however it is batched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from schemas.messages import NS_PER_SECOND, Bar, Trade

if TYPE_CHECKING:  # annotations only: operators need not load pydantic
    from schemas.config import BarsConfig, ValidationConfig

M = TypeVar("M", Trade, Bar)
# An output in input order: (message, None) accepted, or (message, reason) to dead-letter.
Verdict = tuple[M, str | None]

_log = math.log
_exp = math.exp
# EWMA weight of the recent range: about the last 60 messages.
ALPHA = 2.0 / 61.0


def prices(m: Trade | Bar) -> tuple[float, float, float]:
    """(low, high, reference price) of a message: its price for a trade, low/high/close for a
    bar."""
    if type(m) is Bar:
        return m.low, m.high, m.close
    p = m.price  # type: ignore[union-attr]
    return p, p, p


# A held candidate: (message, why it is held, ts_event, low, high, reference price).
_Held = tuple[M, str, int, float, float, float]


@dataclass(frozen=True, slots=True)
class Rules:
    """The thresholds (cfg.validation); a frozen value, so engines holding it stay picklable."""

    hold_ahead_ns: int  # further ahead of the good watermark than this: held
    max_ahead_ns: int  # a candidate chain may not step further ahead than this
    move_k: float
    move_floor: float
    confirm: int

    def __post_init__(self) -> None:
        if self.hold_ahead_ns <= 0 or self.max_ahead_ns <= 0 or self.confirm < 1:
            raise ValueError("hold_ahead_ns and max_ahead_ns must be > 0 and confirm >= 1")
        if not (self.move_k > 0 and self.move_floor > 0):
            raise ValueError("move_k and move_floor must be > 0")

    @classmethod
    def for_bars(cls, v: ValidationConfig) -> Rules:
        ahead = int(v.max_ahead_s * NS_PER_SECOND)
        return cls(ahead, ahead, v.move_k, v.move_floor, v.confirm)

    @classmethod
    def for_trades(cls, v: ValidationConfig, bars: BarsConfig) -> Rules:
        """A trade moves the bar builder's watermark: one far enough ahead to make real trades
        late (beyond the grace period) is held, so the hold horizon is the grace (>= 1 s)."""
        ahead = int(v.max_ahead_s * NS_PER_SECOND)
        hold = min(ahead, max(bars.grace_ms * 1_000_000, NS_PER_SECOND))
        return cls(hold, ahead, v.move_k, v.move_floor, v.confirm)


# The defaults of cfg.validation for bars (a test keeps them equal to ValidationConfig()).
BAR_RULES = Rules(86_400 * NS_PER_SECOND, 86_400 * NS_PER_SECOND, 50.0, 0.25, 3)


# Duplicates and rewinds only (bars we built ourselves from guarded trades).
ORDER_ONLY = Rules(2**63, 2**63, 1.0, math.inf, 1)


class Plausibility(Generic[M]):
    """State for one symbol. `check(msg)` -> None when the message is accepted as it is (the
    common, fast case), else the verdicts released by it in order (possibly none: held).

    The band is kept in price space (last good price x/÷ exp(band)), so the common case costs
    two comparisons and two logs (the EWMA), not one log per price."""

    __slots__ = (
        "_band",
        "_eb",
        "_hi_lim",
        "_lo_lim",
        "confirm",
        "held",
        "hold_ahead_ns",
        "jumps",
        "kind",
        "max_ahead_ns",
        "move_floor",
        "move_k",
        "ordered",
        "quarantined",
        "ref_price",
        "scale",
        "watermark",
    )

    def __init__(self, rules: Rules, *, ordered: bool, kind: str = "bar") -> None:
        self.hold_ahead_ns = rules.hold_ahead_ns
        self.max_ahead_ns = rules.max_ahead_ns
        self.move_k = rules.move_k
        self.move_floor = rules.move_floor
        self.confirm = rules.confirm
        self.ordered = ordered
        self.kind = kind  # "bar" or "trade", for the reason strings
        self.watermark = -1  # largest accepted event time (-1: nothing accepted yet)
        self.ref_price = 0.0  # the last good price
        self.scale = 0.0  # EWMA of per-message log range / move
        self._band = rules.move_floor  # max(move_floor, move_k * scale)
        self._eb = _exp(self._band)
        self._hi_lim = self._lo_lim = 0.0  # the band around ref_price
        self.held: list[_Held[M]] = []
        self.quarantined = 0  # messages this guard dead-lettered (time, price, order)
        self.jumps = 0  # confirmed jumps

    @property
    def band(self) -> float:
        return self._band

    @property
    def ref(self) -> float:
        """Log of the last good price."""
        return _log(self.ref_price) if self.ref_price > 0.0 else 0.0

    def _accept(self, ts: int, lo: float, hi: float, ref: float, jump: bool) -> None:
        act = _log(hi / lo) if hi != lo else 0.0
        if self.watermark < 0:
            scale = act
        else:
            last = self.ref_price
            if not jump and ref != last:  # a jump's own distance would widen the band
                d = _log(ref / last)
                if d < 0.0:
                    d = -d
                if d > act:
                    act = d
            scale = self.scale + ALPHA * (act - self.scale)
        self.scale = scale
        band = self.move_k * scale
        if band < self.move_floor:
            band = self.move_floor
        if band != self._band:
            self._band = band
            self._eb = _exp(band)
        eb = self._eb
        self.ref_price = ref
        self._hi_lim = ref * eb
        self._lo_lim = ref / eb
        if ts > self.watermark:
            self.watermark = ts

    def _problem(
        self, ts: int, lo: float, hi: float, base_ts: int, base_ref: float, ahead_ns: int
    ) -> str | None:
        """Why the message is implausible relative to (base_ts, base_ref), or None."""
        if ts - base_ts > ahead_ns:
            return (
                f"implausible time: {self.kind} {(ts - base_ts) / 1e9:.0f}s ahead of the "
                f"symbol's watermark (limit {ahead_ns / 1e9:g}s)"
            )
        eb = self._eb
        if hi > base_ref * eb or lo < base_ref / eb:
            move = max(_log(hi / base_ref), _log(base_ref / lo))
            return (
                f"implausible price: {self.kind} moved {move:.4f} in log terms from the last "
                f"good price {base_ref:.10g} (band {self._band:.4f})"
            )
        return None

    def _dead_held(self, out: list[Verdict[M]]) -> None:
        out.extend((h[0], h[1]) for h in self.held)
        self.quarantined += len(self.held)
        self.held = []

    def check(self, m: M) -> list[Verdict[M]] | None:
        ts = m.ts_event
        wm = self.watermark
        if isinstance(m, Bar):
            lo, hi, ref = m.low, m.high, m.close
        else:
            lo = hi = ref = m.price
        if (  # the common case: nothing held, in time, inside the band
            wm >= 0
            and not self.held
            and ts - wm <= self.hold_ahead_ns
            and self._lo_lim <= lo
            and hi <= self._hi_lim
            and (ts > wm or not self.ordered)
        ):
            # _accept(..., jump=False) inlined: this runs for every bar and trade
            last = self.ref_price
            act = _log(hi / lo) if hi != lo else 0.0
            if ref != last:
                d = _log(ref / last)
                if d < 0.0:
                    d = -d
                if d > act:
                    act = d
            scale = self.scale
            scale += ALPHA * (act - scale)
            self.scale = scale
            band = self.move_k * scale
            if band > self.move_floor or self._band != self.move_floor:
                self._band = band = max(band, self.move_floor)
                self._eb = _exp(band)
            eb = self._eb
            self.ref_price = ref
            self._hi_lim = ref * eb
            self._lo_lim = ref / eb
            if ts > wm:
                self.watermark = ts
            return None
        return self._judge(m, ts, lo, hi, ref)

    def _judge(self, m: M, ts: int, lo: float, hi: float, ref: float) -> list[Verdict[M]] | None:
        wm = self.watermark
        if self.ordered and ts <= wm:
            self.quarantined += 1
            return [(m, f"duplicate {self.kind}" if ts == wm else f"out-of-order {self.kind}")]
        if wm < 0:  # the first message of a symbol: only the stateless checks apply
            self._accept(ts, lo, hi, ref, False)
            return None
        problem = self._problem(ts, lo, hi, wm, self.ref_price, self.hold_ahead_ns)
        held = self.held
        if problem is None:
            self._accept(ts, lo, hi, ref, False)
            if not held:
                return None
            out: list[Verdict[M]] = []
            self._dead_held(out)
            out.append((m, None))
            return out
        out = []
        if held:
            last_ts, last_ref = held[-1][2], held[-1][5]
            follows = not (self.ordered and ts <= last_ts) and (
                self._problem(ts, lo, hi, last_ts, last_ref, self.max_ahead_ns) is None
            )
            if follows:
                held.append((m, problem, ts, lo, hi, ref))
                if len(held) > self.confirm:  # the jump is real: release everything in order
                    for i, (msg, _, t, lo_, hi_, ref_) in enumerate(held):
                        self._accept(t, lo_, hi_, ref_, i == 0)
                        out.append((msg, None))
                    self.held = []
                    self.jumps += 1
                return out
            self._dead_held(out)
        self.held = [(m, problem, ts, lo, hi, ref)]
        return out

    def flush(self) -> list[Verdict[M]]:
        """End of input: candidates never confirmed are dead-lettered."""
        out: list[Verdict[M]] = []
        self._dead_held(out)
        return out
