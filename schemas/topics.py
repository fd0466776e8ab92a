"""Kafka topics: `<domain>.<entity>.v<N>`, with the message each carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.messages import (
    Bar,
    Command,
    DeadLetter,
    Fill,
    Order,
    OrderDenied,
    Trade,
    TradingStateChanged,
)


@dataclass(frozen=True)
class Topic:
    name: str
    message: Any  # a msgspec Struct type, or a tagged union of them (commands)
    partitions: int  # default; overridable in config


TRADES = Topic("md.trades.v1", Trade, 4)
BARS = Topic("md.bars.v1", Bar, 4)
ORDERS = Topic("orders.v1", Order, 2)
FILLS = Topic("fills.v1", Fill, 2)
DLQ = Topic("dlq.v1", DeadLetter, 1)
DENIALS = Topic("risk.denials.v1", OrderDenied, 1)
RISK_STATE = Topic("risk.state.v1", TradingStateChanged, 1)
# One partition: commands keep their order (a halt then a resume).
CONTROL = Topic("control.commands.v1", Command, 1)

TOPICS: dict[str, Topic] = {
    t.name: t for t in (TRADES, BARS, ORDERS, FILLS, DLQ, DENIALS, RISK_STATE, CONTROL)
}
