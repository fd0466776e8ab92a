"""A named set of features updated together, one bar at a time."""

from __future__ import annotations

from typing import Protocol

from operators.features.ema import EMA
from operators.features.returns import LogReturn
from operators.features.rsi import RSI
from operators.features.sma import SMA
from operators.features.volatility import RealizedVol
from schemas.messages import Bar


class Feature(Protocol):
    name: str
    value: float

    def update(self, bar: Bar) -> float: ...


class FeatureSet:
    def __init__(self, features: list[Feature]) -> None:
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature names: {names}")
        self.features = features
        self.names = names

    @classmethod
    def basic(cls, sma: list[int], ema: list[int], rsi: int, vol_window: int) -> FeatureSet:
        feats: list[Feature] = [LogReturn(1)]
        feats += [SMA(n) for n in sma]
        feats += [EMA(n) for n in ema]
        feats += [RSI(rsi), RealizedVol(vol_window)]
        return cls(feats)

    def get(self, name: str) -> Feature | None:
        for f in self.features:
            if f.name == name:
                return f
        return None

    def update(self, bar: Bar) -> tuple[float, ...]:
        """Values in `names` order (a tuple: building a dict per bar would double the cost)."""
        return tuple([f.update(bar) for f in self.features])
