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
from operator import attrgetter

from operators.features.featureset import FeatureSet
from operators.plausibility import BAR_RULES, Plausibility, Rules
from schemas.messages import Bar

Row = tuple[Bar, tuple[float, ...]]
# An output in input order: (bar, values), or (bar, reason) when the bar is rejected.
Out = tuple[Bar, tuple[float, ...] | str]
# One symbol's accepted bars of a batch, in order, and their values column by column.
Group = tuple[str, list[Bar], list[list[float]]]
_SYMBOL = attrgetter("symbol")


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
        would otherwise be silently dropped."""
        return self.update_batch(bars)[0]

    def update_batch(self, bars: Sequence[Bar]) -> tuple[list[Out], list[Group]]:
        """`update`, and the released rows again per symbol, column by column (what a columnar
        store takes). Without pair features each symbol's accepted bars go through its set in
        one `FeatureSet.update_columns` call: the same values as bar by bar."""
        if self.template.refs:  # pair features: bar by bar (aligned when there are several)
            rows = self._update_rows(bars)
            return rows, _groups(rows)
        # Release order: an accepted bar as itself, a rejected one as (bar, reason).
        order: list[Bar | tuple[Bar, str]] = []
        taken: dict[str, list[Bar]] = {}
        first = bars[0].symbol if bars else ""
        guard = self.guards.get(first)
        if guard is not None and set(map(_SYMBOL, bars)) == {first}:
            verdicts = guard.check_bars(bars)  # one symbol: the guard in one loop
            if verdicts is None:  # every bar accepted as it is: the common case
                taken[first] = order = list(bars)  # type: ignore[assignment]
            else:
                got = taken[first] = []
                for b, problem in verdicts:
                    if problem is None:
                        got.append(b)
                        order.append(b)
                    else:
                        self.rejected[first] = self.rejected.get(first, 0) + 1
                        order.append((b, problem))
        else:
            self._check_each(bars, order, taken)
        groups = [(s, got, self._set(s).update_columns(got)) for s, got in taken.items() if got]
        if len(groups) == 1 and len(order) == len(groups[0][1]):  # one symbol, no rejects
            _, got, cols = groups[0]
            return list(zip(got, zip(*cols, strict=True), strict=True)), groups
        values = {s: zip(*cols, strict=True) for s, _, cols in groups}
        out: list[Out] = []
        for e in order:
            out.append(e if isinstance(e, tuple) else (e, next(values[e.symbol])))
        return out, groups

    def _check_each(
        self, bars: Sequence[Bar], order: list[Bar | tuple[Bar, str]], taken: dict[str, list[Bar]]
    ) -> None:
        """Bars of several symbols through their guards, bar by bar: accepted ones into
        `taken` (per symbol) and `order`, rejected ones into `order` as (bar, reason)."""
        last, check, got = "", None, taken.setdefault("", [])
        for bar in bars:
            sym = bar.symbol
            if sym != last or check is None:
                guard = self.guards.get(sym)
                if guard is None:
                    self.rejected[sym] = self.rejected.get(sym, 0) + 1
                    order.append((bar, f"symbol not in feature group {list(self.symbols)}"))
                    continue
                last, check, got = sym, guard.check, taken.setdefault(sym, [])
            verdicts = check(bar)
            if verdicts is None:  # the common case: accepted as it is
                got.append(bar)
                order.append(bar)
                continue
            for b, problem in verdicts:
                if problem is None:
                    got.append(b)
                    order.append(b)
                else:
                    self.rejected[sym] = self.rejected.get(sym, 0) + 1
                    order.append((b, problem))

    def _update_rows(self, bars: Sequence[Bar]) -> list[Out]:
        rows: list[Out] = []
        for bar in bars:
            sym = bar.symbol
            guard = self.guards.get(sym)
            if guard is None:
                self._reject(rows, bar, f"symbol not in feature group {list(self.symbols)}")
                continue
            verdicts = guard.check(bar)
            if verdicts is None:
                self._take(rows, bar)
                continue
            for b, problem in verdicts:
                if problem is None:
                    self._take(rows, b)
                else:
                    self._reject(rows, b, problem)
        if self.align:
            self._release(rows, final=False)
        return rows

    def _take(self, rows: list[Out], bar: Bar) -> None:
        if self.align:
            self._pending[bar.symbol].append(bar)
        else:
            rows.append((bar, self._set(bar.symbol).update(bar)))

    def _reject(self, rows: list[Out], bar: Bar, reason: str) -> None:
        self.rejected[bar.symbol] = self.rejected.get(bar.symbol, 0) + 1
        rows.append((bar, reason))

    def flush(self) -> list[Out]:
        """Release everything held (end of input)."""
        return self.flush_batch()[0]

    def flush_batch(self) -> tuple[list[Out], list[Group]]:
        """`flush`, and its released rows per symbol, column by column (see `update_batch`)."""
        rows: list[Out] = []
        for guard in self.guards.values():  # candidates never confirmed, in symbol order
            for bar, problem in guard.flush():
                self._reject(rows, bar, problem or "")
        if self.align:
            self._release(rows, final=True)
        return rows, _groups(rows)

    def _release(self, rows: list[Out], final: bool) -> None:
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
            for s, bar in at_t.items():  # in symbol order, like `pending`
                rows.append((bar, self._set(s).update(bar, at_t)))

    @property
    def held(self) -> int:
        return sum(len(q) for q in self._pending.values())


def _groups(rows: list[Out]) -> list[Group]:
    """The accepted rows of `rows` per symbol (first-seen order), column by column."""
    by: dict[str, list[Row]] = {}
    for bar, v in rows:
        if type(v) is not str:
            by.setdefault(bar.symbol, []).append((bar, v))  # type: ignore[arg-type]
    out: list[Group] = []
    for sym, got in by.items():
        bars, values = zip(*got, strict=True)
        out.append((sym, list(bars), [list(c) for c in zip(*values, strict=True)]))
    return out
