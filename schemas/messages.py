"""Typed, immutable wire messages.

Data are nouns (`Trade`, `Bar`), commands imperative, events past tense. All times are int
nanoseconds since the epoch, UTC: `ts_event` is when it happened (exchange time, or bar open
time for bars), `ts_init` is when cryptoflow created the object. In a replay `ts_init` is derived
from event time, never from the wall clock, so reruns are byte-identical.

msgspec Structs decode ~4x faster than pydantic models; `frozen=True` makes them hashable and
immutable; `forbid_unknown_fields` turns schema drift into a dead letter instead of silent loss.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Side = Literal["buy", "sell"]

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND
NS_PER_DAY = 86_400 * NS_PER_SECOND


class Message(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every wire message."""


class Trade(Message, frozen=True):
    """One exchange trade (a tick)."""

    symbol: str
    ts_event: int
    ts_init: int
    trade_id: int
    price: float
    size: float
    aggressor: Side  # the taker's side: Binance is_buyer_maker=True means the seller aggressed
    venue: str = "binance_spot"


class Bar(Message, frozen=True):
    """An OHLCV bar covering [ts_event, ts_event + interval_ns): ts_event is the open time."""

    symbol: str
    ts_event: int
    ts_init: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    interval_ns: int = NS_PER_MINUTE
    n_trades: int = 0  # 0 when the bar did not come from our own trade aggregation
    buy_volume: float = 0.0  # taker-buy base volume, when built from trades

    @property
    def ts_close(self) -> int:
        return self.ts_event + self.interval_ns


class Signal(Message, frozen=True):
    """A strategy's view at a bar close: +1 long, 0 flat, -1 short (or exit for long-only)."""

    symbol: str
    ts_event: int
    ts_init: int
    strategy: str
    direction: int
    strength: float = 1.0
    reason: str = ""


class OrderIntent(Message, frozen=True):
    """What sizing wants to trade, before risk. Buys size by quote budget, sells by base qty."""

    intent_id: str
    symbol: str
    ts_event: int
    ts_init: int
    side: Side
    qty: float = 0.0  # base quantity (sells, or buys of a known size)
    quote_budget: float = 0.0  # quote to spend including fees (all-in buys); 0 = use qty
    ref_price: float = 0.0  # price the decision saw (bar close), for risk estimates


class OrderDenied(Message, frozen=True):
    """An intent the risk engine rejected, with the rule's reason."""

    intent_id: str
    symbol: str
    ts_event: int
    ts_init: int
    rule: str
    reason: str


class Order(Message, frozen=True):
    """A market order accepted by risk and sent to execution (SubmitOrder on the wire)."""

    order_id: str
    symbol: str
    ts_event: int
    ts_init: int
    side: Side
    qty: float = 0.0
    quote_budget: float = 0.0
    order_type: Literal["market"] = "market"


class Fill(Message, frozen=True):
    """An order (partly) filled: OrderFilled on the wire."""

    fill_id: str
    order_id: str
    symbol: str
    ts_event: int
    ts_init: int
    side: Side
    price: float
    qty: float
    fee: float  # in quote currency, paid from cash
    liquidity: Literal["taker", "maker"] = "taker"


class PositionSnapshot(Message, frozen=True):
    """One symbol's position after a fill or at the end of a run (cash: the account's)."""

    symbol: str
    ts_event: int
    ts_init: int
    qty: float
    avg_price: float
    cash: float
    realized_pnl: float  # gross of fees
    unrealized_pnl: float
    fees: float  # cumulative
    mark_price: float


class EquityPoint(Message, frozen=True):
    """Marked-to-market equity of the account ("account") at a bar close across its symbols."""

    account: str
    ts_event: int
    ts_init: int
    cash: float
    position_value: float
    equity: float


class Metric(Message, frozen=True):
    """A named operational or performance number (late trades, bars built, ...)."""

    name: str
    ts_event: int
    ts_init: int
    value: float
    labels: str = ""  # "k=v,k=v", sorted, so the natural key is stable


class DeadLetter(Message, frozen=True):
    """Input that could not be processed, kept with the reason so nothing is lost silently."""

    ts_init: int
    source: str  # topic or step the payload came from
    reason: str
    payload: str  # the raw payload (utf-8, or repr of bytes)
    key: str = ""
    ts_event: int = 0
    # Where in the input it came from, unique within a run and the same on every rerun and
    # worker count: "<topic>/<partition>/<offset>" for Kafka records, the row's natural key for
    # file rows, "<step>:<symbol>:<n>" for rejects of stateful steps. The table key.
    origin: str = ""


class RunInfo(Message, frozen=True):
    """Metadata of one run (backtest, paper or live); `summary` is the report as JSON."""

    run_id: str
    ts_init: int  # the run's first event time in replay, wall clock at start in live
    mode: Literal["backtest", "paper", "live"]
    source: str
    start: int  # ns, 0 = unbounded
    end: int  # ns, 0 = unbounded
    symbols: str  # comma-separated
    config_json: str
    summary_json: str = ""


class FeatureRow(Message, frozen=True):
    """One bar's feature values for a symbol, in the column order of feature set `version`
    (names in `FeatureSetInfo`); ts_event is the bar's open time, values are known at its close."""

    symbol: str
    ts_event: int
    ts_init: int
    feature_set: str
    version: str
    values: tuple[float, ...]


class FeatureSetInfo(Message, frozen=True):
    """The columns and specs of a feature set version (one row per version)."""

    version: str
    feature_set: str
    ts_init: int
    columns: tuple[str, ...]
    specs: tuple[str, ...]
