"""The trading state machine: ACTIVE -> REDUCING (reduce-only) -> HALTED, with the reason.

Account mode only escalates on its own, with one exception: REDUCING entered on a black swan ends
by itself once every symbol's volatility is back within k x normal (a market condition, like
stale data). Leaving HALTED, or a REDUCING the operator or a loss caused, takes an explicit
`resume`, because a breaker that re-arms by itself trades straight back into what tripped it.
Staleness is per symbol and clears itself when a fresh bar arrives: it is a data condition, not a
risk breach. Every change is a `TradingStateChanged` event; entering HALTED with
`flatten_on_halt` also yields one closing `ExitIntent` per open position.

Drivers: `observe(ctx)` on every bar (drawdown -> HALTED, black swan -> `black_swan_action`, stale
symbol -> that symbol reduce-only) and the kill switch `halt(ts, reason)`, which takes effect
within the call. `reduce_only(symbol)` is what the flow puts into `RiskContext.reduce_only`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from operators.risk.black_swan import BlackSwan
from operators.risk.context import RiskContext
from operators.risk.drawdown_breaker import DrawdownBreaker
from operators.risk.exits import ExitIntent, Position, close_position
from operators.risk.stale_data import StaleData


class Mode(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


_RANK = {Mode.ACTIVE: 0, Mode.REDUCING: 1, Mode.HALTED: 2}


@dataclass(frozen=True, slots=True)
class TradingStateChanged:
    ts: int
    old: Mode
    new: Mode
    reason: str
    symbol: str | None = None  # None: the whole account; else one symbol's reduce-only flag


@dataclass(frozen=True, slots=True)
class Transition:
    events: tuple[TradingStateChanged, ...] = ()
    exits: tuple[ExitIntent, ...] = ()


class TradingState:
    def __init__(
        self,
        drawdown: DrawdownBreaker | None = None,
        black_swan: BlackSwan | None = None,
        stale: StaleData | None = None,
        black_swan_action: Mode = Mode.REDUCING,
        flatten_on_halt: bool = True,
    ) -> None:
        if black_swan_action not in (Mode.REDUCING, Mode.HALTED):
            raise ValueError("black_swan_action must be 'reducing' or 'halted'")
        self.drawdown = drawdown if drawdown is not None else DrawdownBreaker()
        self.black_swan = black_swan if black_swan is not None else BlackSwan()
        self.stale = stale if stale is not None else StaleData()
        self.black_swan_action = Mode(black_swan_action)
        self.flatten_on_halt = flatten_on_halt
        self.mode = Mode.ACTIVE
        self.reason = ""
        self.stale_symbols: dict[str, str] = {}  # symbol -> why it is reduce-only
        self.swan = False  # REDUCING because of a black swan (ends with the volatility)

    def reduce_only(self, symbol: str) -> bool:
        return self.mode is not Mode.ACTIVE or symbol in self.stale_symbols

    def observe(self, ctx: RiskContext) -> Transition:
        """Apply the system-tier breakers to the book and market in `ctx` (its intent fields are
        ignored). Drawdown is checked first, so a bar that breaches both goes straight to HALTED
        with one event."""
        events: list[TradingStateChanged] = []
        was = self.mode
        dd = self.drawdown.breach(ctx, ctx.symbol)
        if dd is not None:
            self._escalate(ctx.ts, Mode.HALTED, dd.reason, events)
        symbols = sorted(set(ctx.market) | {s for s, q in ctx.positions.items() if q != 0.0})
        swan = next((b for b in (self.black_swan.breach(ctx, s) for s in symbols) if b), None)
        if swan is not None:
            self._escalate(ctx.ts, self.black_swan_action, swan.reason, events)
            self.swan = self.mode is Mode.REDUCING
        elif self.swan and self.mode is Mode.REDUCING:
            # a volatility condition, not a loss: REDUCING ends when every symbol is back
            # within k x its normal level (a HALT never ends by itself)
            events.append(
                TradingStateChanged(
                    ctx.ts,
                    Mode.REDUCING,
                    Mode.ACTIVE,
                    "volatility back within the black-swan limit",
                )
            )
            self.mode, self.reason, self.swan = Mode.ACTIVE, "", False
        for sym in symbols:
            st = self.stale.breach(ctx, sym)
            if st is not None and sym not in self.stale_symbols:
                self.stale_symbols[sym] = st.reason
                events.append(
                    TradingStateChanged(ctx.ts, Mode.ACTIVE, Mode.REDUCING, st.reason, sym)
                )
            elif st is None and sym in self.stale_symbols:
                del self.stale_symbols[sym]
                events.append(
                    TradingStateChanged(ctx.ts, Mode.REDUCING, Mode.ACTIVE, "fresh bar", sym)
                )
        exits: tuple[ExitIntent, ...] = ()
        if self.mode is Mode.HALTED and was is not Mode.HALTED and self.flatten_on_halt:
            exits = self.flatten(ctx.ts, ctx.positions, ctx.marks, self.reason)
        return Transition(tuple(events), exits)

    def halt(
        self,
        ts: int,
        reason: str,
        positions: Mapping[str, float] | None = None,
        marks: Mapping[str, float] | None = None,
    ) -> Transition:
        """Kill switch: HALTED now. Halting an already halted account changes nothing and
        flattens nothing (call `flatten` to re-send closing orders)."""
        events: list[TradingStateChanged] = []
        self._escalate(ts, Mode.HALTED, f"kill switch: {reason}", events)
        exits: tuple[ExitIntent, ...] = ()
        if events and self.flatten_on_halt:
            exits = self.flatten(ts, positions or {}, marks or {}, self.reason)
        return Transition(tuple(events), exits)

    def resume(self, ts: int, reason: str) -> Transition:
        """Operator command back to ACTIVE; stale symbols stay reduce-only until fresh data."""
        if self.mode is Mode.ACTIVE:
            return Transition()
        event = TradingStateChanged(ts, self.mode, Mode.ACTIVE, f"resume: {reason}")
        self.mode, self.reason, self.swan = Mode.ACTIVE, "", False
        return Transition((event,))

    @staticmethod
    def flatten(
        ts: int, positions: Mapping[str, float], marks: Mapping[str, float], reason: str
    ) -> tuple[ExitIntent, ...]:
        """One closing intent per open position, in symbol order (deterministic). A missing mark
        leaves ref_price NaN: a halt closes at market regardless."""
        out = []
        for sym in sorted(positions):
            pos = Position(sym, positions[sym], math.nan)
            intent = close_position(pos, marks.get(sym, math.nan), ts, "halt", reason)
            if intent is not None:
                out.append(intent)
        return tuple(out)

    def _escalate(self, ts: int, new: Mode, reason: str, events: list[TradingStateChanged]) -> None:
        if _RANK[new] <= _RANK[self.mode]:
            return
        events.append(TradingStateChanged(ts, self.mode, new, reason))
        self.mode, self.reason = new, reason
