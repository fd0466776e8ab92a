"""SMA fast/slow crossover, decided in exact arithmetic.

With d_t = SMA_fast - SMA_slow at bar t's close, a cross up is d_t > 0 and d_{t-1} <= 0, a cross
down is d_t < 0 and d_{t-1} >= 0. The sign of d is computed on exact fixed-point sums, so ties
(common in real 1m data) are decided the same way on every machine. The first decision needs
slow + 1 bars.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from operators.features.base import BATCH_MIN
from operators.features.sma import SMA
from schemas.messages import Bar, Signal


class SmaCross:
    def __init__(
        self,
        symbol: str,
        fast: int,
        slow: int,
        field: str = "close",
        shared: tuple[SMA, SMA] | None = None,
    ) -> None:
        """`shared`: (fast, slow) SMA objects that the caller's feature set already updates
        each bar before calling `update` (saves computing the same averages twice)."""
        if not 0 < fast < slow:
            raise ValueError(f"need 0 < fast < slow, got fast={fast} slow={slow}")
        self.symbol = symbol
        self.name = f"sma_cross_{fast}_{slow}"
        if shared is not None:
            sizes, fields = (shared[0].n, shared[1].n), {shared[0].field, shared[1].field}
            if sizes != (fast, slow) or fields != {field}:
                raise ValueError("shared SMAs do not match the strategy's parameters")
            self.fast, self.slow = shared
        else:
            self.fast, self.slow = SMA(fast, field), SMA(slow, field)
        self._owns_smas = shared is None
        self._prev_sign: int | None = None

    def update(self, bar: Bar) -> Signal | None:
        if self._owns_smas:
            self.fast.update(bar)
            self.slow.update(bar)
        if not self.slow.ready:
            return None
        sign = self.fast.compare(self.slow)
        prev, self._prev_sign = self._prev_sign, sign
        if prev is None:
            return None
        if sign > 0 and prev <= 0:
            return self._signal(bar, 1, self.fast.value, self.slow.value)
        if sign < 0 and prev >= 0:
            return self._signal(bar, -1, self.fast.value, self.slow.value)
        return None

    def _signal(self, bar: Bar, direction: int, fast: float, slow: float) -> Signal:
        word = "above" if direction > 0 else "below"
        return Signal(
            symbol=self.symbol,
            ts_event=bar.ts_close,  # decided at the bar's close
            ts_init=bar.ts_init,
            strategy=self.name,
            direction=direction,
            strength=fast / slow - 1.0,
            reason=f"{self.fast.name} crossed {word} {self.slow.name}",
        )

    def update_many(self, bars: Sequence[Bar]) -> list[Signal | None]:
        """`[update(b) for b in bars]` for a run of bars, the averages' exact sums taken at once
        (`SMA.sums_many`); the same signals and state (tests/operators/test_op_strategy.py)."""
        if len(bars) < BATCH_MIN:  # live or paced: numpy's per-call cost would lose
            return [self.update(b) for b in bars]
        fast, slow = self.fast, self.slow
        prices = [getattr(b, fast.field) for b in bars]
        # Both sums and the cross-multiplied difference must fit int64, checked before either
        # average moves (a non-finite price or a too-big one: the one-at-a-time path).
        if not (self._owns_smas and fast.fits(prices) and slow.fits(prices)):
            return [self.update(b) for b in bars]
        peak = max(fast.peak(prices), slow.peak(prices))
        if peak * fast.n * slow.n * 2.0 >= 2.0**62:
            return [self.update(b) for b in bars]
        run_f, run_s = fast.sums_many(prices), slow.sums_many(prices)
        assert run_f is not None and run_s is not None  # `fits` said so
        (fsum, ffirst), (ssum, first) = run_f, run_s
        fast.settle(fsum, ffirst)
        slow.settle(ssum, first)
        out: list[Signal | None] = [None] * len(bars)
        if first >= len(bars):
            return out
        diff = fsum[first:] * slow.n - ssum[first:] * fast.n  # `compare`, exact in int64
        sign = np.sign(diff)
        prev = np.empty_like(sign)
        prev[1:] = sign[:-1]
        prev[0] = 0 if self._prev_sign is None else self._prev_sign
        cross = ((sign > 0) & (prev <= 0)) | ((sign < 0) & (prev >= 0))
        if self._prev_sign is None:
            cross[0] = False  # the first comparable bar has nothing to cross from
        for i in np.flatnonzero(cross).tolist():
            j = first + i
            f_val, s_val = int(fsum[j]) / fast.den, int(ssum[j]) / slow.den
            out[j] = self._signal(bars[j], int(sign[i]), f_val, s_val)
        self._prev_sign = int(sign[-1])
        return out
