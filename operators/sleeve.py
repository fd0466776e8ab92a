"""One symbol's trading loop: execution -> accounting -> sizing -> risk, one bar at a time.

Not used by the flow since ADR 0009 (one account across symbols: operators/account_trader.py);
kept as the single-symbol loop its tests check against the numpy reference.

Capital is split into independent sleeves, one per symbol (docs/adr/0002). Each sleeve depends
only on its own symbol's ordered bars, so results cannot depend on how Bytewax interleaves
symbols across workers — the property that makes reruns byte-identical.

Order of events for bar t: orders decided at t-1's close fill at t's open; the position is marked
at t's close (equity point); then t's signal, if any, is sized, risk-checked and submitted to
fill at t+1's open.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from operators.execution import SimulatedExecution
from operators.portfolio import Portfolio
from operators.sizing import FractionOfEquity
from schemas.messages import Bar, Order, OrderDenied, OrderIntent, Signal


class RiskRule(Protocol):
    name: str

    def check(self, intent: OrderIntent, position_qty: float) -> str | None: ...


class Sleeve:
    def __init__(
        self,
        symbol: str,
        initial_cash: float,
        sizer: FractionOfEquity,
        risk_rules: Sequence[RiskRule],
        execution: SimulatedExecution,
    ) -> None:
        self.symbol = symbol
        self.portfolio = Portfolio(symbol, initial_cash)
        self.sizer = sizer
        self.risk_rules = list(risk_rules)
        self.execution = execution
        self._seq = 0
        self.last_bar: Bar | None = None

    def on_bar(self, bar: Bar, signal: Signal | None) -> list[msgspec.Struct]:
        out: list[msgspec.Struct] = []
        pf = self.portfolio
        for fill in self.execution.on_bar_open(bar):
            pf.apply(fill)
            out.append(fill)
            out.append(pf.snapshot(fill.ts_event, fill.ts_init))
        pf.mark(bar.close)
        out.append(pf.equity_point(bar.ts_close, bar.ts_init))
        self.last_bar = bar
        if signal is not None:
            out.extend(self._decide(signal, bar))
        return out

    def _decide(self, signal: Signal, bar: Bar) -> list[msgspec.Struct]:
        pf = self.portfolio
        self._seq += 1
        intent_id = f"{self.symbol}-{self._seq}"
        intent = self.sizer.size(signal, intent_id, pf.qty, pf.cash, pf.equity, bar.close)
        if intent is None:
            return []
        for rule in self.risk_rules:
            reason = rule.check(intent, pf.qty)
            if reason is not None:
                return [
                    OrderDenied(
                        intent_id=intent.intent_id,
                        symbol=intent.symbol,
                        ts_event=intent.ts_event,
                        ts_init=intent.ts_init,
                        rule=rule.name,
                        reason=reason,
                    )
                ]
        order = Order(
            order_id=intent.intent_id,
            symbol=intent.symbol,
            ts_event=intent.ts_event,
            ts_init=intent.ts_init,
            side=intent.side,
            qty=intent.qty,
            quote_budget=intent.quote_budget,
        )
        self.execution.submit(order)
        return [order]

    def final_snapshot(self) -> list[msgspec.Struct]:
        """Position at the end of a bounded replay (marked at the last close)."""
        if self.last_bar is None:
            return []
        bar = self.last_bar
        return [self.portfolio.snapshot(bar.ts_close, bar.ts_init)]
