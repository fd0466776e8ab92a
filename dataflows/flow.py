"""`build_flow`: the one dataflow that replay, paper and live run, differing only in sources and
sinks.

    source batches ─ decode/validate ─┬─ dead letters ───────────────────────────────┐
                                      └─ per-symbol batches                          │
      (trades) ─ bars ─┐                                                             │
      (bars) ──────────┴─ guard+features+strategy ─ trader (size, risk, execute, pnl)│
                                                      │                              │
                         orders.v1 / fills.v1 (Kafka) ┤     dlq.v1 (Kafka) ──────────┤
                                     ClickHouse tables ┴─────────────────────────────┘
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from dataflows.steps import BarsLogic, SignalsLogic, SignalState, TraderLogic
from infra.clickhouse import TABLE_BY_CLASS
from operators.execution import SimulatedExecution
from operators.features import SMA, FeatureSet
from operators.risk import MaxPositionNotional
from operators.sizing import FractionOfEquity
from operators.sleeve import Sleeve
from operators.strategy_sma_cross import SmaCross
from operators.validation import decode_batch, validate_batch
from schemas.codec import encode
from schemas.config import Config
from schemas.messages import Bar, DeadLetter, Fill, Order, Trade

Kind = Literal["trades", "bars"]


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
    universe = frozenset(cfg.symbols)
    selected = frozenset(s.upper() for s in symbols) if symbols else universe
    unknown = selected - universe
    if unknown:
        raise ValueError(f"symbols {sorted(unknown)} are not in the config's universe")
    interval_ns = cfg.bars.interval_s * 1_000_000_000
    per_sleeve_cash = cfg.sleeve_cash(len(selected))

    flow = Dataflow(flow_id)
    raw = op.input("input", flow, source)
    split = op.flat_map("decode", raw, _decoder(kind, universe, selected, source_name))
    routed = op.branch("route_dlq", split, lambda kv: kv[0] != "_dlq")
    dead_in = op.map("dlq_batches", routed.falses, lambda kv: kv[1])
    keyed = op.map_value(
        "values", op.key_on("by_symbol", routed.trues, lambda kv: kv[0]), lambda kv: kv[1]
    )

    if kind == "trades":
        grace_ns = cfg.bars.grace_ms * 1_000_000
        keyed = op.stateful("bars", keyed, lambda r: BarsLogic(interval_ns, grace_ns, r))

    def new_signal_state(symbol: str) -> SignalState:
        f, s = cfg.features, cfg.strategy
        features = FeatureSet.basic(f.sma, f.ema, f.rsi, f.vol_window)
        fast, slow = features.get(f"sma_{s.fast}"), features.get(f"sma_{s.slow}")
        both = isinstance(fast, SMA) and isinstance(slow, SMA) and s.price == "close"
        shared = (fast, slow) if both else None
        return SignalState(features, SmaCross(symbol, s.fast, s.slow, s.price, shared))

    def new_sleeve(symbol: str) -> Sleeve:
        return Sleeve(
            symbol,
            per_sleeve_cash,
            FractionOfEquity(cfg.sizing.fraction),
            [MaxPositionNotional(cfg.risk.max_position_notional)],
            SimulatedExecution(cfg.execution.fee_bps, cfg.execution.slippage_bps),
        )

    sig = op.stateful("signals", keyed, lambda r: SignalsLogic(new_signal_state, r))
    traded = op.stateful("trader", sig, lambda r: TraderLogic(new_sleeve, r))
    events = op.key_rm("events", traded)
    events = op.merge("with_dlq", events, dead_in)

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
    return flow
