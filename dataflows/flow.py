"""`build_flow`: the one dataflow that replay, paper and live run, differing only in sources and
sinks.

    source batches ─ decode/validate ─┬─ dead letters ───────────────────────────────┐
                                      └─ per-symbol batches                          │
      (trades) ─ bars ─┐                                                             │
      (bars) ──────────┴─ guard+features (per group) ─ trader (strategy, sleeve)     │
                                                      │                              │
                         orders.v1 / fills.v1 (Kafka) ┤     dlq.v1 (Kafka) ──────────┤
                                     ClickHouse tables ┴─────────────────────────────┘
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from dataflows.steps import BarsLogic, FeaturesLogic, TraderLogic
from infra.clickhouse import TABLE_BY_CLASS
from operators.execution import SimulatedExecution
from operators.feature_engine import FeatureEngine
from operators.features import FeatureSet, feature_set
from operators.risk import MaxPositionNotional
from operators.sizing import FractionOfEquity
from operators.sleeve import Sleeve
from operators.strategy_sma_cross import SmaCross
from operators.validation import decode_batch, validate_batch
from schemas.codec import encode
from schemas.config import Config
from schemas.messages import Bar, DeadLetter, FeatureRow, Fill, Metric, Order, Trade

if TYPE_CHECKING:  # annotations only: importing it would load polars for Kafka-only flows
    from dataflows.io.files import Kind


@dataclass
class FlowSinks:
    """Where outputs go. Any of them may be None (e.g. a unit test collects only `events`).

    clickhouse: items ("table", [messages]); orders/fills/dlq: items (key, json bytes);
    events: every emitted message, one item each (tests, in-process reports).
    """

    clickhouse: Sink[Any] | None = None
    orders: Sink[Any] | None = None
    fills: Sink[Any] | None = None
    dlq: Sink[Any] | None = None
    events: Sink[Any] | None = None


def _decoder(kind: Kind, universe: frozenset[str], selected: frozenset[str], source: str):
    cls: type[Trade] | type[Bar] = Trade if kind == "trades" else Bar

    def decode(batch: list[Any]) -> list[tuple[str, list[Any]]]:
        """One source batch -> [(symbol, [messages...]), ..., ("_dlq", [dead letters])]."""
        structs = [m for m in batch if isinstance(m, cls)]
        raws = [m for m in batch if not isinstance(m, cls)]
        good, dead = decode_batch(
            ((m.key or "", m.value, m.timestamp_ms * 1_000_000) for m in raws),
            cls,
            universe,
            source,
        )
        if structs:  # already typed (file sources): validate only
            ok, bad = validate_batch(structs, cls, universe, source)
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
        t = TABLE_BY_CLASS.get(type(m))
        if t is not None:
            tables[t.name].append(m)
    return list(tables.items())


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
) -> tuple[Any, Any]:
    """source -> (per-symbol keyed batches of bars, dead-letter batches)."""
    raw = op.input("input", flow, source)
    split = op.flat_map(
        "decode", raw, _decoder(kind, frozenset(cfg.symbols), selected, source_name)
    )
    routed = op.branch("route_dlq", split, lambda kv: kv[0] != "_dlq")
    dead_in = op.map("dlq_batches", routed.falses, lambda kv: kv[1])
    keyed = op.map_value(
        "values", op.key_on("by_symbol", routed.trues, lambda kv: kv[0]), lambda kv: kv[1]
    )
    if kind == "trades":
        interval_ns = cfg.bars.interval_s * 1_000_000_000
        grace_ns = cfg.bars.grace_ms * 1_000_000
        keyed = op.stateful("bars", keyed, lambda r: BarsLogic(interval_ns, grace_ns, r))
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
        elif t is DeadLetter:
            sym = m.key or default
        elif t is Metric and m.labels.startswith("symbol="):
            sym = m.labels[7:].split(",", 1)[0]
        else:
            sym = default
        groups[sym].append(m)
    return list(groups.items())


def features_stage(bars: Any, fs: FeatureSet, selected: frozenset[str], store: bool) -> Any:
    """Per-symbol bar batches -> per-symbol batches of (bar, values) rows and messages.

    The features step is keyed by symbol, or by one group of all symbols when pair features need
    them aligned by time."""
    group = "+".join(sorted(selected))
    pair = bool(fs.refs)
    if pair:
        bars = op.map("by_group", bars, lambda kv: (group, kv[1]))
    symbols = sorted(selected)

    def engine() -> FeatureEngine:
        return FeatureEngine(fs.fresh(), symbols)

    engine()  # fail now (e.g. a missing reference symbol), not inside the running flow
    feats = op.stateful("features", bars, lambda r: FeaturesLogic(engine, store, r))
    return op.flat_map("per_symbol", feats, _route) if pair else feats


def build_flow(
    cfg: Config,
    source: Source[Any],
    sinks: FlowSinks,
    *,
    kind: Kind,
    symbols: Iterable[str] | None = None,
    source_name: str = "source",
    flow_id: str = "cryptoflow",
) -> Dataflow:
    """Wire the trading flow. `source` yields batches (lists) of raw Kafka messages (objects with
    .key/.value/.timestamp_ms) or of decoded `Trade`/`Bar` structs."""
    selected = selected_symbols(cfg, symbols)
    fs = config_feature_set(cfg)
    per_sleeve_cash = cfg.sleeve_cash(len(selected))

    flow = Dataflow(flow_id)
    bars, dead_in = market_stage(flow, cfg, source, kind, selected, source_name)
    rows = features_stage(bars, fs, selected, cfg.features.store)

    def new_strategy(symbol: str) -> SmaCross:
        s = cfg.strategy
        return SmaCross(symbol, s.fast, s.slow, s.price)

    def new_sleeve(symbol: str) -> Sleeve:
        return Sleeve(
            symbol,
            per_sleeve_cash,
            FractionOfEquity(cfg.sizing.fraction),
            [MaxPositionNotional(cfg.risk.max_position_notional)],
            SimulatedExecution(cfg.execution.fee_bps, cfg.execution.slippage_bps),
        )

    traded = op.stateful("trader", rows, lambda r: TraderLogic(new_strategy, new_sleeve, r))
    events = op.key_rm("events", traded)
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
    ):
        if sink is not None:
            op.output(
                f"kafka_{name}",
                op.flat_map(f"{name}_records", events, _kafka_records(cls, key_attr)),
                sink,
            )
    if sinks.events is not None:
        op.output("events_out", op.flatten("flatten_events", events), sinks.events)


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
    feats = op.key_rm("feature_batches", features_stage(bars, fs, selected, clickhouse is not None))
    op.output("rows", feats, rows)
    if clickhouse is not None:
        _outputs(op.merge("with_dlq", feats, dead_in), FlowSinks(clickhouse=clickhouse))
    return flow
