"""Signal producers: pure operators that see a symbol's (bar, feature values) rows and return a
`Signal` or nothing per row; a model producer also returns each scored row's `Prediction`.

Rows are scored a batch at a time — one `predict_proba` call for a replay's batch, one row live —
through the same `score`, and row i depends only on row i's features (and, for the direction's
change, on the rows before it), so batching never changes a result. Predictions leave as
`RowBlock`s (one per run of scored rows: no struct per bar on the replay's hot path);
`Scores.per_row()` gives the same outputs as one (signal, prediction) pair per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from operators.models.decision import ThresholdDecision
from operators.models.tree import TreeModel
from operators.strategy_sma_cross import SmaCross
from schemas.blocks import RowBlock
from schemas.messages import Bar, Prediction, Signal

Row = tuple[Bar, tuple[float, ...]]
Scored = tuple[Signal | None, Prediction | None]


@dataclass(frozen=True, slots=True)
class Scores:
    """One producer's outputs for a batch of rows: `signals[i]` is row i's signal (or None),
    `predictions` the rows' predictions as (first row index, block of consecutive rows)."""

    signals: list[Signal | None]
    predictions: list[tuple[int, RowBlock]]

    def per_row(self) -> list[Scored]:
        """(signal, prediction) per row, as structs."""
        preds: list[Prediction | None] = [None] * len(self.signals)
        for start, block in self.predictions:
            preds[start : start + len(block)] = block.structs()
        return list(zip(self.signals, preds, strict=True))


class Producer(Protocol):
    name: str

    def score(self, rows: Sequence[Row]) -> Scores: ...


class RuleProducer:
    """The SMA cross rule as a producer (its signals named after the producer)."""

    def __init__(self, name: str, rule: SmaCross) -> None:
        self.name = name
        rule.name = name
        self.rule = rule

    def score(self, rows: Sequence[Row]) -> Scores:
        update = self.rule.update
        return Scores([update(bar) for bar, _ in rows], [])


class ModelProducer:
    """A registry model scored on every bar after the feature set's warm-up; a `Signal` whenever
    the decided direction changes (the first scored bar included), a `Prediction` every bar."""

    def __init__(
        self,
        name: str,
        model: TreeModel,
        model_name: str,
        model_version: str,
        columns: Sequence[str],
        feature_version: str,
        warmup: int,
        decision: ThresholdDecision,
        horizon: int = 0,
    ) -> None:
        self.name = name
        self.model_name = model_name
        self.horizon = horizon
        self.warmup = warmup
        self.decision = decision
        self.columns = tuple(columns)
        self.feature_version = feature_version
        self.seen = 0  # rows of this symbol so far (warm-up counts them)
        self.last: int | None = None  # last decided direction
        self.swap(model, model_version)

    def swap(self, model: TreeModel, model_version: str) -> None:
        """Use another version of the model from the next row on (a promotion, live)."""
        spec = model.spec
        if spec.feature_version != self.feature_version:
            raise ValueError(
                f"model {self.model_name} {model_version} was trained on feature set "
                f"{spec.feature_set!r} version {spec.feature_version}, the flow runs version "
                f"{self.feature_version}: retrain it on this feature set, or run the set it "
                "was trained on"
            )
        missing = [c for c in spec.feature_columns if c not in self.columns]
        if missing:
            raise ValueError(
                f"model {self.model_name} {model_version} needs feature columns {missing} the "
                "running feature set does not have"
            )
        if tuple(spec.classes) != self.decision.classes:
            raise ValueError(
                f"model {self.model_name} {model_version} has classes {spec.classes}, the "
                f"decision rule was built for {self.decision.classes}"
            )
        self.model = model
        self.model_version = model_version
        idx = [self.columns.index(c) for c in spec.feature_columns]
        # None: the model's columns are the running set's, in order (no column pick per call)
        self._idx = None if idx == list(range(len(self.columns))) else np.array(idx, np.intp)

    def score(self, rows: Sequence[Row]) -> Scores:
        n = len(rows)
        signals: list[Signal | None] = [None] * n
        start = min(n, max(0, self.warmup - self.seen))
        self.seen += n
        if start == n:
            return Scores(signals, [])
        if n - start == 1:  # live: one row, no list to build
            x = np.array((rows[start][1],), dtype=np.float64)
        else:
            x = np.array([v for _, v in rows[start:]], dtype=np.float64)
        if self._idx is not None:
            x = x[:, self._idx]
        arr = self.model.predict_proba(x)
        proba = list(map(tuple, arr.tolist()))
        dec = self.decision
        if len(proba) == 1:  # live: one row in plain floats, no numpy call per row
            d0, c0 = dec.decide(proba[0])
            dirs, conf = [d0], [c0]
        else:  # the same comparisons on the whole array (tests/operators/test_op_models.py)
            dirs, conf = dec.directions(arr).tolist(), dec.confidence(arr).tolist()
        name, model, version = self.name, self.model_name, self.model_version
        fv, last = self.feature_version, self.last
        scored = rows[start:]
        ts_close = [bar.ts_close for bar, _ in scored]
        ts_init = [bar.ts_init for bar, _ in scored]
        for i, d in enumerate(dirs):
            if d == last:
                continue
            last = d
            bar, p, c = scored[i][0], proba[i], conf[i]
            signals[start + i] = Signal(
                symbol=bar.symbol,
                ts_event=bar.ts_close,
                ts_init=bar.ts_init,
                strategy=name,
                direction=d,
                strength=c,
                reason=f"{model} {version}: p={', '.join(f'{q:.3f}' for q in p)}",
                model=model,
                model_version=version,
                feature_version=fv,
                proba=p,
                confidence=c,
                horizon=self.horizon,
            )
        self.last = last
        const = dict(
            producer=name, model=model, model_version=version, feature_version=fv,
            classes=dec.classes,
        )  # fmt: skip
        cols: dict[str, list[Any]] = dict(
            ts_event=ts_close, ts_init=ts_init, proba=proba, direction=dirs, confidence=conf
        )
        symbols = {bar.symbol for bar, _ in scored}
        if len(symbols) == 1:
            const["symbol"] = symbols.pop()
        else:  # a producer sees one symbol in the flow; anything else still gets every row
            cols["symbol"] = [bar.symbol for bar, _ in scored]
        return Scores(signals, [(start, RowBlock(Prediction, cols, const))])


class ScheduledProducer:
    """Walk-forward: a `ModelProducer` whose version changes at fixed bar times. Version k
    scores the rows with `schedule[k].start <= bar.ts_event < schedule[k+1].start` (the last
    to the end); rows before the first start are not scored (warm-up still counts them). Each
    version was trained on data before its own start, so every row is scored out of sample.
    A batch that spans a start is split there: one predict call per version's run of rows."""

    def __init__(
        self, inner: ModelProducer, schedule: Sequence[tuple[int, TreeModel, str]]
    ) -> None:
        if not schedule:
            raise ValueError(f"producer {inner.name}: an empty schedule")
        starts = [s for s, _, _ in schedule]
        if starts != sorted(set(starts)):
            raise ValueError(f"producer {inner.name}: schedule starts must increase")
        for _, model, version in (*schedule[1:], schedule[0]):
            inner.swap(model, version)  # every version checked against the features now
        self.name = inner.name
        self.inner = inner
        self.schedule = list(schedule)
        self.starts = np.array(starts, dtype=np.int64)
        self.active = -1  # index into schedule of the version the inner producer holds

    def score(self, rows: Sequence[Row]) -> Scores:
        if not rows:
            return Scores([], [])
        ts = np.fromiter((bar.ts_event for bar, _ in rows), np.int64, len(rows))
        which = np.searchsorted(self.starts, ts, side="right") - 1  # -1: before the first
        signals: list[Signal | None] = []
        blocks: list[tuple[int, RowBlock]] = []
        i, n = 0, len(rows)
        while i < n:
            k = int(which[i])
            j = i + 1
            while j < n and which[j] == k:
                j += 1
            if k < 0:
                self.inner.seen += j - i  # warm-up runs on, nothing scored
                signals += [None] * (j - i)
            else:
                if k != self.active:
                    _, model, version = self.schedule[k]
                    self.inner.swap(model, version)
                    self.active = k
                part = self.inner.score(rows[i:j])
                signals += part.signals
                blocks += [(i + s, b) for s, b in part.predictions]
            i = j
        return Scores(signals, blocks)


class SymbolProducers:
    """All producers of one symbol; `trading` indexes the one whose signals reach the account."""

    def __init__(self, producers: Sequence[Producer], trading: int) -> None:
        if not 0 <= trading < len(producers):
            raise ValueError(f"trading producer index {trading} outside {len(producers)}")
        self.producers = list(producers)
        self.trading = trading

    def score(self, rows: Sequence[Row]) -> list[Scores]:
        """Every producer's scores of the rows, in producer order."""
        return [p.score(rows) for p in self.producers]

    def per_row(self, rows: Sequence[Row]) -> list[tuple[list[Signal | Prediction], Signal | None]]:
        """The same outputs per row: every producer's signal and prediction (producer order),
        and the trading producer's signal."""
        scored = [s.per_row() for s in self.score(rows)]
        out: list[tuple[list[Signal | Prediction], Signal | None]] = []
        t = self.trading
        for i in range(len(rows)):
            msgs: list[Signal | Prediction] = []
            for per in scored:
                sig, pred = per[i]
                if sig is not None:
                    msgs.append(sig)
                if pred is not None:
                    msgs.append(pred)
            out.append((msgs, scored[t][i][0]))
        return out
