"""Quiet account steps booked in one pass: the account's hot path in a replay.

Most steps of a replay decide nothing: every decision is None, no order is working, no position
is due for liquidation, no resting exit or breaker watches the book. Such a step only marks its
symbols at the close, books one `EquityPoint` and feeds the risk monitor. `book_quiet` does
exactly that for a run of such steps with the per-step bookkeeping of `AccountTrader._step`
hoisted out of the loop: the same floats in the same order (equity = cash + the open positions'
qty * mark summed in symbol order), the same events, the same final state. A test holds it equal
to booking every step one at a time, state included.

With `AccountTrader.columnar` (the flow's setting) a run's points come out as one `RowBlock`
in their place: the same rows, column by column, for the ClickHouse sink to write as arrays.

Nothing in a quiet step can make the next one un-quiet (no order can fill, no position changes,
a flat margin account cannot be liquidated), so the condition is checked once per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from schemas.blocks import Emitted, RowBlock
from schemas.messages import NS_PER_DAY, Bar, EquityPoint

if TYPE_CHECKING:
    from operators.account_trader import AccountTrader, Decision


def can_book_quietly(tr: AccountTrader) -> bool:
    """Whether a step whose decisions are all None can only mark and book equity."""
    acct = tr.account
    if tr._observing or tr.brackets.active or tr._orders or acct.pending_liquidation:
        return False
    if any(tr.sim.working.values()):
        return False
    # a margin account with open positions checks its maintenance margin at every close
    return acct.kind == "spot" or all(p.qty == 0.0 for p in acct.positions.values())


def book_quiet(tr: AccountTrader, steps: Sequence[list[Decision]], out: list[Emitted]) -> None:
    """Book `steps` (each: the decisions at one open time, symbols in name order, no signal,
    every close > 0: a bad close is left to the one-step path, which refuses it)."""
    acct, mon = tr.account, tr.monitor
    cash, name = acct.cash, acct.account
    spot = acct.kind == "spot"
    held = [(s, p.qty) for s, p in sorted(acct.positions.items()) if p.qty != 0.0] if spot else []
    marks = {s: p.mark_price for s, p in acct.positions.items()}
    per_bar = mon.track_vol or mon.forecast_window is not None  # measures: fed bar by bar
    per_step = mon.track_sharpe
    day, sod, prev, peak, trades = mon.day, mon.sod_equity, mon.equity, mon.peak_equity, None
    last: dict[str, Bar] = {}
    tc = ti = 0
    # The points column by column (cash is constant: nothing fills in a quiet step).
    t_close: list[int] = []
    t_init: list[int] = []
    values: list[float] = []
    equities: list[float] = []
    for at_t in steps:
        tc = ti = 0
        for bar, _ in at_t:
            marks[bar.symbol] = bar.close
            last[bar.symbol] = bar
            if bar.ts_close > tc:
                tc = bar.ts_close
            if bar.ts_init > ti:
                ti = bar.ts_init
            if per_bar:
                mon.on_bar(bar.symbol, bar.close, bar.ts_close)
        v = 0.0
        for s, q in held:
            v += q * marks[s]
        eq = cash + v  # spot: cash + position_value; a flat margin account: cash + 0.0
        t_close.append(tc)
        t_init.append(ti)
        values.append(eq - cash)
        equities.append(eq)
        if per_step:
            mon.on_equity(tc, eq)
        else:  # RiskMonitor.on_equity without the Sharpe window
            d = (tc - 1) // NS_PER_DAY
            if day is None:
                day = d
            elif d != day:
                day, sod, trades = d, prev, 0
            prev = eq
            if eq > peak:
                peak = eq
    if t_close:
        block = RowBlock(
            EquityPoint,
            {"ts_event": t_close, "ts_init": t_init, "position_value": values, "equity": equities},
            {"account": name, "cash": cash},
        )
        if tr.columnar:  # the flow: one block, written to ClickHouse as arrays
            out.append(block)
        else:
            out.extend(block.structs())
    if not per_step:
        mon.day, mon.sod_equity, mon.equity, mon.peak_equity = day, sod, prev, peak
        if trades is not None:
            mon.trades_today = trades
    for s, bar in last.items():  # first-seen order: positions and stats are made in step order
        acct.mark(s, bar.close, bar.ts_close)
        if not per_bar:
            mon.on_bar(s, bar.close, bar.ts_close)
        tr.last_bar[s] = bar
    if steps:
        tr.now, tr.now_init = tc, ti
