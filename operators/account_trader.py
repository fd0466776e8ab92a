"""The one account across all symbols: per-symbol decisions merged in event time, then
execution -> accounting -> sizing -> risk on ONE `Account` (docs/adr/0009).

Input: (bar, signal | None) pairs, each symbol's in its own bar order (the per-symbol strategy
runs upstream, keyed by symbol). Pairs are buffered per symbol and released in (bar open time,
symbol name) order once every symbol of the account has shown a bar at or after that time —
FeatureEngine's alignment — so results never depend on how the sources or Bytewax workers
interleave symbols. A symbol that stops sending holds the account back until `flush` (end of a
bounded replay).

For the bars released at open time t (symbols in name order):
1. each symbol's orders decided at its previous bar's close fill at this bar's open (fee and
   slippage as `SimulatedExecution`), booked on the account (fill + PositionSnapshot);
2. each symbol is marked at its close; then one account EquityPoint (account "account");
3. each symbol's signal, if any, is sized from ACCOUNT equity (`FractionOfEquity`; a buy's
   budget is also capped by the cash not already reserved by pending buys; a budget at or
   below 1e-9 of equity is no trade), risk-checked and submitted to fill at that symbol's
   next bar open.

Spot account: with fraction 1.0 ("all-in") the first entry takes all the cash and other symbols'
entries are skipped (no budget) until cash comes back from a sell.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import msgspec

from operators.account import Account
from operators.execution import SimulatedExecution
from operators.sizing import FractionOfEquity
from schemas.messages import Bar, Order, OrderDenied, Signal

ACCOUNT = "account"
# A buy budget at or below this fraction of equity is no trade: the float residue of an all-in
# entry elsewhere, not capital to deploy.
MIN_BUDGET_REL = 1e-9

Decision = tuple[Bar, Signal | None]


class AccountTrader:
    def __init__(
        self,
        symbols: Sequence[str],
        initial_cash: float,
        sizer: FractionOfEquity,
        risk_rules: Sequence[object],
        fee_bps: float,
        slippage_bps: float,
        account: str = ACCOUNT,
    ) -> None:
        self.symbols = tuple(sorted(set(symbols)))
        if not self.symbols:
            raise ValueError("an account needs at least one symbol")
        self.account = Account(account, initial_cash)
        self.sizer = sizer
        self.risk_rules = list(risk_rules)
        self.execution = {s: SimulatedExecution(fee_bps, slippage_bps) for s in self.symbols}
        self._pending: dict[str, deque[Decision]] = {s: deque() for s in self.symbols}
        self._watermark: dict[str, int] = {s: -1 for s in self.symbols}  # last open time seen
        self._seq: dict[str, int] = {s: 0 for s in self.symbols}
        self.last_bar: dict[str, Bar] = {}
        # Live only: symbols marked stale (no bar for a while, by the caller's clock) do not
        # hold the account back until they send again.
        self.stale: set[str] = set()

    # --- input ---------------------------------------------------------------------------------

    def update(self, decisions: Sequence[Decision]) -> list[msgspec.Struct]:
        out: list[msgspec.Struct] = []
        for bar, sig in decisions:
            sym = bar.symbol
            q = self._pending.get(sym)
            if q is None:
                raise ValueError(f"{sym} is not one of the account's symbols {list(self.symbols)}")
            if bar.ts_event <= self._watermark[sym]:
                raise ValueError(f"{sym} bar at {bar.ts_event} is not after the last one")
            self._watermark[sym] = bar.ts_event
            self.stale.discard(sym)
            q.append((bar, sig))
        self._release(out, final=False)
        return out

    def release_stale(self, symbols: Sequence[str]) -> list[msgspec.Struct]:
        """Live: stop waiting for `symbols` (they sent nothing for the caller's stale delay) and
        release what the others are held for. A stale symbol's next bar un-stales it; if it is
        older than what was already released, it is booked on arrival (late, out of account
        order: live only — replays never call this, so they stay deterministic)."""
        self.stale.update(s for s in symbols if s in self._pending)
        out: list[msgspec.Struct] = []
        self._release(out, final=False)
        return out

    def flush(self) -> list[msgspec.Struct]:
        """Release everything held (end of input), then each symbol's final position."""
        out: list[msgspec.Struct] = []
        self._release(out, final=True)
        for sym in self.symbols:
            bar = self.last_bar.get(sym)
            if bar is not None:
                out.append(self.account.position_snapshot(sym, bar.ts_close, bar.ts_init))
        return out

    @property
    def held(self) -> int:
        return sum(len(q) for q in self._pending.values())

    # --- the loop ------------------------------------------------------------------------------

    def _release(self, out: list[msgspec.Struct], final: bool) -> None:
        pending = self._pending
        live = [w for s, w in self._watermark.items() if s not in self.stale]
        limit = min(live) if live else max(self._watermark.values())
        while True:
            heads = [q[0][0].ts_event for q in pending.values() if q]
            if not heads:
                return
            t = min(heads)
            if not final and t > limit:
                return
            at_t = [q.popleft() for q in pending.values() if q and q[0][0].ts_event == t]
            self._step(at_t, out)  # symbols in name order, like `pending`

    def _step(self, at_t: list[Decision], out: list[msgspec.Struct]) -> None:
        acct = self.account
        for bar, _ in at_t:  # 1. fills at the open
            for fill in self.execution[bar.symbol].on_bar_open(bar):
                acct.apply_fill(fill)
                out.append(fill)
                out.append(acct.position_snapshot(fill.symbol, fill.ts_event, fill.ts_init))
        ts_close = ts_init = 0
        for bar, _ in at_t:  # 2. marks at the close, one account equity point
            acct.mark(bar.symbol, bar.close, bar.ts_close)
            self.last_bar[bar.symbol] = bar
            ts_close = max(ts_close, bar.ts_close)
            ts_init = max(ts_init, bar.ts_init)
        out.append(acct.equity_point(ts_close, ts_init))
        for bar, sig in at_t:  # 3. decisions
            if sig is not None:
                out.extend(self._decide(sig, bar))

    def _reserved(self) -> float:
        """Cash promised to buys submitted but not filled yet."""
        return sum(
            (o.quote_budget for x in self.execution.values() for o in x.pending if o.side == "buy"),
            0.0,
        )

    def _decide(self, signal: Signal, bar: Bar) -> list[msgspec.Struct]:
        acct = self.account
        sym = bar.symbol
        self._seq[sym] += 1
        intent_id = f"{sym}-{self._seq[sym]}"
        qty = acct.qty(sym)
        cash = acct.cash - self._reserved()
        intent = self.sizer.size(signal, intent_id, qty, cash, acct.equity, bar.close)
        if intent is None:
            return []
        if intent.side == "buy" and intent.quote_budget <= MIN_BUDGET_REL * acct.equity:
            return []
        for rule in self.risk_rules:
            reason = rule.check(intent, qty)  # type: ignore[attr-defined]
            if reason is not None:
                return [
                    OrderDenied(
                        intent_id=intent.intent_id,
                        symbol=intent.symbol,
                        ts_event=intent.ts_event,
                        ts_init=intent.ts_init,
                        rule=rule.name,  # type: ignore[attr-defined]
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
        self.execution[sym].submit(order)
        return [order]
