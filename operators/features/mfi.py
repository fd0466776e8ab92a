"""Money Flow Index, as talib.MFI: money flow = typical price (h+l+c)/3 * volume, positive when the
typical price rose from the previous bar, negative when it fell, neither when unchanged;
MFI = 100 * pos / (pos + neg) over the last n flows (first value at bar n), 0.0 when both are 0.

The up/down decision compares h+l+c in exact fixed point, so equal typical prices are never split
by float rounding. The window sums run in float and are re-summed from the window every n bars
(and zeroed after n flowless bars), so an unbounded stream never accumulates drift."""

from __future__ import annotations

from collections import deque

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from operators.features.stoch import SEQUENTIAL_SUM
from operators.fixedpoint import SCALE
from schemas.messages import Bar

_BATCH_MIN = 32  # shorter runs take the inlined loop: numpy's per-call overhead dominates them
_CELLS = 1 << 22  # most entries of the segment matrix in `_restarted`; beyond, the loop


def _py_sums(ext: np.ndarray, ends: np.ndarray, w: int) -> np.ndarray:
    """sum() of each ext[e - w + 1 : e + 1], e in `ends`, bit for bit."""
    if not len(ends):
        return np.empty(0)
    if SEQUENTIAL_SUM:
        win = np.lib.stride_tricks.sliding_window_view(ext, w)[ends - w + 1]
        acc: np.ndarray = 0 + win[:, 0]  # sum() starts from int 0: -0.0 becomes 0.0
        for j in range(1, w):
            acc += win[:, j]
        return acc
    vals = ext.tolist()
    return np.array([sum(vals[e - w + 1 : e + 1]) for e in ends.tolist()], np.float64)


def _restarted(start: float, inc: np.ndarray, reset: np.ndarray, at: np.ndarray) -> np.ndarray:
    """x_j = at[j] where reset[j], else x_{j-1} + inc[j] (x_{-1} = start), as the sequential
    float additions `x += inc` make it: each run between resets is one row of a matrix that
    np.add.accumulate adds left to right."""
    k = len(inc)
    row = np.cumsum(reset)  # segment of each bar; 0: the one continuing from `start`
    first = np.concatenate([[-1], np.flatnonzero(reset)])  # each segment's start bar
    col = np.arange(k) - first[row]
    m = np.zeros((len(first), int(col.max()) + 1))
    m[row, col] = np.where(reset, at, inc)
    m[0, 0] = start
    out: np.ndarray = np.add.accumulate(m, axis=1)[row, col]
    return out


class MFI:
    family = "mfi"

    def __init__(self, n: int = 14) -> None:
        if n < 2:
            raise ValueError("MFI period must be >= 2")
        self.n = n
        self.name = spec_name("mfi", n)
        self.columns = (self.name,)
        self.warmup = n
        self._prev: int | None = None  # previous h+l+c in units of 1/SCALE
        self._pos: deque[float] = deque()
        self._neg: deque[float] = deque()
        self._pos_sum = 0.0
        self._neg_sum = 0.0
        self._since_resum = 0
        self._zero_run = 0  # consecutive bars without money flow
        self.value = NAN

    def update(self, bar: Bar) -> float:
        h = bar.high
        lo = bar.low
        c = bar.close
        s = round(h * SCALE) + round(lo * SCALE) + round(c * SCALE)
        prev = self._prev
        self._prev = s
        if prev is None:
            return NAN
        flow = (h + lo + c) / 3.0 * bar.volume
        pos = self._pos
        neg = self._neg
        if s > prev:
            p, q = flow, 0.0
        elif s < prev:
            p, q = 0.0, flow
        else:
            p = q = 0.0
        pos.append(p)
        neg.append(q)
        n = self.n
        if len(pos) > n:
            self._pos_sum += p - pos.popleft()
            self._neg_sum += q - neg.popleft()
        else:
            self._pos_sum += p
            self._neg_sum += q
        if p == 0.0 and q == 0.0:
            self._zero_run += 1
            if self._zero_run >= n:  # the whole window is flowless: drop any residue
                self._pos_sum = self._neg_sum = 0.0
        else:
            self._zero_run = 0
        if len(pos) < n:
            return NAN
        self._since_resum += 1
        if self._since_resum >= n:
            self._since_resum = 0
            self._pos_sum = sum(pos)
            self._neg_sum = sum(neg)
        ps = self._pos_sum
        total = ps + self._neg_sum
        if total <= 0.0:
            self.value = 0.0
        else:
            self.value = 100.0 * (min(max(ps, 0.0), total) / total)
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        hs, ls, cs = cols.field("high"), cols.field("low"), cols.field("close")
        vs = cols.field("volume")
        if len(hs) < _BATCH_MIN:
            return self._loop(hs, ls, cs, vs)
        h, lo, c = (np.fromiter(x, np.float64, len(x)) for x in (hs, ls, cs))
        xs = (h * SCALE, lo * SCALE, c * SCALE)
        if not all(np.isfinite(x).all() and np.abs(x).max() < 2.0**60 for x in xs):
            return self._loop(hs, ls, cs, vs)
        prev = self._prev
        if prev is not None and abs(prev) >= 2**62:
            return self._loop(hs, ls, cs, vs)
        t = np.rint(xs[0]).astype(np.int64) + np.rint(xs[1]).astype(np.int64)
        t += np.rint(xs[2]).astype(np.int64)
        with np.errstate(invalid="ignore", over="ignore"):
            flow = (h + lo + c) / 3.0 * np.fromiter(vs, np.float64, len(vs))
        step = np.sign(np.diff(t, prepend=t[0] if prev is None else prev))
        ps: list[float] = np.where(step > 0, flow, 0.0).tolist()
        qs: list[float] = np.where(step < 0, flow, 0.0).tolist()
        self._prev = int(t[-1])
        out: list[float] = []
        if prev is None:  # the first bar only sets _prev
            out.append(NAN)
            ps, qs = ps[1:], qs[1:]
        return out + self._flows(ps, qs)

    def _flows(self, ps: list[float], qs: list[float]) -> list[float]:
        """update's window arithmetic for the flows after the first bar."""
        n, k, old = self.n, len(ps), len(self._pos)
        since, zero = self._since_resum, self._zero_run
        if k < _BATCH_MIN:
            return self._flow_loop(ps, qs)
        p, q = np.array(ps, np.float64), np.array(qs, np.float64)
        ep, eq = np.concatenate([np.array(self._pos), p]), np.concatenate([np.array(self._neg), q])
        idx = old + np.arange(k)  # each flow's place in ep / eq
        pop = idx >= n
        back = np.maximum(idx - n, 0)
        with np.errstate(invalid="ignore"):
            inc_p = np.where(pop, p - ep[back], p)
            inc_q = np.where(pop, q - eq[back], q)
        flowless = (p == 0.0) & (q == 0.0)
        last_flow = np.maximum.accumulate(np.where(flowless, -1, np.arange(k)))
        run = np.where(last_flow < 0, zero + np.arange(1, k + 1), np.arange(k) - last_flow)
        zeroed = flowless & (run >= n)
        full = idx + 1 >= n
        count = np.cumsum(full)
        resum = full & ((since + count) % n == 0)
        reset = zeroed | resum
        cuts = np.flatnonzero(reset)
        width = int(np.diff(cuts, prepend=-1, append=k).max())
        if (len(cuts) + 1) * width > _CELLS:  # long runs of flowless bars: many segments
            return self._flow_loop(ps, qs)
        at_p, at_q = np.zeros(k), np.zeros(k)
        ends = np.flatnonzero(resum)
        at_p[ends] = _py_sums(ep, idx[ends], n)
        at_q[ends] = _py_sums(eq, idx[ends], n)
        with np.errstate(invalid="ignore"):  # inf - inf: NaN, as in Python
            sp = _restarted(self._pos_sum, inc_p, reset, at_p)
            sq = _restarted(self._neg_sum, inc_q, reset, at_q)
        self._pos = deque(ep[-n:].tolist())
        self._neg = deque(eq[-n:].tolist())
        self._pos_sum, self._neg_sum = float(sp[-1]), float(sq[-1])
        self._since_resum = (since + int(count[-1])) % n
        self._zero_run = int(run[-1])
        f = int(np.argmax(full)) if full[-1] else k  # the first flow with a full window
        if f == k:
            return [NAN] * k
        ps_, total = sp[f:], sp[f:] + sq[f:]
        lo = np.where(ps_ < 0.0, 0.0, ps_)  # max(ps, 0.0) and min(., total) as Python picks
        lo = np.where(total < lo, total, lo)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(total <= 0.0, 0.0, 100.0 * (lo / total))
        tail: list[float] = v.tolist()
        self.value = tail[-1]
        return [NAN] * f + tail

    def _flow_loop(self, ps: list[float], qs: list[float]) -> list[float]:
        n, pos, neg, p_sum, n_sum = self.n, self._pos, self._neg, self._pos_sum, self._neg_sum
        since, zero, v = self._since_resum, self._zero_run, self.value
        out: list[float] = []
        for p, q in zip(ps, qs, strict=True):  # update's window arithmetic, in locals
            pos.append(p)
            neg.append(q)
            if len(pos) > n:
                p_sum += p - pos.popleft()
                n_sum += q - neg.popleft()
            else:
                p_sum += p
                n_sum += q
            if p == 0.0 and q == 0.0:
                zero += 1
                if zero >= n:
                    p_sum = n_sum = 0.0
            else:
                zero = 0
            if len(pos) < n:
                out.append(NAN)
                continue
            since += 1
            if since >= n:
                since = 0
                p_sum = sum(pos)
                n_sum = sum(neg)
            total = p_sum + n_sum
            v = 0.0 if total <= 0.0 else 100.0 * (min(max(p_sum, 0.0), total) / total)
            out.append(v)
        self._pos_sum, self._neg_sum, self._since_resum, self._zero_run = p_sum, n_sum, since, zero
        self.value = v
        return out

    def _loop(
        self, hs: list[float], ls: list[float], cs: list[float], vs: list[float]
    ) -> list[float]:
        out: list[float] = []
        prev = self._prev
        ps: list[float] = []
        qs: list[float] = []
        try:
            for h, lo, c, vol in zip(hs, ls, cs, vs, strict=True):  # update's arithmetic, in locals
                s = round(h * SCALE) + round(lo * SCALE) + round(c * SCALE)
                if prev is None:
                    out.append(NAN)
                    prev = s
                    continue
                flow = (h + lo + c) / 3.0 * vol
                ps.append(flow if s > prev else 0.0)
                qs.append(flow if s < prev else 0.0)
                prev = s
        finally:  # a price round() rejects raises as update does, after the bars before it
            self._prev = prev
            out += self._flows(ps, qs)
        return out
