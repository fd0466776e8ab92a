"""SMA fast/slow crossover, decided in exact arithmetic.

With d_t = SMA_fast - SMA_slow at bar t's close, a cross up is d_t > 0 and d_{t-1} <= 0, a cross
down is d_t < 0 and d_{t-1} >= 0. The sign of d is computed on exact fixed-point sums, so ties
(common in real 1m data) are decided the same way on every machine. The first decision needs
slow + 1 bars.
"""

from __future__ import annotations

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
            direction, reason = 1, f"{self.fast.name} crossed above {self.slow.name}"
        elif sign < 0 and prev >= 0:
            direction, reason = -1, f"{self.fast.name} crossed below {self.slow.name}"
        else:
            return None
        return Signal(
            symbol=self.symbol,
            ts_event=bar.ts_close,  # decided at the bar's close
            ts_init=bar.ts_init,
            strategy=self.name,
            direction=direction,
            strength=self.fast.value / self.slow.value - 1.0,
            reason=reason,
        )
