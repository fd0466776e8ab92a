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
    """A producer's view at a bar close: +1 long, 0 flat, -1 short (or exit for long-only).

    `strategy` names the producer (a rule such as the SMA cross, or a model producer); a model's
    signal also carries the model, its version, the feature set's version, the class
    probabilities (in the model's class order), its confidence and horizon in bars."""

    symbol: str
    ts_event: int
    ts_init: int
    strategy: str
    direction: int
    strength: float = 1.0
    reason: str = ""
    model: str = ""
    model_version: str = ""
    feature_version: str = ""
    proba: tuple[float, ...] = ()
    confidence: float = 1.0
    horizon: int = 0  # bars the model's label looks ahead (0: a rule, no horizon)


class Prediction(Message, frozen=True):
    """One model's scoring of one bar (every bar, whether or not it moved the direction)."""

    producer: str
    symbol: str
    ts_event: int  # the bar's close: when the prediction is known
    ts_init: int
    model: str
    model_version: str
    feature_version: str
    classes: tuple[int, ...]
    proba: tuple[float, ...]
    direction: int  # what the decision rule made of it
    confidence: float


class ModelInfo(Message, frozen=True):
    """A registry version (offline/registry/): written when registered and when promoted."""

    name: str
    version: str
    ts_event: int  # registered at
    ts_init: int
    kind: str
    feature_set: str
    feature_version: str
    label: str
    promoted: bool
    metrics_json: str  # per-fold metrics, JSON
    meta_json: str  # the whole metadata file, JSON


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
    """An intent the risk engine (or the account's own margin/cash check, rule "account")
    rejected: the rule, its reason and the numbers it compared (None where none applies)."""

    intent_id: str
    symbol: str
    ts_event: int
    ts_init: int
    rule: str
    reason: str
    value: float | None = None
    limit: float | None = None
    side: Side | None = None
    qty: float = 0.0  # base quantity asked for (0 for a quote-budget buy)
    notional: float = 0.0  # quote value of the intent at its reference price
    cause: str = "signal"  # what asked for the order (see `Order.cause`)


OrderType = Literal["market", "limit", "stop"]  # "stop" = stop-market
TimeInForce = Literal["GTC", "IOC", "GTD"]
Liquidity = Literal["taker", "maker"]
AccountKind = Literal["spot", "margin"]
ExpiryReason = Literal["IOC", "GTD", "canceled", "unfillable"]  # unfillable: < one lot


class Order(Message, frozen=True):
    """An order accepted by risk and sent to execution (orders.v1). `cause` is what asked for
    it: "signal", an exit rule ("stop_loss", "take_profit", "trailing_stop"), "halt" (flatten on
    a halt or a kill switch), "flatten" (an operator's command)."""

    order_id: str
    symbol: str
    ts_event: int
    ts_init: int
    side: Side
    qty: float = 0.0
    quote_budget: float = 0.0
    order_type: OrderType = "market"
    limit_price: float = 0.0
    stop_price: float = 0.0
    time_in_force: TimeInForce = "GTC"
    cause: str = "signal"
    # What decided a signal's order: the producer, and for a model its version and the feature
    # set version it scored ("" for exits, halts and commands).
    producer: str = ""
    model_version: str = ""
    feature_version: str = ""


class SubmitOrder(Message, frozen=True):
    """Command to the execution simulator: work an order. `ts_event` is the submit time; it
    becomes active at the first bar whose open time >= ts_event + latency. Exactly one of qty
    (base) and quote_budget (quote to spend including fees; market buys only) is > 0."""

    order_id: str
    symbol: str
    ts_event: int
    ts_init: int
    side: Side
    qty: float = 0.0
    quote_budget: float = 0.0
    order_type: OrderType = "market"
    limit_price: float = 0.0  # limit orders
    stop_price: float = 0.0  # stop orders: buy triggers at >= stop, sell at <= stop
    time_in_force: TimeInForce = "GTC"
    expire_ts: int = 0  # GTD: works on bars that close at or before this time


class CancelOrder(Message, frozen=True):
    """Command: stop working an order (whatever has not filled yet)."""

    order_id: str
    ts_event: int
    ts_init: int


class OrderFilled(Message, frozen=True):
    """An order (partly) filled in one bar (the simulator's event; `Fill` is its wire form)."""

    fill_id: str  # "<order_id>-<n>", n = 1, 2, ... per order
    order_id: str
    symbol: str
    ts_event: int  # open time of the bar it filled in
    ts_init: int
    side: Side
    price: float  # after slippage
    qty: float
    fee: float  # quote, paid from cash
    liquidity: Liquidity
    base_price: float  # the price on the bar's path before slippage (within [low, high])
    slippage_bps: float  # applied against the trader; 0 for maker fills
    leaves_qty: float  # base still working (qty orders); 0 for quote-budget orders
    leaves_quote: float  # quote budget still working (quote-budget orders); 0 otherwise
    done: bool  # nothing left to work


class OrderExpired(Message, frozen=True):
    """What was left of an order ended by its time in force (IOC or GTD) or a cancel."""

    order_id: str
    symbol: str
    ts_event: int
    ts_init: int
    reason: ExpiryReason
    filled_qty: float
    leaves_qty: float
    leaves_quote: float


class Liquidation(Message, frozen=True):
    """A margin account's position closed by the liquidation engine at `price`."""

    account: str
    symbol: str
    ts_event: int
    ts_init: int
    side: Side  # the closing trade's side (buy closes a short)
    qty: float
    price: float
    fee: float
    realized_pnl: float  # of this close, gross of the fee
    equity_before: float  # at the marks that triggered it
    maintenance_margin: float  # of the whole account at those marks


class PositionState(Message, frozen=True):
    """One symbol's position inside an `AccountState`."""

    symbol: str
    qty: float  # signed: < 0 short
    avg_price: float
    mark_price: float
    realized_pnl: float  # gross of fees
    unrealized_pnl: float
    fees: float
    notional: float  # signed qty * mark


class AccountState(Message, frozen=True):
    """An account's books at one time (all symbols)."""

    account: str
    ts_event: int
    ts_init: int
    kind: AccountKind
    cash: float
    equity: float
    realized_pnl: float  # gross of fees
    unrealized_pnl: float
    fees: float
    gross_exposure: float  # sum |qty| * mark
    net_exposure: float  # sum qty * mark
    initial_margin: float  # gross exposure / max_leverage (0 for spot)
    maintenance_margin: float  # gross exposure * maintenance rate (0 for spot)
    positions: tuple[PositionState, ...]  # by symbol, open positions only


TradingMode = Literal["active", "reducing", "halted"]


class TradingStateChanged(Message, frozen=True):
    """The account's trading state moved (ACTIVE -> REDUCING (reduce-only) -> HALTED), or one
    symbol became reduce-only / active again (`symbol` set: stale market data)."""

    account: str
    ts_event: int
    ts_init: int
    old: TradingMode
    new: TradingMode
    reason: str
    symbol: str = ""  # "" = the whole account


class _Command(Message, frozen=True, tag_field="command"):
    """Operator commands on control.commands.v1, JSON tagged by `command`."""

    command_id: str  # unique per command: a re-delivered command is applied once
    ts_event: int  # when the operator issued it (wall clock)
    ts_init: int
    reason: str = ""
    account: str = "account"


class HaltTrading(_Command, frozen=True, tag="halt"):
    """Kill switch: HALTED at once (no new risk), positions flattened if configured so."""


class ResumeTrading(_Command, frozen=True, tag="resume"):
    """Back to ACTIVE after a halt or a breaker (an operator's decision, never automatic)."""


class FlattenPositions(_Command, frozen=True, tag="flatten"):
    """Close every open position at market (the trading state is unchanged)."""


Command = HaltTrading | ResumeTrading | FlattenPositions


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


TripSide = Literal["long", "short"]


class RoundTrip(Message, frozen=True):
    """One position from flat back to flat in one symbol (operators/analytics/round_trips.py).

    A fill that crosses zero (a margin flip) closes one trip and opens the next, its qty and fee
    split pro rata. `qty` is the largest |position| of the trip; prices are qty-weighted averages
    of the opening and the closing fills; `fees` are both sides'; `pnl` = gross_pnl - fees and
    `ret` = pnl / entry notional. `exit_reason` is the closing order's cause ("signal",
    "stop_loss", "take_profit", "trailing_stop", "halt", "flatten"), "liquidation", or "open"
    for a trip still open at the end (marked to the last price when one is known, else its
    exit price and PnL are NaN). producer / model_version are the opening order's."""

    trip_id: str  # "<symbol>-<n>", n = 1, 2, ... per symbol in opening order
    symbol: str
    ts_event: int  # = ts_exit
    ts_init: int
    side: TripSide
    ts_entry: int
    ts_exit: int
    qty: float
    entry_price: float
    exit_price: float
    gross_pnl: float
    fees: float
    pnl: float
    ret: float
    duration_ns: int
    exit_reason: str
    producer: str
    model_version: str
    entry_order_id: str
    exit_order_id: str  # "" for a liquidation or an open trip


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
