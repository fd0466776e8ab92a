"""`build_flow`: the one dataflow that replay, paper and live run, differing only in sources and
sinks.

    source batches ─ decode/validate ─┬─ dead letters ─────────────────────────────────────┐
                                      └─ per-symbol batches                                │
      (trades) ─ bars ─┐                                                                   │
      (bars) ──────────┴─ guard+features (per group) ─ strategy (per symbol) ─┬─ messages ──┤
                                          (bar, signal) decisions, one key ───┘            │
                               account (symbols merged by (open time, symbol)) ─ fills, ───┤
                                          orders, positions, account equity                │
                         orders.v1 / fills.v1 (Kafka) ┤     dlq.v1 (Kafka) ────────────────┤
                                     ClickHouse tables ┴───────────────────────────────────┘
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from dataflows.account_step import AccountLogic
from dataflows.producers import PromotionWatch, strategy_factory
from dataflows.steps import BarsLogic, FeaturesLogic, SignalLogic
from dataflows.trader import new_trader
from infra.clickhouse import TABLE_BY_CLASS
from operators.account_trader import ACCOUNT, AccountTrader
from operators.feature_engine import FeatureEngine
from operators.features import FeatureSet, feature_set
from operators.plausibility import BAR_RULES, ORDER_ONLY, Rules
from operators.validation import (
    LIMITS,
    Limits,
    TimeWindow,
    decode_batch,
    payload_text,
    validate_batch,
)
from schemas.blocks import RowBlock, class_of, expand
from schemas.codec import DecodeError, decoder, encode
from schemas.config import Config
from schemas.messages import (
    NS_PER_SECOND,
    Bar,
    Command,
    DeadLetter,
    FeatureRow,
    Fill,
    FlattenPositions,
    HaltTrading,
    Metric,
    Order,
    OrderDenied,
    ResumeTrading,
    Trade,
    TradingStateChanged,
)
from schemas.topics import CONTROL

if TYPE_CHECKING:  # annotations only: importing it would load polars for Kafka-only flows
    from dataflows.io.files import Kind


@dataclass
class FlowSinks:
    """Where outputs go. Any of them may be None (e.g. a unit test collects only `events`).

    clickhouse: items ("table", [messages]); orders/fills/dlq/denials/risk_state: items (key,
    json bytes);
    events: every emitted message, one item each (tests, in-process reports);
    monitor: the event batches as they are (counters for a heartbeat).
    """

    clickhouse: Sink[Any] | None = None
    orders: Sink[Any] | None = None
    fills: Sink[Any] | None = None
    dlq: Sink[Any] | None = None
    denials: Sink[Any] | None = None  # risk.denials.v1
    risk_state: Sink[Any] | None = None  # risk.state.v1
    events: Sink[Any] | None = None
    monitor: Sink[Any] | None = None  # event batches, unflattened (heartbeat counters)


def _decoder(
    kind: Kind,
    universe: frozenset[str],
    selected: frozenset[str],
    source: str,
    limits: Limits = LIMITS,
    *,
    clock: Callable[[], int] | None = None,
    max_clock_ahead_ns: int = 60 * NS_PER_SECOND,
    replay_range: tuple[int | None, int | None] | None = None,
):
    cls: type[Trade] | type[Bar] = Trade if kind == "trades" else Bar
    start, end = replay_range or (None, None)
    fixed = (
        TimeWindow(start, end, None, max_clock_ahead_ns)
        if clock is None and (start is not None or end is not None)
        else None
    )

    def origins(raws: list[Any]) -> Iterable[tuple[str, Any, int, str]]:
        for i, m in enumerate(raws):
            off = getattr(m, "offset", None)  # RawMessage; test doubles may lack it
            origin = (
                f"{source}/{m.partition}/{off}"
                if off is not None
                else f"{source}/t{m.timestamp_ms}/{i}"
            )
            yield m.key or "", m.value, m.timestamp_ms * 1_000_000, origin

    def decode(batch: list[Any]) -> list[tuple[str, list[Any]]]:
        """One source batch -> [(symbol, [messages...]), ..., ("_dlq", [dead letters])]."""
        window = fixed
        if clock is not None:  # live: the wall clock, read once per batch, bounds event time
            window = TimeWindow(start, end, clock(), max_clock_ahead_ns)
        structs = [m for m in batch if isinstance(m, cls)]
        raws = [m for m in batch if not isinstance(m, cls)]
        good, dead = decode_batch(origins(raws), cls, universe, source, limits, window)
        if structs:  # already typed (file sources): validate only
            ok, bad = validate_batch(structs, cls, universe, source, limits, window)
            good += ok
            dead += bad
        groups: dict[str, list[Any]] = defaultdict(list)
        for m in good:
            if m.symbol in selected:
                groups[m.symbol].append(m)
        out = list(groups.items())
        if dead:
            out.append(("_dlq", dead))
        return out

    return decode


def _by_table(batch: list[Any]) -> list[tuple[str, list[Any]]]:
    tables: dict[str, list[Any]] = defaultdict(list)
    for m in batch:
        t = TABLE_BY_CLASS.get(class_of(m))
        if t is not None:
            tables[t.name].append(m)
    return list(tables.items())


def _expanded(batch: list[Any]) -> list[Any]:
    """An event batch as single messages: every `RowBlock` replaced by its structs, in place."""
    return list(expand(batch))


def _kafka_records(cls: type, key_attr: str):
    def records(batch: list[Any]) -> Iterable[tuple[str, bytes]]:
        return [(getattr(m, key_attr), encode(m)) for m in batch if type(m) is cls]

    return records


def config_feature_set(cfg: Config) -> FeatureSet:
    """The feature set the config chooses (ValueError naming the problem if it is bad)."""
    return feature_set(cfg.features.set, cfg.feature_sets)


def selected_symbols(cfg: Config, symbols: Iterable[str] | None) -> frozenset[str]:
    universe = frozenset(cfg.symbols)
    selected = frozenset(s.upper() for s in symbols) if symbols else universe
    unknown = selected - universe
    if unknown:
        raise ValueError(f"symbols {sorted(unknown)} are not in the config's universe")
    return selected


def market_stage(
    flow: Dataflow,
    cfg: Config,
    source: Source[Any],
    kind: Kind,
    selected: frozenset[str],
    source_name: str,
    *,
    clock: Callable[[], int] | None = None,
    replay_range: tuple[int | None, int | None] | None = None,
) -> tuple[Any, Any]:
    """source -> (per-symbol keyed batches of bars, dead-letter batches)."""
    v = cfg.validation
    decode = _decoder(
        kind,
        frozenset(cfg.symbols),
        selected,
        source_name,
        Limits.from_config(v, cfg.bars, cfg.venue),
        clock=clock,
        max_clock_ahead_ns=int(v.max_clock_ahead_s * NS_PER_SECOND),
        replay_range=replay_range,
    )
    raw = op.input("input", flow, source)
    split = op.flat_map("decode", raw, decode)
    routed = op.branch("route_dlq", split, lambda kv: kv[0] != "_dlq")
    dead_in = op.map("dlq_batches", routed.falses, lambda kv: kv[1])
    keyed = op.map_value(
        "values", op.key_on("by_symbol", routed.trues, lambda kv: kv[0]), lambda kv: kv[1]
    )
    if kind == "trades":
        interval_ns = cfg.bars.interval_s * NS_PER_SECOND
        grace_ns = cfg.bars.grace_ms * 1_000_000
        rules = Rules.for_trades(v, cfg.bars)
        keyed = op.stateful("bars", keyed, lambda r: BarsLogic(interval_ns, grace_ns, r, rules))
    return keyed, dead_in


def _route(kv: tuple[str, list[Any]]) -> list[tuple[str, list[Any]]]:
    """Split a features batch per symbol: (bar, values) rows and the messages about a symbol
    (feature rows, dead letters, metrics) stay in that symbol's ordered stream."""
    groups: dict[str, list[Any]] = defaultdict(list)
    default = kv[0].split("+", 1)[0]
    for m in kv[1]:
        t = type(m)
        if t is tuple:
            sym = m[0].symbol
        elif t is FeatureRow:
            sym = m.symbol
        elif t is RowBlock and "symbol" in m.const:  # a symbol's feature rows
            sym = m.const["symbol"]
        elif t is DeadLetter:
            sym = m.key or default
        elif t is Metric and m.labels.startswith("symbol="):
            sym = m.labels[7:].split(",", 1)[0]
        else:
            sym = default
        groups[sym].append(m)
    return list(groups.items())


def features_stage(
    bars: Any,
    fs: FeatureSet,
    selected: frozenset[str],
    store: bool,
    rules: Rules = BAR_RULES,
) -> Any:
    """Per-symbol bar batches -> per-symbol batches of (bar, values) rows and messages.

    The features step is keyed by symbol, or by one group of all symbols when pair features need
    them aligned by time. `rules`: the bar plausibility guard (`bar_rules`)."""
    group = "+".join(sorted(selected))
    pair = bool(fs.refs)
    if pair:
        bars = op.map("by_group", bars, lambda kv: (group, kv[1]))
    symbols = sorted(selected)

    def engine() -> FeatureEngine:
        return FeatureEngine(fs.fresh(), symbols, rules)

    engine()  # fail now (e.g. a missing reference symbol), not inside the running flow
    feats = op.stateful("features", bars, lambda r: FeaturesLogic(engine, store, r))
    return op.flat_map("per_symbol", feats, _route) if pair else feats


def bar_rules(cfg: Config, kind: Kind) -> Rules:
    """The features step's bar guard: full plausibility for bars from the source; for bars we
    built from (already guarded) trades only the ordering, as a real jump after a gap between
    short trade captures may be followed by fewer than `confirm` bars."""
    return Rules.for_bars(cfg.validation) if kind == "bars" else ORDER_ONLY


def _decisions(kv: tuple[str, list[Any]]) -> tuple[str, list[Any]] | None:
    """A symbol's (bar, signal) pairs, re-keyed to the one account (None: none in the batch)."""
    pairs = [m for m in kv[1] if type(m) is tuple]
    return (ACCOUNT, pairs) if pairs else None


_COMMAND: Any = decoder(Command)  # type: ignore[arg-type]


def _commands(batch: list[Any]) -> tuple[str, list[Any]] | None:
    """Control records -> (account, [commands and dead letters]) (None: an empty batch)."""
    out: list[Any] = []
    for m in batch:
        if isinstance(m, HaltTrading | ResumeTrading | FlattenPositions):
            out.append(m)
            continue
        try:
            out.append(_COMMAND.decode(m.value))
        except (DecodeError, TypeError) as exc:
            off = getattr(m, "offset", None)
            out.append(
                DeadLetter(
                    ts_init=m.timestamp_ms * 1_000_000,
                    source=CONTROL.name,
                    reason=f"bad command: {exc}",
                    payload=payload_text(m.value or b""),
                    key=m.key or "",
                    origin=f"{CONTROL.name}/{m.partition}/{off}",
                )
            )
    return (ACCOUNT, out) if out else None


def build_flow(
    cfg: Config,
    source: Source[Any],
    sinks: FlowSinks,
    *,
    kind: Kind,
    symbols: Iterable[str] | None = None,
    source_name: str = "source",
    flow_id: str = "cryptoflow",
    clock: Callable[[], int] | None = None,
    replay_range: tuple[int | None, int | None] | None = None,
    control: Source[Any] | None = None,
) -> Dataflow:
    """Wire the trading flow. `source` yields batches (lists) of raw Kafka messages (objects with
    .key/.value/.timestamp_ms/.partition/.offset) or of decoded `Trade`/`Bar` structs.

    `clock` (live/paper: `time.time_ns`; None in replay) bounds event time by the wall clock
    (cfg.validation.max_clock_ahead_s); `replay_range` [start, end) ns dead-letters messages
    whose payload time falls outside the range a replay asked for. `control` (paper/live)
    yields batches of operator commands (`HaltTrading`, ... or raw control.commands.v1 records);
    an undecodable one is dead-lettered."""
    selected = selected_symbols(cfg, symbols)
    fs = config_feature_set(cfg)

    flow = Dataflow(flow_id)
    bars, dead_in = market_stage(
        flow, cfg, source, kind, selected, source_name, clock=clock, replay_range=replay_range
    )
    rows = features_stage(bars, fs, selected, cfg.features.store, bar_rules(cfg, kind))

    new_strategy = strategy_factory(cfg, fs)
    symbols = sorted(selected)

    def trader() -> AccountTrader:
        return new_trader(cfg, symbols)

    trader()  # fail now on a bad config, not inside the running flow
    watch = PromotionWatch(cfg, fs, clock) if clock is not None else None  # paper/live
    signals = op.stateful("strategy", rows, lambda r: SignalLogic(new_strategy, r, watch))
    # Per symbol: messages go out; (bar, signal) decisions go to the one account, in event time.
    messages = op.filter_map(
        "messages", signals, lambda kv: [m for m in kv[1] if type(m) is not tuple] or None
    )
    decisions = op.filter_map("decisions", signals, _decisions)
    if control is not None:  # operator commands join the account's input on its one key
        commands = op.filter_map("commands", op.input("control", flow, control), _commands)
        decisions = op.merge("with_commands", decisions, commands)
    stale = cfg.paper.stale_after_s if clock is not None else None  # live only
    booked = op.stateful("account", decisions, lambda r: AccountLogic(trader, r, stale))
    events = op.merge("events", messages, op.key_rm("account_events", booked))
    events = op.merge("with_dlq", events, dead_in)
    _outputs(events, sinks)
    return flow


def _outputs(events: Any, sinks: FlowSinks) -> None:
    """Event batches -> ClickHouse tables, Kafka topics and the in-process events sink."""

    if sinks.clickhouse is not None:
        op.output("clickhouse", op.flat_map("by_table", events, _by_table), sinks.clickhouse)
    for name, cls, key_attr, sink in (
        ("orders", Order, "symbol", sinks.orders),
        ("fills", Fill, "symbol", sinks.fills),
        ("dlq", DeadLetter, "key", sinks.dlq),
        ("denials", OrderDenied, "symbol", sinks.denials),
        ("risk_state", TradingStateChanged, "account", sinks.risk_state),
    ):
        if sink is not None:
            op.output(
                f"kafka_{name}",
                op.flat_map(f"{name}_records", events, _kafka_records(cls, key_attr)),
                sink,
            )
    if sinks.monitor is not None:
        op.output("monitor", events, sinks.monitor)
    if sinks.events is not None:
        op.output("events_out", op.flat_map("flatten_events", events, _expanded), sinks.events)


def build_feature_flow(
    cfg: Config,
    source: Source[Any],
    fs: FeatureSet,
    *,
    kind: Kind,
    rows: Sink[Any],
    clickhouse: Sink[Any] | None = None,
    symbols: Iterable[str] | None = None,
    source_name: str = "source",
    flow_id: str = "cryptoflow-features",
) -> Dataflow:
    """The training-set flow: the same input and features stages as the trading flow, with
    (bar, values) row batches to `rows` and feature rows / dead letters to ClickHouse."""
    selected = selected_symbols(cfg, symbols)
    flow = Dataflow(flow_id)
    bars, dead_in = market_stage(flow, cfg, source, kind, selected, source_name)
    feats = op.key_rm(
        "feature_batches",
        features_stage(bars, fs, selected, clickhouse is not None, bar_rules(cfg, kind)),
    )
    op.output("rows", feats, rows)
    if clickhouse is not None:
        _outputs(op.merge("with_dlq", feats, dead_in), FlowSinks(clickhouse=clickhouse))
    return flow
