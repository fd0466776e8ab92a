"""Rolling beta of a symbol's 1-bar log returns on a reference symbol's: cov(r_sym, r_ref) /
var(r_ref) over the last n aligned returns (alignment rules and exact sums: see pair_corr)."""

from __future__ import annotations

from operators.features.pair_corr import PairReturnMoments


class RollingBeta(PairReturnMoments):
    """NaN while warming up, on non-aligned bars, and when the reference's variance is 0."""

    family = "beta"
    _beta = True

    def __init__(self, ref: str = "BTCUSDT", n: int = 60) -> None:
        super().__init__(ref, n)
