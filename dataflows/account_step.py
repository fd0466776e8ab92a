"""The one account's Bytewax shim (operators/account_trader.py): every symbol's decisions and the
control commands on one key, "account"."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from dataflows.shutdown import stopping
from dataflows.steps import Batch, _Shim
from operators.account_trader import AccountTrader


class AccountLogic(_Shim):
    """Every symbol's (bar, signal) decisions, one key ("account") -> fills, positions, account
    equity, orders and denials of the one account (operators/account_trader.py).

    Live (`stale_after_s`), a symbol that sent no bar for that long (wall clock) while others
    are held for it is marked stale, so it cannot hold the account up; replays pass None and
    wait for every symbol, which keeps them deterministic."""

    def __init__(
        self,
        new_trader: Callable[[], AccountTrader],
        resume: AccountTrader | None,
        stale_after_s: float | None = None,
    ) -> None:
        self.new_trader = new_trader
        self.state: AccountTrader | None = resume
        if resume is not None:
            resume.columnar = True
        self.stale_after_s = stale_after_s
        self._seen: dict[str, float] = {}  # symbol -> wall time of its last bar (not snapshotted)
        self._since = time.monotonic()

    def on_item(self, value: Batch) -> tuple[list[Batch], bool]:
        if self.state is None:
            self.state = self.new_trader()
            self.state.columnar = True  # equity runs as blocks: the sink writes them as arrays
        if self.stale_after_s is not None:
            now = time.monotonic()
            for item in value:
                if type(item) is tuple:
                    self._seen[item[0].symbol] = now
        out = self.state.update(value)
        return ([out] if out else []), self.RETAIN

    def notify_at(self) -> datetime | None:
        if self.stale_after_s is None or self.state is None or not self.state.held:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.stale_after_s)

    def on_notify(self) -> tuple[list[Batch], bool]:
        st = self.state
        if st is None or self.stale_after_s is None:
            return [], self.RETAIN
        cutoff = time.monotonic() - self.stale_after_s
        quiet = [s for s in st.symbols if self._seen.get(s, self._since) <= cutoff]
        out = st.release_stale(quiet) if quiet else []
        return ([out] if out else []), self.RETAIN

    def on_eof(self) -> tuple[list[Batch], bool]:
        if stopping():  # a requested stop, not the end of the data: keep state for the resume
            return [], self.RETAIN
        if self.state is None:
            return [], self.RETAIN
        out = self.state.flush()
        return ([out] if out else []), self.RETAIN
