"""Wire messages, topic names and configuration: the one source of truth for every layer."""

from schemas.messages import (
    Bar,
    DeadLetter,
    EquityPoint,
    FeatureRow,
    FeatureSetInfo,
    Fill,
    Metric,
    Order,
    OrderDenied,
    OrderIntent,
    PositionSnapshot,
    RunInfo,
    Signal,
    Trade,
)
from schemas.topics import TOPICS, Topic

__all__ = [
    "TOPICS",
    "Bar",
    "DeadLetter",
    "EquityPoint",
    "FeatureRow",
    "FeatureSetInfo",
    "Fill",
    "Metric",
    "Order",
    "OrderDenied",
    "OrderIntent",
    "PositionSnapshot",
    "RunInfo",
    "Signal",
    "Topic",
    "Trade",
]
