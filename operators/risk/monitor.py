"""What the risk layer measures as the account trades: per-symbol market views (last price,
realized and normal volatility, last bar time) and the account's day (start-of-day equity,
trades today, consecutive losing round trips), its peak equity and rolling Sharpe.

Pure and picklable; fed by the account step at every bar and fill, in account order, so a replay
gives the same numbers on any worker count. Volatility is the standard deviation of one-bar log
returns of closes over a window of bars (`vol_window` recent, `normal_window` long); None until
the window is full. The UTC day of an equity point at close time `ts` is that of `ts - 1` (the
bar closing at 00:00 belongs to the day it ends).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from operators.account import Account
from operators.risk.context import MarketView, RiskContext, SymbolSpec
from operators.risk.state import TradingState
from schemas.messages import NS_PER_DAY, Side

NS_PER_YEAR = 365 * NS_PER_DAY


@dataclass
class RollingStd:
    """Sample standard deviation over the last `window` values (running sums, re-summed once
    per window so float drift never accumulates)."""

    window: int
    values: deque[float] = field(default_factory=deque)
    s1: float = 0.0
    s2: float = 0.0
    _since: int = 0

    def push(self, x: float) -> None:
        v = self.values
        v.append(x)
        self.s1 += x
        self.s2 += x * x
        if len(v) > self.window:
            old = v.popleft()
            self.s1 -= old
            self.s2 -= old * old
        self._since += 1
        if self._since >= self.window:
            self._since = 0
            self.s1 = math.fsum(v)
            self.s2 = math.fsum(y * y for y in v)

    @property
    def full(self) -> bool:
        return len(self.values) >= self.window

    def mean(self) -> float:
        n = len(self.values)
        return self.s1 / n if n else math.nan

    def std(self) -> float | None:
        n = len(self.values)
        if n < self.window or n < 2:
            return None
        var = (self.s2 - self.s1 * self.s1 / n) / (n - 1)
        return math.sqrt(var) if var > 0.0 else 0.0


@dataclass
class SymbolStats:
    last_price: float = math.nan
    last_bar_ts: int | None = None  # close time of the latest bar
    recent: RollingStd = field(default_factory=lambda: RollingStd(60))
    normal: RollingStd = field(default_factory=lambda: RollingStd(10080))
    forecast: RollingStd | None = None  # vol-target sizing's window, when it has its own
    # the open round trip: realized PnL and fees since the position left flat
    trip_pnl: float = 0.0


class RiskMonitor:
    def __init__(
        self,
        initial_equity: float,
        vol_window: int = 60,
        normal_window: int = 10080,
        sharpe_window: int = 10080,
        bar_interval_ns: int = 60_000_000_000,
        *,
        track_vol: bool = True,
        track_sharpe: bool = True,
        forecast_window: int | None = None,
    ) -> None:
        """`track_vol` / `track_sharpe` off (nothing reads them: risk off) save their per-bar
        cost; `forecast_window` (vol-target sizing) keeps one more volatility window."""
        if not 2 <= vol_window < normal_window:
            raise ValueError("vol_window must be >= 2 and < normal_window")
        if sharpe_window < 2:
            raise ValueError("sharpe_window must be >= 2")
        self.vol_window = vol_window
        self.normal_window = normal_window
        self.symbols: dict[str, SymbolStats] = {}
        self.peak_equity = initial_equity
        self.sod_equity = initial_equity
        self.equity = initial_equity
        self.day: int | None = None
        self.trades_today = 0
        self.consecutive_losses = 0
        self.last_loss_ts: int | None = None
        self.returns = RollingStd(sharpe_window)
        self.track_vol = track_vol
        self.track_sharpe = track_sharpe
        if forecast_window is not None and forecast_window < 2:
            raise ValueError("forecast_window must be >= 2")
        self.forecast_window = forecast_window
        self.annualize = math.sqrt(NS_PER_YEAR / bar_interval_ns)

    def stats(self, symbol: str) -> SymbolStats:
        st = self.symbols.get(symbol)
        if st is None:
            fw = self.forecast_window
            st = self.symbols[symbol] = SymbolStats(
                recent=RollingStd(self.vol_window),
                normal=RollingStd(self.normal_window),
                forecast=RollingStd(fw) if fw is not None and fw != self.vol_window else None,
            )
        return st

    # --- feeds ---------------------------------------------------------------------------------

    def on_bar(self, symbol: str, close: float, ts_close: int) -> None:
        st = self.symbols.get(symbol) or self.stats(symbol)
        prev = st.last_price
        measured = self.track_vol or self.forecast_window is not None
        if measured and prev > 0.0 and close > 0.0:  # a log per bar only if something reads it
            r = math.log(close / prev)
            if self.track_vol or self.forecast_window == self.vol_window:
                st.recent.push(r)
            if self.track_vol:
                st.normal.push(r)
            if st.forecast is not None:
                st.forecast.push(r)
        st.last_price = close
        st.last_bar_ts = ts_close

    def on_equity(self, ts_close: int, equity: float) -> None:
        """The account's equity at a step's close (after marks)."""
        day = (ts_close - 1) // NS_PER_DAY
        if self.day is None:
            self.day = day
        elif day != self.day:
            self.day = day
            self.sod_equity = self.equity  # the previous step's equity: the day's opening
            self.trades_today = 0
        prev = self.equity
        if self.track_sharpe and prev > 0.0 and math.isfinite(equity):
            self.returns.push(equity / prev - 1.0)
        self.equity = equity
        if equity > self.peak_equity:
            self.peak_equity = equity

    def on_trade(self) -> None:
        """An order that opens or adds risk was accepted (what max_trades_per_day counts)."""
        self.trades_today += 1

    def on_fill(self, symbol: str, realized: float, fee: float, flat_after: bool, ts: int) -> None:
        """A booked fill; a position back to flat closes its round trip, which counts as a loss
        when its realized PnL net of every fee is below zero."""
        st = self.stats(symbol)
        st.trip_pnl += realized - fee
        if flat_after:
            if st.trip_pnl < 0.0:
                self.consecutive_losses += 1
                self.last_loss_ts = ts
            else:
                self.consecutive_losses = 0
            st.trip_pnl = 0.0

    # --- views ---------------------------------------------------------------------------------

    def vol(self, symbol: str) -> float | None:
        """The sizing forecast: one-bar volatility over `forecast_window` bars (None while
        warming up, or when no window was asked for)."""
        st = self.symbols.get(symbol)
        if st is None or self.forecast_window is None:
            return None
        return (st.forecast or st.recent).std()

    def sharpe(self) -> float | None:
        """Annualized Sharpe of one-step equity returns over the window; None while short or
        when the returns do not vary (a flat account has no Sharpe, not a bad one)."""
        r = self.returns
        sd = r.std()
        if sd is None or not sd > 0.0:
            return None
        return r.mean() / sd * self.annualize


def risk_context(
    acct: Account,
    mon: RiskMonitor,
    state: TradingState,
    spec: SymbolSpec,
    ts: int,
    sym: str,
    side: Side,
    qty: float,
    price: float,
    notional: float | None = None,
    limit_price: float | None = None,
) -> RiskContext:
    """One intent against the account's book, the market views and the day, as the rules see
    it (operators/risk/context.py)."""
    positions = {s: p.qty for s, p in acct.positions.items() if p.qty != 0.0}
    marks = {s: p.mark_price for s, p in acct.positions.items() if p.mark_price > 0.0}
    market = {
        s: MarketView(st.last_price, st.recent.std(), st.normal.std(), st.last_bar_ts)
        for s, st in mon.symbols.items()
    }
    return RiskContext.build(
        ts=ts,
        symbol=sym,
        side=side,
        qty=qty,
        price=price,
        notional=notional,
        limit_price=limit_price,
        positions=positions,
        marks=marks,
        spec=spec,
        equity=acct.equity,
        cash=acct.cash,
        sod_equity=mon.sod_equity,
        peak_equity=mon.peak_equity,
        market=market,
        trades_today=mon.trades_today,
        consecutive_losses=mon.consecutive_losses,
        last_loss_ts=mon.last_loss_ts,
        sharpe=mon.sharpe(),
        reduce_only=state.reduce_only(sym),
    )
