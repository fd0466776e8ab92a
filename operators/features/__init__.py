"""Streaming features: one family per file, each an incremental, picklable state updated per bar
(contract in base.py). Build sets from specs with `FeatureSet([...])` or `feature_set(name)`."""

from operators.features.base import Feature, PairFeature, spec_name
from operators.features.ema import EMA
from operators.features.featureset import FeatureSet
from operators.features.registry import FAMILIES, parse_spec
from operators.features.returns import LogReturn
from operators.features.rsi import RSI
from operators.features.sets import BUILTIN_SETS, feature_set
from operators.features.sma import SMA
from operators.features.volatility import RealizedVol

__all__ = [
    "BUILTIN_SETS",
    "EMA",
    "FAMILIES",
    "RSI",
    "SMA",
    "Feature",
    "FeatureSet",
    "LogReturn",
    "PairFeature",
    "RealizedVol",
    "feature_set",
    "parse_spec",
    "spec_name",
]
