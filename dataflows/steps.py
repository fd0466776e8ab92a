"""Thin Bytewax shims around the pure operators: each holds one operator state per key (symbol)
and moves whole batches, so Bytewax's per-item cost is paid per batch, not per tick or bar."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from bytewax.operators import StatefulLogic

from dataflows.shutdown import stopping
from operators.bars import BarBuilder
from operators.feature_engine import FeatureEngine, Out
from operators.models.producers import SymbolProducers
from operators.plausibility import Rules
from operators.validation import dead_letter_for
from schemas.blocks import RowBlock
from schemas.messages import Bar, FeatureRow, Metric, Trade

# What flows between steps: one list per item, keyed by symbol.
Batch = list[Any]


class _Shim(StatefulLogic[Batch, Batch, Any]):
    """Bytewax builders do not see the key, so per-symbol state is built from the first item."""

    state: Any

    def snapshot(self) -> Any:
        return copy.deepcopy(self.state)


class BarsLogic(_Shim):
    """Trades -> closed bars; implausible, late and duplicate trades become dead letters
    (origin "bars:<symbol>:<n>", n counted in the builder's state)."""

    def __init__(
        self,
        interval_ns: int,
        grace_ns: int,
        resume: BarBuilder | None,
        rules: Rules | None = None,
    ) -> None:
        self.interval_ns = interval_ns
        self.grace_ns = grace_ns
        self.rules = rules
        self.state: BarBuilder | None = resume

    @staticmethod
    def _dead(st: BarBuilder, n0: int, rejects: list[tuple[Trade, str]], out: Batch) -> None:
        sym = st.symbol
        for i, (t, reason) in enumerate(rejects, n0 + 1):
            out.append(dead_letter_for(t, "bars", reason, f"bars:{sym}:{i}"))

    def on_item(self, value: list[Trade]) -> tuple[list[Batch], bool]:
        st = self.state
        if st is None:
            st = self.state = BarBuilder(
                value[0].symbol, self.interval_ns, self.grace_ns, self.rules
            )
        n0 = st.rejected
        bars, rejects = st.update(value)
        out: Batch = list(bars)
        if rejects:
            self._dead(st, n0, rejects, out)
        return ([out] if out else []), self.RETAIN

    def on_eof(self) -> tuple[list[Batch], bool]:
        if stopping():  # a requested stop, not the end of the data: keep state for the resume
            return [], self.RETAIN
        st = self.state
        if st is None:
            return [], self.RETAIN
        out: Batch = []
        n0 = st.rejected
        self._dead(st, n0, st.flush_quarantine(), out)
        out += st.flush()
        ts = st.watermark
        labels = f"symbol={st.symbol}"
        quarantined = 0 if st.guard is None else st.guard.quarantined
        out += [
            Metric("trades_late", ts, ts, float(st.late), labels),
            Metric("trades_duplicate", ts, ts, float(st.duplicates), labels),
            Metric("trades_quarantined", ts, ts, float(quarantined), labels),
            Metric("bars_built", ts, ts, float(st.bars_emitted), labels),
        ]
        return [out], self.RETAIN


class FeaturesLogic(_Shim):
    """Bars of one symbol group -> [(bar, values), ..., DeadLetter | Metric ..., then each
    symbol's stored feature rows as one `RowBlock`].

    The group is one symbol, or all symbols when the feature set has pair features (the engine
    aligns them by open time; see operators/feature_engine.py)."""

    def __init__(
        self, factory: Callable[[], FeatureEngine], store: bool, resume: FeatureEngine | None
    ) -> None:
        self.factory = factory
        self.store = store
        self.state: FeatureEngine | None = resume

    def _emit(self, rows: list[Out], out: Batch, counts: dict[str, int]) -> None:
        """`counts`: the engine's reject counters before the update (dead-letter numbers).
        Stored feature rows follow the batch's rows as one `RowBlock` per symbol (in row order;
        the ClickHouse sink writes their columns as arrays, without a struct per bar)."""
        fs = self.state.template  # type: ignore[union-attr]
        add = out.append
        cols: dict[str, tuple[list[int], list[int], list[tuple[float, ...]]]] = {}
        store = self.store
        for row in rows:
            bar, v = row
            if type(v) is str:
                n = counts[bar.symbol] = counts.get(bar.symbol, 0) + 1
                add(dead_letter_for(bar, "features", v, f"features:{bar.symbol}:{n}"))
                continue
            add(row)
            if store:
                c = cols.get(bar.symbol)
                if c is None:
                    c = cols[bar.symbol] = ([], [], [])
                c[0].append(bar.ts_event)
                c[1].append(bar.ts_init)
                c[2].append(v)
        for sym, (ts, ti, values) in cols.items():
            add(
                RowBlock(
                    FeatureRow,
                    {"ts_event": ts, "ts_init": ti, "values": values},
                    {"symbol": sym, "feature_set": fs.name, "version": fs.version},
                )
            )

    def on_item(self, value: list[Any]) -> tuple[list[Batch], bool]:
        if self.state is None:
            self.state = self.factory()
        out: Batch = [m for m in value if type(m) is not Bar]  # dead letters, metrics
        counts = dict(self.state.rejected)
        self._emit(self.state.update([m for m in value if type(m) is Bar]), out, counts)
        return ([out] if out else []), self.RETAIN

    def on_eof(self) -> tuple[list[Batch], bool]:
        if stopping():  # a requested stop, not the end of the data: keep state for the resume
            return [], self.RETAIN
        if self.state is None:
            return [], self.RETAIN
        out: Batch = []
        counts = dict(self.state.rejected)
        self._emit(self.state.flush(), out, counts)
        return ([out] if out else []), self.RETAIN


class SignalLogic(_Shim):
    """(bar, features) rows of one symbol -> the symbol's strategy: the bar, its signal (if any)
    and one (bar, signal | None) decision tuple for the account step; feature rows, dead letters
    and metrics pass through in order."""

    def __init__(
        self,
        new_strategy: Callable[[str], Any],
        resume: Any,
        refresh: Callable[[SymbolProducers], None] | None = None,
    ) -> None:
        """`refresh` (paper/live): called before a batch is scored, may swap a model version."""
        self.new_strategy = new_strategy
        self.state: Any = resume
        self.refresh = refresh

    def on_item(self, value: Batch) -> tuple[list[Batch], bool]:
        out: Batch = []
        st = self.state
        if st is None:
            first = next((item for item in value if type(item) is tuple), None)
            if first is not None:
                st = self.state = self.new_strategy(first[0].symbol)
        if isinstance(st, SymbolProducers):
            if self.refresh is not None:
                self.refresh(st)
            return self._scored(st, value)
        if st is None:  # no bar in the batch
            return ([value] if value else []), self.RETAIN
        # a strategy that takes the batch's bars at once (the same signals as one at a time)
        many = getattr(st, "update_many", None)
        sigs = iter(many([item[0] for item in value if type(item) is tuple]) if many else ())
        for item in value:
            if type(item) is not tuple:
                out.append(item)
                continue
            bar = item[0]
            sig = next(sigs) if many is not None else st.update(bar)
            out.append(bar)
            if sig is not None:
                out.append(sig)
            out.append((bar, sig))
        return ([out] if out else []), self.RETAIN

    def _scored(self, st: SymbolProducers, value: Batch) -> tuple[list[Batch], bool]:
        """Producers score the batch's rows at once: per row the bar, every producer's signal
        (producer order) and the decision, with pass-through items in place; then each
        producer's predictions of the batch as blocks (ADR 0009: kinds interleave by batch)."""
        scores = st.score([item for item in value if type(item) is tuple])
        per_row = [s.signals for s in scores]
        trading = per_row[st.trading]
        out: Batch = []
        i = 0
        for item in value:
            if type(item) is not tuple:
                out.append(item)
                continue
            out.append(item[0])
            for sigs in per_row:
                if sigs[i] is not None:
                    out.append(sigs[i])
            out.append((item[0], trading[i]))
            i += 1
        for s in scores:
            out += [block for _, block in s.predictions]
        return ([out] if out else []), self.RETAIN
