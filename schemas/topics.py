"""Kafka topics: `<domain>.<entity>.v<N>`, with the message each carries."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from schemas.messages import Bar, DeadLetter, Fill, Order, Trade


@dataclass(frozen=True)
class Topic:
    name: str
    message: type[msgspec.Struct]
    partitions: int  # default; overridable in config


TRADES = Topic("md.trades.v1", Trade, 4)
BARS = Topic("md.bars.v1", Bar, 4)
ORDERS = Topic("orders.v1", Order, 2)
FILLS = Topic("fills.v1", Fill, 2)
DLQ = Topic("dlq.v1", DeadLetter, 1)

TOPICS: dict[str, Topic] = {t.name: t for t in (TRADES, BARS, ORDERS, FILLS, DLQ)}
