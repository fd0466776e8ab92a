"""Thin Bytewax shims around the pure operators: each holds one operator state per key (symbol)
and moves whole batches, so Bytewax's per-item cost is paid per batch, not per tick or bar."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from bytewax.operators import StatefulLogic

from operators.bars import BarBuilder
from operators.feature_engine import FeatureEngine, Out
from operators.sleeve import Sleeve
from operators.validation import dead_letter_for
from schemas.messages import Bar, FeatureRow, Metric, Trade

# What flows between steps: one list per item, keyed by symbol.
Batch = list[Any]


class _Shim(StatefulLogic[Batch, Batch, Any]):
    """Bytewax builders do not see the key, so per-symbol state is built from the first item."""

    state: Any

    def snapshot(self) -> Any:
        return copy.deepcopy(self.state)


class BarsLogic(_Shim):
    """Trades -> closed bars; late and duplicate trades become dead letters."""

    def __init__(self, interval_ns: int, grace_ns: int, resume: BarBuilder | None) -> None:
        self.interval_ns = interval_ns
        self.grace_ns = grace_ns
        self.state: BarBuilder | None = resume

    def on_item(self, value: list[Trade]) -> tuple[list[Batch], bool]:
        if self.state is None:
            self.state = BarBuilder(value[0].symbol, self.interval_ns, self.grace_ns)
        bars, rejects = self.state.update(value)
        out: Batch = list(bars)
        out.extend(dead_letter_for(t, "bars", reason) for t, reason in rejects)
        return ([out] if out else []), self.RETAIN

    def on_eof(self) -> tuple[list[Batch], bool]:
        st = self.state
        if st is None:
            return [], self.RETAIN
        out: Batch = list(st.flush())
        ts = st.watermark
        labels = f"symbol={st.symbol}"
        out += [
            Metric("trades_late", ts, ts, float(st.late), labels),
            Metric("trades_duplicate", ts, ts, float(st.duplicates), labels),
            Metric("bars_built", ts, ts, float(st.bars_emitted), labels),
        ]
        return [out], self.RETAIN


class FeaturesLogic(_Shim):
    """Bars of one symbol group -> [(bar, values), ... , FeatureRow | DeadLetter | Metric ...].

    The group is one symbol, or all symbols when the feature set has pair features (the engine
    aligns them by open time; see operators/feature_engine.py)."""

    def __init__(
        self, factory: Callable[[], FeatureEngine], store: bool, resume: FeatureEngine | None
    ) -> None:
        self.factory = factory
        self.store = store
        self.state: FeatureEngine | None = resume

    def _emit(self, rows: list[Out], out: Batch) -> None:
        fs = self.state.template  # type: ignore[union-attr]
        name, version, store = fs.name, fs.version, self.store
        for bar, v in rows:
            if type(v) is str:
                out.append(dead_letter_for(bar, "features", v))
                continue
            out.append((bar, v))
            if store:  # right after its row: the event order never depends on batching
                out.append(FeatureRow(bar.symbol, bar.ts_event, bar.ts_init, name, version, v))

    def on_item(self, value: list[Any]) -> tuple[list[Batch], bool]:
        if self.state is None:
            self.state = self.factory()
        out: Batch = [m for m in value if type(m) is not Bar]  # dead letters, metrics
        self._emit(self.state.update([m for m in value if type(m) is Bar]), out)
        return ([out] if out else []), self.RETAIN

    def on_eof(self) -> tuple[list[Batch], bool]:
        if self.state is None:
            return [], self.RETAIN
        out: Batch = []
        self._emit(self.state.flush(), out)
        return ([out] if out else []), self.RETAIN


class TraderLogic(_Shim):
    """(bar, features) rows of one symbol -> bar, signal, orders, denials, fills, positions,
    equity: the symbol's strategy and sleeve, one step (same key, so no hop between them)."""

    def __init__(
        self,
        new_strategy: Callable[[str], Any],
        new_sleeve: Callable[[str], Sleeve],
        resume: tuple[Any, Sleeve] | None,
    ) -> None:
        self.new_strategy = new_strategy
        self.new_sleeve = new_sleeve
        self.state: tuple[Any, Sleeve] | None = resume

    def on_item(self, value: Batch) -> tuple[list[Batch], bool]:
        out: Batch = []
        st = self.state
        for item in value:
            if type(item) is not tuple:
                out.append(item)  # feature rows, dead letters, metrics pass through in order
                continue
            bar = item[0]
            if st is None:
                st = self.state = (self.new_strategy(bar.symbol), self.new_sleeve(bar.symbol))
            sig = st[0].update(bar)
            out.append(bar)
            if sig is not None:
                out.append(sig)
            out.extend(st[1].on_bar(bar, sig))
        return ([out] if out else []), self.RETAIN

    def on_eof(self) -> tuple[list[Batch], bool]:
        if self.state is None:
            return [], self.RETAIN
        snap = self.state[1].final_snapshot()
        return ([snap] if snap else []), self.RETAIN
