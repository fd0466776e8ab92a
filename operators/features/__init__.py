"""Streaming features: one family per file, each an incremental, picklable state updated per bar.

Every feature object has `name`, `update(bar) -> float` (NaN during warm-up) and `value`.
"""

from operators.features.ema import EMA
from operators.features.featureset import FeatureSet
from operators.features.returns import LogReturn
from operators.features.rsi import RSI
from operators.features.sma import SMA
from operators.features.volatility import RealizedVol

__all__ = ["EMA", "RSI", "SMA", "FeatureSet", "LogReturn", "RealizedVol"]
