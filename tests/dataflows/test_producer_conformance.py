"""One conformance suite for every producer kind the config accepts (`ProducerConfig.kind`),
the way River checks every estimator: a producer built exactly as the flow builds it
(`dataflows.producers.strategy_factory`) must be picklable and resume mid-stream bit for bit,
deterministic, never read the wall clock, give the same outputs in batches as one row at a time,
and never look ahead (the outputs for rows[:t] are the first t outputs of the whole stream).

A new kind fails `test_every_kind_has_a_case` until it gets a case here."""

from __future__ import annotations

import pickle
import time
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from dataflows.producers import strategy_factory
from offline import registry
from operators.features import feature_set
from operators.models.producers import Row, SymbolProducers
from operators.models.tree import ModelSpec, TreeModel
from schemas.config import ProducerConfig
from tests.dataflows.flowkit import sma_config
from tests.operators.opdata import real_bars

FS = feature_set("core")
N = 900


def feature_rows() -> list[Row]:
    fs = FS.fresh()
    return [(b, fs.update(b)) for b in real_bars("ETHUSDT")[:N]]


_ROWS: list[list[Row]] = []


def feature_rows_cached() -> list[Row]:
    if not _ROWS:
        _ROWS.append(feature_rows())
    return _ROWS[0]


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return feature_rows_cached()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, rows: list[Row]) -> Path:
    """A registry with one real (tiny) model on the core set's columns."""
    x = np.array([v for _, v in rows[FS.warmup :]])
    close = np.array([b.close for b, _ in rows[FS.warmup :]])
    y = (np.sign(np.roll(close, -5) - close) + 1).astype(int)
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x, y), 10)
    model = TreeModel(ModelSpec("xgboost", (-1, 0, 1), FS.columns, FS.name, FS.version), booster)
    r = tmp_path_factory.mktemp("conformance") / "registry"
    registry.register(r, "toy", model, {"label": "sign_5"})
    registry.promote(r, "toy", "v1")
    # A second version for the walk-forward schedule case.
    params = {**params, "max_depth": 3, "seed": 1}
    booster = xgb.train(params, xgb.DMatrix(x, np.roll(y, 1)), 10)
    model = TreeModel(ModelSpec("xgboost", (-1, 0, 1), FS.columns, FS.name, FS.version), booster)
    registry.register(r, "toy", model, {"label": "sign_5_shifted"})
    return r


# Walk-forward: v1 from row 400, v2 from row 650 (rows before 400 are not scored).
SCHEDULE_ROWS = {"v1": 400, "v2": 650}


def schedule(root: Path, rows: list[Row]) -> list[dict[str, Any]]:
    return [
        {
            "start": rows[i][0].ts_event,
            "version": v,
            "sha256": registry.resolve(root, "toy", v).meta["model_sha256"],
        }
        for v, i in SCHEDULE_ROWS.items()
    ]


CASES: dict[str, dict[str, Any]] = {
    "sma_cross": {"name": "sma", "kind": "sma_cross", "fast": 5, "slow": 20},
    "model": {"name": "toy", "kind": "model", "model": "toy", "decision": {"long": 0.4}},
    # `schedule` is filled in by make() (it needs the registry's sha256s)
    "model_schedule": {"name": "wf", "kind": "model", "model": "toy", "decision": {"long": 0.4}},
}


def test_every_kind_has_a_case() -> None:
    kinds = typing.get_args(ProducerConfig.model_fields["kind"].annotation)
    covered = {c["kind"] for c in CASES.values()}
    assert set(kinds) == covered, "add a conformance case for every producer kind"


def make(kind: str, root: Path) -> SymbolProducers:
    case = dict(CASES[kind])
    if kind == "model_schedule":
        case["schedule"] = schedule(root, feature_rows_cached())
    cfg = sma_config(
        ["ETHUSDT"],
        producers=[case],
        strategy={"producer": case["name"]},
        models={"registry": str(root)},
    )
    st = strategy_factory(cfg, FS)("ETHUSDT")
    assert isinstance(st, SymbolProducers)
    return st


def one_by_one(st: SymbolProducers, rows: list[Row]) -> list[Any]:
    return [o for r in rows for o in st.per_row([r])]


@pytest.mark.parametrize("kind", sorted(CASES))
def test_batches_equal_one_row_at_a_time(kind: str, root: Path, rows: list[Row]) -> None:
    whole = make(kind, root).per_row(rows)
    assert whole == one_by_one(make(kind, root), rows)
    chunked: list[Any] = []
    st = make(kind, root)
    for i in range(0, N, 137):
        chunked += st.per_row(rows[i : i + 137])
    assert chunked == whole
    assert any(sig is not None for _, sig in whole), f"{kind}: no signal on {N} real bars"


@pytest.mark.parametrize("kind", sorted(CASES))
def test_deterministic_and_resumes_from_a_pickle(kind: str, root: Path, rows: list[Row]) -> None:
    whole = make(kind, root).per_row(rows)
    assert make(kind, root).per_row(rows) == whole
    for cut in (1, FS.warmup, N // 2):
        st = make(kind, root)
        head = st.per_row(rows[:cut])
        resumed = pickle.loads(pickle.dumps(st))
        assert head + resumed.per_row(rows[cut:]) == whole


@pytest.mark.parametrize("kind", sorted(CASES))
def test_no_look_ahead(kind: str, root: Path, rows: list[Row]) -> None:
    whole = make(kind, root).per_row(rows)
    for t in (FS.warmup + 1, 333, N - 1):
        assert make(kind, root).per_row(rows[:t]) == whole[:t]


@pytest.mark.parametrize("kind", sorted(CASES))
def test_never_reads_the_wall_clock(
    kind: str, root: Path, rows: list[Row], monkeypatch: pytest.MonkeyPatch
) -> None:
    st = make(kind, root)

    def refuse(*_: Any) -> Any:
        raise AssertionError("a producer read the wall clock")

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"):
        monkeypatch.setattr(time, name, refuse)
    st.per_row(rows)


def test_schedule_scores_each_window_with_its_version(root: Path, rows: list[Row]) -> None:
    """The walk-forward producer: nothing before the first start, then each version on exactly
    its rows, with the probabilities that version's own model gives them."""
    out = make("model_schedule", root).producers[0].score(rows).per_row()
    lo, mid = SCHEDULE_ROWS["v1"], SCHEDULE_ROWS["v2"]
    assert all(o == (None, None) for o in out[:lo])
    preds = [pred for _, pred in out]
    assert all(p is not None and p.model_version == "v1" for p in preds[lo:mid])
    assert all(p is not None and p.model_version == "v2" for p in preds[mid:])
    for v, a, b in (("v1", lo, mid), ("v2", mid, N)):
        model = registry.resolve(root, "toy", v).load()
        want = model.predict_proba(np.array([r[1] for r in rows[a:b]]))
        got = np.array([p.proba for p in preds[a:b] if p is not None])
        assert np.array_equal(got, want)


def test_schedule_refuses_a_changed_model(root: Path, rows: list[Row]) -> None:
    case = {**CASES["model_schedule"], "schedule": schedule(root, rows)}
    case["schedule"][1] = {**case["schedule"][1], "sha256": "0" * 64}
    cfg = sma_config(
        ["ETHUSDT"], producers=[case], strategy={"producer": "wf"}, models={"registry": str(root)}
    )
    with pytest.raises(ValueError, match="walk-forward registry was changed"):
        strategy_factory(cfg, FS)
