"""Thin Bytewax shims around the pure operators: each holds one operator state per key (symbol)
and moves whole batches, so Bytewax's per-item cost is paid per batch, not per tick or bar."""

from __future__ import annotations

import copy
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import numpy as np
from bytewax.operators import StatefulLogic

from dataflows.shutdown import stopping
from operators.bars import BarBuilder
from operators.feature_engine import FeatureEngine, Group, Out
from operators.plausibility import Rules
from operators.validation import dead_letter_for
from schemas.columns import Columns
from schemas.messages import Bar, Metric, Trade

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
    """Bars of one symbol group -> [(bar, values), ..., DeadLetter | Metric ..., Columns]: with
    `store`, the batch's feature rows as one `Columns` per symbol (table `features`; the same
    rows as one `FeatureRow` per bar, without making them).

    The group is one symbol, or all symbols when the feature set has pair features (the engine
    aligns them by open time; see operators/feature_engine.py)."""

    def __init__(
        self, factory: Callable[[], FeatureEngine], store: bool, resume: FeatureEngine | None
    ) -> None:
        self.factory = factory
        self.store = store
        self.state: FeatureEngine | None = resume

    def _emit(
        self, rows: list[Out], groups: list[Group], out: Batch, counts: dict[str, int]
    ) -> None:
        """`counts`: the engine's reject counters before the update (dead-letter numbers)."""
        st = self.state
        assert st is not None
        if counts == st.rejected:  # nothing rejected: every item a (bar, values) row
            out += rows
        else:
            for bar, v in rows:
                if type(v) is str:
                    n = counts[bar.symbol] = counts.get(bar.symbol, 0) + 1
                    out.append(dead_letter_for(bar, "features", v, f"features:{bar.symbol}:{n}"))
                else:
                    out.append((bar, v))
        if self.store:  # one Columns of feature rows per symbol, after the batch's rows
            fs = st.template
            out += [
                feature_columns(sym, bars, cols, fs.name, fs.version) for sym, bars, cols in groups
            ]

    def on_item(self, value: list[Any]) -> tuple[list[Batch], bool]:
        if self.state is None:
            self.state = self.factory()
        out: Batch = [m for m in value if type(m) is not Bar]  # dead letters, metrics
        counts = dict(self.state.rejected)
        rows, groups = self.state.update_batch([m for m in value if type(m) is Bar])
        self._emit(rows, groups, out, counts)
        return ([out] if out else []), self.RETAIN

    def on_eof(self) -> tuple[list[Batch], bool]:
        if stopping():  # a requested stop, not the end of the data: keep state for the resume
            return [], self.RETAIN
        if self.state is None:
            return [], self.RETAIN
        out: Batch = []
        counts = dict(self.state.rejected)
        self._emit(*self.state.flush_batch(), out, counts)
        return ([out] if out else []), self.RETAIN


def feature_columns(
    symbol: str, bars: list[Bar], cols: list[list[float]], name: str, version: str
) -> Columns:
    """The `features` rows of one symbol's bars (values: an (n, k) float64 array, columns in
    the set's order): the same rows as one `FeatureRow` per bar."""
    n = len(bars)
    return Columns(
        "features",
        {
            "symbol": [symbol] * n,
            "ts_event": list(map(_TS_EVENT, bars)),
            "ts_init": list(map(_TS_INIT, bars)),
            "feature_set": [name] * n,
            "version": [version] * n,
            "values": np.array(cols, dtype=np.float64).T,
        },
        n,
    )


_TS_EVENT, _TS_INIT = attrgetter("ts_event"), attrgetter("ts_init")


class SignalLogic(_Shim):
    """(bar, features) rows of one symbol -> the symbol's strategy: the bar, its signal (if any)
    and one (bar, signal | None) decision tuple for the account step; feature rows, dead letters
    and metrics pass through in order."""

    def __init__(self, new_strategy: Callable[[str], Any], resume: Any) -> None:
        self.new_strategy = new_strategy
        self.state: Any = resume

    def on_item(self, value: Batch) -> tuple[list[Batch], bool]:
        out: Batch = []
        append = out.append
        st = self.state
        update = None if st is None else st.update
        for item in value:
            if type(item) is not tuple:
                append(item)
                continue
            bar = item[0]
            if update is None:
                st = self.state = self.new_strategy(bar.symbol)
                update = st.update
            sig = update(bar)
            append(bar)
            if sig is not None:
                append(sig)
            append((bar, sig))
        return ([out] if out else []), self.RETAIN
