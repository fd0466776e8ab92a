"""Class probabilities -> a direction, with a neutral band.

With classes containing -1/0/+1 (the 3-class trend labels) the long score is p(+1) and the short
score p(-1); with binary classes (0, 1) (e.g. triple-barrier "profit-take first") the long score
is p(1) and the short score p(0). Long when the long score >= `long`, short when the short score
>= `short` (and it is not long), otherwise 0 (flat). `long`/`short` > 0.5 make the two exclusive
for binary models; a tie between both firing goes to flat, never to a side."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class ThresholdDecision:
    classes: tuple[int, ...]
    long: float = 0.55
    short: float = 0.55
    _up_down: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, v in (("long", self.long), ("short", self.short)):
            if not 0.0 < v <= 1.0:
                raise ValueError(f"decision threshold {name} must be in (0, 1], got {v!r}")
        if set(self.classes) not in ({-1, 0, 1}, {-1, 1}, {0, 1}):
            raise ValueError(f"no decision rule for classes {self.classes}")
        c = self.classes  # the long and short score columns, once (decide runs per row)
        object.__setattr__(self, "_up_down", (c.index(1), c.index(-1 if -1 in c else 0)))

    def directions(self, proba: np.ndarray) -> np.ndarray:
        """int8 direction per row of an (n, n_classes) probability array."""
        up, down = self._up_down
        go_long = proba[:, up] >= self.long
        go_short = proba[:, down] >= self.short
        out = np.zeros(proba.shape[0], dtype=np.int8)
        out[go_long & ~go_short] = 1
        out[go_short & ~go_long] = -1
        return out

    def confidence(self, proba: np.ndarray) -> np.ndarray:
        """The largest class probability of each row."""
        return np.asarray(proba.max(axis=1), dtype=np.float64)

    def decide(self, p: Sequence[float]) -> tuple[int, float]:
        """`directions` and `confidence` of one row of Python floats, without numpy's per-call
        cost (the live path decides a row at a time): the same comparisons, so the same
        answers, a NaN confidence included when any probability is NaN."""
        up, down = self._up_down
        go_long, go_short = p[up] >= self.long, p[down] >= self.short
        d = 1 if go_long and not go_short else -1 if go_short and not go_long else 0
        return d, math.nan if any(map(math.isnan, p)) else max(p)
