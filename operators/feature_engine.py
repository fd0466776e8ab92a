"""Features for a group of symbols: plausibility guard, one FeatureSet per symbol, and the time
alignment that pair (cross-asset) features need.

Each symbol's bars pass its `Plausibility` guard first (operators/plausibility.py): duplicates and
rewinds are rejected, bars implausible in time or price are held until confirmed (released in
order) or refuted (rejected), so one hostile bar never moves the sequence or the price reference.

Without pair features each bar is processed as it arrives. With them, a bar at open time t is
held until every symbol of the group has shown a bar at or after t (so the reference symbol's bar
at t, if it exists, is known), then all bars at t are processed in symbol order. Results are
therefore independent of how the sources interleave symbols — replay, paper and live agree.
A symbol that stops sending holds the group back until `flush` (end of a bounded replay).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from operators.features.featureset import FeatureSet
from operators.plausibility import BAR_RULES, Plausibility, Rules
from schemas.messages import Bar

Row = tuple[Bar, tuple[float, ...]]
# An output in input order: (bar, values), or (bar, reason) when the bar is rejected.
Out = tuple[Bar, tuple[float, ...] | str]


class FeatureEngine:
    def __init__(
        self, template: FeatureSet, symbols: Sequence[str], rules: Rules = BAR_RULES
    ) -> None:
        self.symbols = tuple(sorted(set(symbols)))
        missing = sorted(template.refs - set(self.symbols))
        if missing:
            raise ValueError(
                f"feature set {template.name!r} needs reference symbol(s) {missing}: "
                f"add them to the symbols (have {list(self.symbols)})"
            )
        self.template = template
        self.sets: dict[str, FeatureSet] = {}  # made on a symbol's first bar
        # Symbol order is the release order; a guard's watermark is its symbol's last accepted bar.
        self.guards: dict[str, Plausibility[Bar]] = {
            s: Plausibility(rules, ordered=True) for s in self.symbols
        }
        # Rejected bars per symbol so far: numbers each dead letter ("features:<symbol>:<n>").
        self.rejected: dict[str, int] = {}
        self.align = bool(template.refs) and len(self.symbols) > 1
        self._pending: dict[str, deque[Bar]] = {s: deque() for s in self.symbols}

    def _set(self, symbol: str) -> FeatureSet:
        fs = self.sets.get(symbol)
        if fs is None:
            fs = self.sets[symbol] = self.template.fresh()
        return fs

    def update(self, bars: Sequence[Bar]) -> list[Out]:
        """Rows released and rejected bars (with the reason), in order, so outputs do not depend
        on how the input was batched. Bars of symbols outside the group are rejected too: they
        would otherwise be silently dropped. Without alignment, each run of one symbol's
        accepted bars is computed at once (`FeatureSet.update_batch`: the same values)."""
        rows: list[Out] = []
        run: list[Bar] = []  # accepted bars of one symbol not computed yet (no alignment)
        for bar in bars:
            sym = bar.symbol
            guard = self.guards.get(sym)
            if guard is None:
                self._flush_run(rows, run)
                self._reject(rows, bar, f"symbol not in feature group {list(self.symbols)}")
                continue
            verdicts = guard.check(bar)
            if verdicts is None:
                if self.align:
                    self._pending[sym].append(bar)
                else:
                    if run and run[0].symbol != sym:
                        self._flush_run(rows, run)
                    run.append(bar)
                continue
            for b, problem in verdicts:
                if problem is None:
                    if self.align:
                        self._pending[b.symbol].append(b)
                        continue
                    if run and run[0].symbol != b.symbol:
                        self._flush_run(rows, run)
                    run.append(b)
                else:
                    self._flush_run(rows, run)
                    self._reject(rows, b, problem)
        self._flush_run(rows, run)
        if self.align:
            self._release(rows, final=False)
        return rows

    def _flush_run(self, rows: list[Out], run: list[Bar]) -> None:
        if run:
            rows.extend(zip(run, self._set(run[0].symbol).update_batch(run), strict=True))
            run.clear()

    def _reject(self, rows: list[Out], bar: Bar, reason: str) -> None:
        self.rejected[bar.symbol] = self.rejected.get(bar.symbol, 0) + 1
        rows.append((bar, reason))

    def flush(self) -> list[Out]:
        """Release everything held (end of input)."""
        rows: list[Out] = []
        for guard in self.guards.values():  # candidates never confirmed, in symbol order
            for bar, problem in guard.flush():
                self._reject(rows, bar, problem or "")
        if self.align:
            self._release(rows, final=True)
        return rows

    def _release(self, rows: list[Out], final: bool) -> None:
        steps: list[dict[str, Bar]] = []
        self._due(steps, final)
        if not steps:
            return
        # Each symbol's run of released bars at once (`update_batch`, each bar with the bars of
        # its open time as references), then the rows in time, then symbol, order.
        runs: dict[str, list[Bar]] = {}
        refs: dict[str, list[dict[str, Bar]]] = {}
        for at_t in steps:
            for s, bar in at_t.items():
                runs.setdefault(s, []).append(bar)
                refs.setdefault(s, []).append(at_t)
        values = {s: iter(self._set(s).update_batch(run, refs[s])) for s, run in runs.items()}
        for at_t in steps:
            for s, bar in at_t.items():  # in symbol order, like `pending`
                rows.append((bar, next(values[s])))

    def _due(self, steps: list[dict[str, Bar]], final: bool) -> None:
        """Pop the bars that may be released, grouped by open time, oldest first."""
        pending = self._pending
        # Every symbol has shown its bars up to `limit` (-1: a symbol has sent none yet).
        limit = min(g.watermark for g in self.guards.values())
        while True:
            heads = [q[0].ts_event for q in pending.values() if q]
            if not heads:
                return
            t = min(heads)
            if not final and t > limit:
                return
            at_t = {s: q.popleft() for s, q in pending.items() if q and q[0].ts_event == t}
            steps.append(at_t)

    @property
    def held(self) -> int:
        return sum(len(q) for q in self._pending.values())
