"""What a pre-trade risk rule may look at, and what it answers.

`RiskContext` is one intent plus frozen views of the account, the market and the day, built by the
flow just before the check. Rules read it and return a `Denial` or None; they never mutate it,
never read the wall clock and never raise on odd values (NaN, zero equity, a missing mark): each
rule documents whether such a value denies or passes. Limits compare `value <= limit` (or `>=` for
minimums) written so that NaN fails the comparison and therefore denies ("fail closed").

Post-trade quantities (`post_qty`, `post_gross`, ...) assume the order fills entirely at `price`
and ignore fees: a risk estimate, not accounting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Protocol

from schemas.messages import OrderDenied, Side

_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "EUR")


class Tier(IntEnum):
    """Engine order: cheap order-shape checks first, account-wide breakers last."""

    ORDER = 0
    POSITION = 1
    DAILY = 2
    PORTFOLIO = 3
    SYSTEM = 4


@dataclass(frozen=True, slots=True)
class Denial:
    """Why an intent was refused: the rule, a human reason, and the numbers compared."""

    rule: str
    reason: str
    value: float
    limit: float

    def to_message(
        self,
        intent_id: str,
        symbol: str,
        ts_event: int,
        ts_init: int,
        *,
        side: Side | None = None,
        qty: float = 0.0,
        notional: float = 0.0,
        cause: str = "signal",
    ) -> OrderDenied:
        """The wire `OrderDenied`; non-finite compared values travel as None (JSON has no NaN)."""
        return OrderDenied(
            intent_id=intent_id,
            symbol=symbol,
            ts_event=ts_event,
            ts_init=ts_init,
            rule=self.rule,
            reason=self.reason,
            value=self.value if math.isfinite(self.value) else None,
            limit=self.limit if math.isfinite(self.limit) else None,
            side=side,
            qty=qty,
            notional=notional if math.isfinite(notional) else 0.0,
            cause=cause,
        )


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """Exchange filters of one symbol (Binance spot PRICE_FILTER, LOT_SIZE, NOTIONAL)."""

    tick_size: float
    lot_size: float
    min_notional: float


# Binance spot's real filters (exchangeInfo) for the symbols the project ships data for.
BINANCE_SPOT_SPECS: Mapping[str, SymbolSpec] = {
    "BTCUSDT": SymbolSpec(tick_size=0.01, lot_size=0.00001, min_notional=5.0),
    "ETHUSDT": SymbolSpec(tick_size=0.01, lot_size=0.0001, min_notional=5.0),
    "SOLUSDT": SymbolSpec(tick_size=0.01, lot_size=0.001, min_notional=5.0),
}


@dataclass(frozen=True, slots=True)
class MarketView:
    """One symbol's recent market state.

    `last_bar_ts` is the close time (ns) of the symbol's latest bar; `realized_vol` and
    `normal_vol` are the same volatility measure over a recent and a long window (None while
    warming up).
    """

    last_price: float
    realized_vol: float | None = None
    normal_vol: float | None = None
    last_bar_ts: int | None = None


@dataclass(frozen=True)
class RiskContext:
    """One intent and everything the rules may judge it by. Mappings are read-only by contract.

    Build it with `RiskContext.build(...)`, which derives gross/net exposure and the open
    positions count from `positions` and `marks`; the raw constructor takes them as given.
    """

    ts: int  # decision time, ns UTC (the bar close the strategy saw)
    symbol: str
    side: Side
    qty: float  # base quantity, > 0 (for quote-budget buys: budget / price)
    price: float  # reference price of the decision (bar close)
    notional: float  # qty * price, or the quote budget of an all-in buy
    limit_price: float | None = None  # None for market orders
    # account
    equity: float = 0.0
    cash: float = 0.0
    sod_equity: float = 0.0  # equity at 00:00 UTC of the day of `ts`
    peak_equity: float = 0.0  # highest equity so far (drawdown reference)
    positions: Mapping[str, float] = field(default_factory=dict)  # signed base qty
    marks: Mapping[str, float] = field(default_factory=dict)  # last mark price per symbol
    gross_exposure: float = 0.0  # sum |qty * mark|
    net_exposure: float = 0.0  # sum qty * mark
    open_positions: int = 0
    # market
    market: Mapping[str, MarketView] = field(default_factory=dict)
    # day
    trades_today: int = 0
    consecutive_losses: int = 0
    last_loss_ts: int | None = None
    sharpe: float | None = None  # rolling; None while the window is too short
    reduce_only: bool = False  # from the trading state (REDUCING, HALTED, or a stale symbol)
    # symbol metadata
    tick_size: float = 0.0
    lot_size: float = 0.0
    min_notional: float = 0.0

    @classmethod
    def build(
        cls,
        *,
        ts: int,
        symbol: str,
        side: Side,
        qty: float,
        price: float,
        notional: float | None = None,
        positions: Mapping[str, float] | None = None,
        marks: Mapping[str, float] | None = None,
        spec: SymbolSpec | None = None,
        **rest: object,
    ) -> RiskContext:
        """A context with exposure derived from the book. An open position without a mark makes
        gross/net NaN: exposure rules then deny new risk instead of guessing."""
        pos = dict(positions or {})
        mk = dict(marks or {})
        gross, net, n_open = exposure(pos, mk)
        meta = spec if spec is not None else BINANCE_SPOT_SPECS.get(symbol)
        extra: dict[str, object] = {}
        if meta is not None:
            extra = {
                "tick_size": meta.tick_size,
                "lot_size": meta.lot_size,
                "min_notional": meta.min_notional,
            }
        extra.update(rest)
        return cls(
            ts=ts,
            symbol=symbol,
            side=side,
            qty=qty,
            price=price,
            notional=qty * price if notional is None else notional,
            positions=pos,
            marks=mk,
            gross_exposure=gross,
            net_exposure=net,
            open_positions=n_open,
            **extra,  # type: ignore[arg-type]
        )

    # -- derived views, all total (NaN in, NaN or False out) --------------------------------

    @property
    def position_qty(self) -> float:
        return self.positions.get(self.symbol, 0.0)

    @property
    def signed_qty(self) -> float:
        return self.qty if self.side == "buy" else -self.qty

    @property
    def post_qty(self) -> float:
        return self.position_qty + self.signed_qty

    @property
    def mark(self) -> float:
        """The symbol's mark, else the market's last price, else the order's price."""
        m = self.marks.get(self.symbol)
        if m is None:
            view = self.market.get(self.symbol)
            m = view.last_price if view is not None else self.price
        return m

    @property
    def reduces_risk(self) -> bool:
        """True for a positive-size order that shrinks the symbol's position without flipping
        it (a sell against a long, a buy against a short). Such orders pass every tier except
        the order tier."""
        pre, post = self.position_qty, self.post_qty
        return self.qty > 0.0 and pre != 0.0 and pre * post >= 0.0 and abs(post) < abs(pre)

    @property
    def post_position_notional(self) -> float:
        return abs(self.post_qty * self.price)

    def _pre_value(self) -> float:
        pre = self.position_qty
        return 0.0 if pre == 0.0 else pre * self.mark

    @property
    def post_gross(self) -> float:
        """Gross exposure after the fill, the traded symbol revalued at the order's price."""
        return self.gross_exposure - abs(self._pre_value()) + self.post_position_notional

    @property
    def post_net(self) -> float:
        return self.net_exposure - self._pre_value() + self.post_qty * self.price

    @property
    def opens_position(self) -> bool:
        return self.position_qty == 0.0 and self.post_qty != 0.0


def exposure(
    positions: Mapping[str, float], marks: Mapping[str, float]
) -> tuple[float, float, int]:
    """(gross, net, open positions) of signed quantities at their marks; an open position
    without a mark makes gross and net NaN (exposure rules then deny new risk)."""
    gross = net = 0.0
    n_open = 0
    for sym, q in positions.items():
        if q == 0.0:
            continue
        n_open += 1
        m = marks.get(sym, math.nan)
        gross += abs(q * m)
        net += q * m
    return gross, net, n_open


class RiskCheck(Protocol):
    """A pre-trade rule: a frozen dataclass of config values with a class-level name and tier."""

    name: ClassVar[str]
    tier: ClassVar[Tier]

    def check(self, ctx: RiskContext) -> Denial | None: ...


def within(value: float, limit: float) -> bool:
    """value <= limit, False for NaN (fail closed)."""
    return value <= limit


def at_least(value: float, limit: float) -> bool:
    """value >= limit, False for NaN (fail closed)."""
    return value >= limit


def is_multiple(x: float, step: float) -> bool:
    """x is an integer multiple of step, tolerant of float representation (0.3 / 0.1)."""
    n = x / step
    return math.isfinite(n) and abs(n - round(n)) <= 1e-9 * max(1.0, abs(n))


def floor_to_step(x: float, step: float) -> float:
    """Round x down to a multiple of step (for sizing quantities to the lot); x if step <= 0."""
    if not step > 0.0 or not math.isfinite(x):
        return x
    n = math.floor(x / step + 1e-9)
    # rounding through the step's decimals keeps 3 * 0.1 from printing as 0.30000000000000004
    decimals = max(0, -math.floor(math.log10(step)) + 1)
    return round(n * step, decimals)


def base_asset(symbol: str) -> str:
    """BTCUSDT -> BTC; a symbol with no known quote suffix is its own asset."""
    for q in _QUOTES:
        if symbol.endswith(q) and len(symbol) > len(q):
            return symbol[: -len(q)]
    return symbol
