"""The one account across all symbols: per-symbol decisions merged in event time, then
execution -> accounting -> risk state -> exits -> sizing -> risk checks on ONE `Account`
(docs/adr/0009, docs/risk.md, docs/execution.md).

Input: (bar, signal | None) pairs, each symbol's in its own bar order (the per-symbol strategy
runs upstream), and operator commands (`HaltTrading`, `ResumeTrading`, `FlattenPositions`).
Pairs are buffered per symbol and released in (bar open time, symbol name) order once every
symbol of the account has shown a bar at or after that time, so results never depend on how the
sources or Bytewax workers interleave symbols. A symbol that stops sending holds the account back
until `flush` (end of a bounded replay) or, live, `release_stale`.

For the bars released at open time t (symbols in name order):
1. per symbol: a liquidation due from the last close happens at this bar's open; then the
   execution simulator works the symbol's orders through the bar (fills, expiries); fills are
   booked; a position back to flat cancels its resting exits (one-cancels-other);
2. each symbol is marked at its close; a margin account below maintenance margin is due for
   liquidation; one account `EquityPoint`; the risk monitor updates;
3. the trading state machine sees the book (drawdown, black swan, stale data) and may move
   ACTIVE -> REDUCING -> HALTED; entering HALTED cancels every working order and, configured so,
   flattens every position;
4. resting exits (stop-loss / trailing stop, take-profit) are placed or moved for each open
   position of the symbols at t;
5. each symbol's signal is sized from ACCOUNT equity, checked (the trading state's reduce-only
   guard, every configured risk rule, then the account's own cash / margin check) and submitted
   to the simulator, to work from the next bar open (plus latency). A refusal is an
   `OrderDenied` naming the rule, its reason and the values compared.

Commands apply when they arrive (within the bar: a halt stops new orders at once and its
flattening orders work from the next bar open).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from operators.account import Account, AccountError
from operators.account_exits import sync_exits
from operators.account_orders import dead_fill, order_event, with_working, working_market_qty
from operators.account_quiet import book_quiet, can_book_quietly
from operators.execution_sim import ExecutionSim, to_fill
from operators.risk.black_swan import BlackSwan
from operators.risk.brackets import Brackets, ExitOrder, both_touched
from operators.risk.context import Denial, RiskContext, SymbolSpec, floor_to_step
from operators.risk.drawdown_breaker import DrawdownBreaker
from operators.risk.engine import RiskEngine
from operators.risk.monitor import RiskMonitor, risk_context
from operators.risk.stale_data import StaleData
from operators.risk.state import Mode, TradingState, TradingStateChanged
from operators.sizing import FractionOfEquity, Sizer
from schemas.blocks import Emitted
from schemas.messages import (
    Bar,
    CancelOrder,
    DeadLetter,
    FlattenPositions,
    HaltTrading,
    OrderExpired,
    OrderFilled,
    ResumeTrading,
    Side,
    Signal,
    SubmitOrder,
    TimeInForce,
)
from schemas.messages import TradingStateChanged as StateEvent

ACCOUNT = "account"
# A buy budget at or below this fraction of equity is no trade: the float residue of an all-in
# entry elsewhere, not capital to deploy.
MIN_BUDGET_REL = 1e-9

Decision = tuple[Bar, Signal | None]
Command = HaltTrading | ResumeTrading | FlattenPositions
_NO_SPEC = SymbolSpec(0.0, 0.0, 0.0)


class AccountTrader:
    batch_quiet = True  # quiet steps in one pass (account_quiet.py); tests: False, one by one
    # The flow's setting: a quiet run's equity points come out as one `RowBlock` (columns the
    # ClickHouse sink writes as arrays) instead of one struct per bar; the same rows.
    columnar = False

    def __init__(
        self,
        symbols: Sequence[str],
        account: Account,
        *,
        sim: ExecutionSim | None = None,
        sizer: Sizer | None = None,
        engine: RiskEngine | None = None,
        state: TradingState | None = None,
        brackets: Brackets | None = None,
        monitor: RiskMonitor | None = None,
        specs: Mapping[str, SymbolSpec] | None = None,
        round_to_lot: bool = False,
        allow_short: bool = False,
        time_in_force: TimeInForce = "GTC",
    ) -> None:
        self.symbols = tuple(sorted(set(symbols)))
        if not self.symbols:
            raise ValueError("an account needs at least one symbol")
        if allow_short and account.kind != "margin":
            raise ValueError("short selling needs a margin account (portfolio.kind = 'margin')")
        self.account = account
        self.sim = sim if sim is not None else ExecutionSim()
        self.sizer: Sizer = sizer if sizer is not None else FractionOfEquity(1.0)
        self.engine = engine if engine is not None else RiskEngine(())
        # Always a state machine: the kill switch works even with every risk rule off (then
        # only commands move it, and nothing needs observing).
        self.state = state if state is not None else _inert_state()
        self._observing = state is not None
        self.brackets = brackets if brackets is not None else Brackets((), None)
        self.monitor = monitor if monitor is not None else RiskMonitor(account.initial_cash)
        self.specs = dict(specs or {})
        self.round_to_lot = round_to_lot
        if round_to_lot:
            missing = [s for s in self.symbols if s not in self.specs]
            if missing:
                raise ValueError(f"no lot size for {missing}: add them under [markets]")
        self.allow_short = allow_short
        self.tif: TimeInForce = time_in_force
        self.taker_rate = self.sim.config.taker_fee_bps * 1e-4
        self._pending: dict[str, deque[Decision]] = {s: deque() for s in self.symbols}
        self._watermark: dict[str, int] = {s: -1 for s in self.symbols}  # last open time seen
        self._seq: dict[str, int] = {s: 0 for s in self.symbols}
        self.last_bar: dict[str, Bar] = {}
        self.stale: set[str] = set()  # live only: symbols that do not hold the account back
        self._exits: dict[str, dict[str, tuple[str, ExitOrder]]] = {}  # symbol -> kind -> order
        self._orders: dict[str, SubmitOrder] = {}  # working orders by id
        self._causes: dict[str, str] = {}
        self._origin = _NO_ORIGIN  # the signal being decided (orders it causes carry it)
        self._best: dict[str, float] = {}  # most favourable close since the position opened
        self._commands: set[str] = set()  # command ids applied (a re-delivery is a no-op)
        self.observe_every_bar = False  # tests: skip the `_may_change` filter
        self.now = 0  # close time of the last step (the account's clock)
        self.now_init = 0

    # --- input ---------------------------------------------------------------------------------

    def update(self, items: Sequence[Decision | Command | DeadLetter]) -> list[Emitted]:
        out: list[Emitted] = []
        pending, mark, stale = self._pending, self._watermark, self.stale
        for item in items:
            if type(item) is not tuple:
                if type(item) is DeadLetter:  # an undecodable command: kept, not applied
                    out.append(item)
                    continue
                self._release(out, final=False)
                out.extend(self.command(item))  # type: ignore[arg-type]
                continue
            bar = item[0]
            sym = bar.symbol
            q = pending.get(sym)
            if q is None:
                raise ValueError(f"{sym} is not one of the account's symbols {list(self.symbols)}")
            if bar.ts_event <= mark[sym]:
                raise ValueError(f"{sym} bar at {bar.ts_event} is not after the last one")
            mark[sym] = bar.ts_event
            if stale:
                stale.discard(sym)
            q.append(item)
        self._release(out, final=False)
        return out

    def release_stale(self, symbols: Sequence[str]) -> list[Emitted]:
        """Live: stop waiting for `symbols` (they sent nothing for the caller's stale delay) and
        release what the others are held for. A stale symbol's next bar un-stales it; if it is
        older than what was already released, it is booked on arrival (late, out of account
        order: live only; replays never call this, so they stay deterministic)."""
        self.stale.update(s for s in symbols if s in self._pending)
        out: list[Emitted] = []
        self._release(out, final=False)
        return out

    def flush(self) -> list[Emitted]:
        """Release everything held (end of input), then each symbol's final position."""
        out: list[Emitted] = []
        self._release(out, final=True)
        for sym in self.symbols:
            bar = self.last_bar.get(sym)
            if bar is not None:
                out.append(self.account.position_snapshot(sym, bar.ts_close, bar.ts_init))
        return out

    @property
    def held(self) -> int:
        return sum(len(q) for q in self._pending.values())

    def command(self, cmd: Command) -> list[Emitted]:
        """Apply an operator command now; events carry the account's clock (the last close).
        A command for another account, or one already applied (re-delivered), does nothing."""
        if cmd.account != self.account.account or cmd.command_id in self._commands:
            return []
        self._commands.add(cmd.command_id)
        ts = self.now or cmd.ts_event
        ts_init = self.now_init or cmd.ts_init
        out: list[Emitted] = []
        if isinstance(cmd, HaltTrading):
            tr = self.state.halt(ts, cmd.reason or cmd.command_id)
            self._state_events(tr.events, ts_init, out)
            if tr.events:
                self._cancel_all(ts, ts_init, out)
                if self.state.flatten_on_halt:
                    self._flatten(ts, ts_init, "halt", out)
        elif isinstance(cmd, ResumeTrading):
            tr = self.state.resume(ts, cmd.reason or cmd.command_id)
            self._state_events(tr.events, ts_init, out)
        else:
            self._cancel_all(ts, ts_init, out)
            self._flatten(ts, ts_init, "flatten", out)
        return out

    # --- the loop ------------------------------------------------------------------------------

    def _release(self, out: list[Emitted], final: bool) -> None:
        pending = self._pending
        live = [w for s, w in self._watermark.items() if s not in self.stale]
        limit = min(live) if live else max(self._watermark.values())
        quiet: list[list[Decision]] = []  # steps with nothing to decide, booked in one pass
        batch = self.batch_quiet
        for at_t in self._due(pending, limit, final):
            if batch:
                if len(at_t) == 1:
                    b, sig = at_t[0]
                    calm = sig is None and b.close > 0.0  # a bad close: the one-step path
                else:
                    calm = all(sig is None and b.close > 0.0 for b, sig in at_t)
                # nothing in a quiet step changes whether the next one can be quiet
                if calm and (quiet or can_book_quietly(self)):
                    quiet.append(at_t)
                    continue
            if quiet:
                book_quiet(self, quiet, out)
                quiet = []
            self._step(at_t, out)
        if quiet:
            book_quiet(self, quiet, out)

    @staticmethod
    def _due(
        pending: dict[str, deque[Decision]], limit: int, final: bool
    ) -> Iterator[list[Decision]]:
        """The decisions at each open time that may be released, oldest first, symbols in name
        order (like `pending`)."""
        if len(pending) == 1:  # one symbol: every step is one decision
            (q,) = pending.values()
            while q and (final or q[0][0].ts_event <= limit):
                yield [q.popleft()]
            return
        while True:
            heads = [q[0][0].ts_event for q in pending.values() if q]
            if not heads:
                return
            t = min(heads)
            if not final and t > limit:
                return
            yield [q.popleft() for q in pending.values() if q and q[0][0].ts_event == t]

    def _step(self, at_t: list[Decision], out: list[Emitted]) -> None:
        acct = self.account
        for bar, _ in at_t:  # 1. liquidations and fills in the bar
            if bar.symbol in acct.pending_liquidation:
                self._liquidate(bar, out)
            self._execute(bar, out)
        ts_close = ts_init = 0
        mon = self.monitor
        for bar, _ in at_t:  # 2. marks at the close, one account equity point
            acct.mark(bar.symbol, bar.close, bar.ts_close)
            mon.on_bar(bar.symbol, bar.close, bar.ts_close)
            self.last_bar[bar.symbol] = bar
            ts_close = max(ts_close, bar.ts_close)
            ts_init = max(ts_init, bar.ts_init)
        self.now, self.now_init = ts_close, ts_init
        if acct.kind == "margin" and not acct.pending_liquidation:
            acct.check_liquidation({}, ts_close)
        point = acct.equity_point(ts_close, ts_init)
        out.append(point)
        mon.on_equity(ts_close, point.equity)
        self._observe(ts_close, ts_init, out)  # 3. trading state
        if self.brackets.active:  # 4. resting exits
            for bar, _ in at_t:
                sync_exits(self, bar, out)
        for bar, sig in at_t:  # 5. decisions
            if sig is not None:
                self._decide(sig, bar, out)

    # --- 1. execution --------------------------------------------------------------------------

    def _execute(self, bar: Bar, out: list[Emitted]) -> None:
        sym = bar.symbol
        exits = self._exits.get(sym)
        if exits and "stop" in exits and "limit" in exits:
            (stop_id, stop), (tp_id, take) = exits["stop"], exits["limit"]
            if stop_id and tp_id and both_touched(bar, stop.side == "sell", stop.price, take.price):
                self._cancel(tp_id, bar.ts_event, bar.ts_init, out)  # the stop fills
        acct = self.account
        for ev in self.sim.on_bar(bar):
            if type(ev) is OrderExpired:
                out.append(ev)
                self._forget(ev.order_id)
                continue
            assert type(ev) is OrderFilled
            before = acct.qty(sym)
            try:
                realized = acct.apply_fill(ev)
            except AccountError as exc:  # a bug upstream: keep it, loudly, and keep running
                out.append(dead_fill(ev, str(exc)))
                continue
            after = acct.qty(sym)
            closed = before != 0.0 and (after == 0.0 or (before > 0.0) != (after > 0.0))
            self.monitor.on_fill(sym, realized, ev.fee, closed, ev.ts_event)
            out.append(to_fill(ev))
            out.append(acct.position_snapshot(sym, ev.ts_event, ev.ts_init))
            if ev.done:
                self._forget(ev.order_id)
            if after == 0.0 or closed:  # flat (or flipped): its old exits are void
                self._best.pop(sym, None)
                for oid, _ in list(self._exits.pop(sym, {}).values()):
                    self._cancel(oid, ev.ts_event, ev.ts_init, out)
            if after != 0.0 and sym not in self._best:
                self._best[sym] = ev.price

    def _liquidate(self, bar: Bar, out: list[Emitted]) -> None:
        sym = bar.symbol
        for o in self.sim.open_orders(sym):
            self._cancel(o.order_id, bar.ts_event, bar.ts_init, out)
        liq = self.account.liquidate(sym, bar.open, bar.ts_event, bar.ts_init)
        self.monitor.on_fill(sym, liq.realized_pnl, liq.fee, True, bar.ts_event)
        self._best.pop(sym, None)
        self._exits.pop(sym, None)
        out.append(liq)
        out.append(self.account.position_snapshot(sym, bar.ts_event, bar.ts_init))

    def _cancel(self, order_id: str, ts: int, ts_init: int, out: list[Emitted]) -> None:
        ev = self.sim.cancel(CancelOrder(order_id, ts, ts_init))
        if ev is not None:
            out.append(ev)
        self._forget(order_id)

    def _cancel_all(self, ts: int, ts_init: int, out: list[Emitted]) -> None:
        for oid in sorted(self._orders, key=lambda o: (self._orders[o].symbol, o)):
            self._cancel(oid, ts, ts_init, out)

    def _forget(self, order_id: str) -> None:
        o = self._orders.pop(order_id, None)
        self._causes.pop(order_id, None)
        if o is None:
            return
        kinds = self._exits.get(o.symbol)
        if kinds:
            for kind, (oid, _) in list(kinds.items()):
                if oid == order_id:
                    del kinds[kind]

    # --- 3. trading state ----------------------------------------------------------------------

    def _may_change(self, ts: int) -> bool:
        """A cheap necessary condition for `TradingState.observe` to change anything: a
        drawdown, a symbol's volatility or a bar's age beyond its breaker's limit, or a symbol
        flagged stale that may clear. Building the full RiskContext on every bar would cost
        more than the whole risk layer's budget (a test checks the filter against observing on
        every bar)."""
        st, mon = self.state, self.monitor
        if st.stale_symbols or st.swan or self.observe_every_bar:
            return True
        peak = mon.peak_equity
        if not (peak > 0.0 and (peak - mon.equity) / peak <= st.drawdown.max_drawdown):
            return True
        k, max_age = st.black_swan.k, st.stale.max_age_ns
        for sym in self.symbols:
            x = mon.symbols.get(sym)
            if x is None:
                continue
            if x.last_bar_ts is not None and ts - x.last_bar_ts > max_age:
                return True
            if x.recent.full and x.normal.full:
                vol, normal = x.recent.std(), x.normal.std()
                if vol is not None and normal is not None and vol > k * normal * (1.0 - 1e-12):
                    return True
        return False

    def _observe(self, ts: int, ts_init: int, out: list[Emitted]) -> None:
        st = self.state
        if not self._observing or (st.mode is Mode.HALTED and not st.stale_symbols):
            return  # nothing left to escalate; stale flags clear on the next observe after resume
        if not self._may_change(ts):
            return
        was = st.mode
        tr = st.observe(self._context(ts, self.symbols[0], "buy", 0.0, 0.0))
        self._state_events(tr.events, ts_init, out)
        if st.mode is Mode.HALTED and was is not Mode.HALTED:
            self._cancel_all(ts, ts_init, out)
            if st.flatten_on_halt:
                self._flatten(ts, ts_init, "halt", out)

    def _state_events(
        self, events: Sequence[TradingStateChanged], ts_init: int, out: list[Emitted]
    ) -> None:
        for e in events:
            out.append(
                StateEvent(
                    account=self.account.account,
                    ts_event=e.ts,
                    ts_init=ts_init,
                    old=e.old.value,
                    new=e.new.value,
                    reason=e.reason,
                    symbol=e.symbol or "",
                )
            )

    def _flatten(self, ts: int, ts_init: int, cause: str, out: list[Emitted]) -> None:
        for sym, pos in sorted(self.account.positions.items()):
            if pos.qty != 0.0:
                side: Side = "sell" if pos.qty > 0.0 else "buy"
                self._submit(sym, side, abs(pos.qty), 0.0, ts, ts_init, pos.mark_price, cause, out)

    # --- 5. decisions --------------------------------------------------------------------------

    def _decide(self, signal: Signal, bar: Bar, out: list[Emitted]) -> None:
        self._origin = (signal.strategy, signal.model_version, signal.feature_version)
        try:
            self._decide_signal(signal, bar, out)
        finally:
            self._origin = _NO_ORIGIN

    def _decide_signal(self, signal: Signal, bar: Bar, out: list[Emitted]) -> None:
        sym = bar.symbol
        q = self.account.qty(sym)
        d = signal.direction
        want = 1 if d > 0 else (-1 if d < 0 and self.allow_short else 0)
        cur = 1 if q > 0.0 else (-1 if q < 0.0 else 0)
        working = [o for o in self._orders.values() if o.symbol == sym]
        entry = [o for o in working if self._causes[o.order_id] == "signal"]
        if want == cur and not entry:
            return
        if entry and want != 0 and entry[0].side == ("buy" if want > 0 else "sell"):
            return  # that entry is already working
        ts, ts_init, price = bar.ts_close, bar.ts_init, bar.close
        if cur != 0 and want != cur:  # close first: every working order of the symbol is void
            for o in working:
                self._cancel(o.order_id, ts, ts_init, out)
            side: Side = "sell" if q > 0.0 else "buy"
            self._submit(sym, side, abs(q), 0.0, ts, ts_init, price, "signal", out)
        elif entry:
            for o in entry:
                self._cancel(o.order_id, ts, ts_init, out)
        if want == 0 or want == cur:  # flat wanted, or the order canceled was the close
            return
        acct = self.account
        equity = acct.equity
        notional = self.sizer.notional(equity, price, self.monitor.vol(sym))
        if not notional > 0.0:
            return
        if want > 0 and acct.kind == "spot":
            budget = min(notional, acct.cash - self._reserved())
            if budget <= MIN_BUDGET_REL * equity:
                return
            self._submit(sym, "buy", 0.0, budget, ts, ts_init, price, "signal", out)
            return
        qty = notional / price
        if self.round_to_lot:
            qty = floor_to_step(qty, self.specs[sym].lot_size)
        if qty > 0.0:
            self._submit(
                sym, "buy" if want > 0 else "sell", qty, 0.0, ts, ts_init, price, "signal", out
            )

    def _reserved(self) -> float:
        """Cash promised to buys submitted but not filled yet."""
        return sum((o.quote_budget for o in self._orders.values() if o.side == "buy"), 0.0)

    def _submit(
        self,
        sym: str,
        side: Side,
        qty: float,
        budget: float,
        ts: int,
        ts_init: int,
        price: float,
        cause: str,
        out: list[Emitted],
        exit_order: ExitOrder | None = None,
    ) -> str | None:
        """Check one order (trading state, risk rules, the account) and work it, or deny it."""
        self._seq[sym] += 1
        oid = f"{sym}-{self._seq[sym]}"
        # a quote budget pays the fee too: the base it buys at `price` (what the account checks)
        base_qty = qty if qty > 0.0 else budget / (price * (1.0 + self.taker_rate))
        if qty == 0.0 and self.round_to_lot:  # the simulator fills whole lots of a budget
            base_qty = floor_to_step(base_qty, self.specs[sym].lot_size)
        notional = budget if budget > 0.0 else qty * price
        limit = exit_order.price if exit_order is not None and exit_order.kind == "limit" else None
        ctx = self._context(ts, sym, side, base_qty, price, notional, limit)
        # market orders still working fill first: the entry of a flip after its close, a second
        # symbol's entry decided at the same close (operators/account_orders.py)
        ctx = with_working(ctx, working_market_qty(self.sim, ctx.marks, self.taker_rate))
        denial: Denial | None = None
        if self.state.reduce_only(sym) and not ctx.reduces_risk:
            mode = self.state.mode.value if self.state.mode is not Mode.ACTIVE else "stale data"
            denial = Denial("trading_state", f"reduce-only ({mode}): {self.state.reason}", 1.0, 0.0)
        if denial is None:
            denial = self.engine.check(ctx)
        cmd = SubmitOrder(
            order_id=oid,
            symbol=sym,
            ts_event=ts,
            ts_init=ts_init,
            side=side,
            qty=qty,
            quote_budget=budget,
            order_type="market" if exit_order is None else exit_order.kind,
            limit_price=limit or 0.0,
            stop_price=exit_order.price
            if exit_order is not None and exit_order.kind == "stop"
            else 0.0,
            time_in_force=self.tif if exit_order is None else "GTC",
        )
        if denial is None and not ctx.reduces_risk:
            problem = self.account.can_afford(cmd, price, self.taker_rate)
            if problem is not None:
                denial = Denial("account", problem, notional, self.account.equity)
        if denial is not None:
            out.append(
                denial.to_message(
                    oid, sym, ts, ts_init, side=side, qty=qty, notional=notional, cause=cause
                )
            )
            return None
        self.sim.submit(cmd)
        self._orders[oid] = cmd
        self._causes[oid] = cause
        if not ctx.reduces_risk:
            self.monitor.on_trade()
        out.append(order_event(cmd, cause, self._origin if cause == "signal" else _NO_ORIGIN))
        return oid

    def _context(self, ts: int, sym: str, *intent: Any) -> RiskContext:
        """`risk_context` of this account for (side, qty, price[, notional, limit_price])."""
        spec = self.specs.get(sym, _NO_SPEC)
        return risk_context(self.account, self.monitor, self.state, spec, ts, sym, *intent)


_NO_ORIGIN = ("", "", "")


def _inert_state() -> TradingState:
    """A state machine whose breakers never trip: with risk off only commands move it."""
    return TradingState(
        DrawdownBreaker(math.inf), BlackSwan(math.inf), StaleData(2**62), flatten_on_halt=True
    )


__all__ = ["ACCOUNT", "AccountTrader", "Decision"]
