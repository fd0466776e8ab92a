"""Offline, forward-looking training labels computed per symbol from the bar series.

Missing-value convention: numpy functions return float64 with NaN (indices: int64 -1) where a
label is missing; `compute` returns polars nulls. Every label has an end column for purging.
"""

from offline.labels.forward import forward_log_return, horizon_end
from offline.labels.spec import (
    ForwardSpec,
    LabelSpec,
    ThresholdSpec,
    TripleBarrierSpec,
    compute,
    compute_labels,
    parse_label,
)
from offline.labels.threshold import forward_simple_return, threshold_labels
from offline.labels.triple_barrier import (
    LONG,
    NEUTRAL,
    SHORT,
    TripleBarrierResult,
    triple_barrier,
)

__all__ = [
    "LONG",
    "NEUTRAL",
    "SHORT",
    "ForwardSpec",
    "LabelSpec",
    "ThresholdSpec",
    "TripleBarrierResult",
    "TripleBarrierSpec",
    "compute",
    "compute_labels",
    "forward_log_return",
    "forward_simple_return",
    "horizon_end",
    "parse_label",
    "threshold_labels",
    "triple_barrier",
]
