"""operators/models: calibrated scoring, the decision rule and the model producer, on real bars.

A tiny XGBoost and LightGBM model are trained here on returns of real Jan-2024 bars; what is
checked is the scoring path: calibration equal to scikit-learn's, batch scoring equal to one row
at a time, a pickled producer resuming mid-stream bit for bit, warm-up, and refusals."""

from __future__ import annotations

import copy
import itertools
import math
import pickle
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.calibration import _SigmoidCalibration
from sklearn.isotonic import IsotonicRegression

from operators.models.decision import ThresholdDecision
from operators.models.producers import ModelProducer, SymbolProducers
from operators.models.tree import Calibration, ModelSpec, TreeModel, calibrate
from schemas.messages import Bar, Prediction, Signal
from tests.operators.opdata import real_bars
from tests.paths import ROOT

COLS = ("r1", "r5", "r15")


def rows(n: int = 3000) -> list[tuple[Bar, tuple[float, ...]]]:
    bars = real_bars("BTCUSDT")[: n + 15]
    close = np.array([b.close for b in bars])
    lr = np.diff(np.log(close), prepend=np.nan)
    out = []
    for i in range(15, n + 15):
        r5 = float(np.log(close[i] / close[i - 5]))
        r15 = float(np.log(close[i] / close[i - 15]))
        out.append((bars[i], (float(lr[i]), r5, r15)))
    return out


def xy(rs: list[tuple[Bar, tuple[float, ...]]]) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([v for _, v in rs])
    nxt = np.roll(x[:, 0], -1)
    y = np.where(nxt > 2e-4, 2, np.where(nxt < -2e-4, 0, 1))
    return x, y


@pytest.fixture(scope="module")
def xmodel() -> TreeModel:
    x, y = xy(rows())
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x, y), 15)
    return TreeModel(ModelSpec("xgboost", (-1, 0, 1), COLS, "toy", "f00d"), booster)


@pytest.fixture(scope="module")
def lmodel() -> TreeModel:
    x, y = xy(rows())
    params = {"objective": "binary", "num_leaves": 7, "num_threads": 1, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, (y == 2).astype(int)), 15)
    return TreeModel(ModelSpec("lightgbm", (0, 1), COLS, "toy", "f00d"), booster)


def producer(model: TreeModel, warmup: int = 0) -> ModelProducer:
    dec = ThresholdDecision(model.spec.classes, 0.4, 0.4)
    return ModelProducer("p", model, "toy", "v1", ("extra", *COLS), "f00d", warmup, dec, 1)


def widened(rs: list[tuple[Bar, tuple[float, ...]]]) -> list[tuple[Bar, tuple[float, ...]]]:
    """The running set has one more column, first: the producer must pick its own by name."""
    return [(b, (123.0, *v)) for b, v in rs]


def test_save_load_round_trip_is_exact(
    xmodel: TreeModel, lmodel: TreeModel, tmp_path: Path
) -> None:
    x, _ = xy(rows(500))
    for m in (xmodel, lmodel):
        m.save(tmp_path / m.spec.kind)
        back = TreeModel.load(tmp_path / m.spec.kind)
        assert back.spec == m.spec
        assert np.array_equal(back.predict_proba(x), m.predict_proba(x))


def test_platt_and_isotonic_equal_sklearn(xmodel: TreeModel) -> None:
    x, y = xy(rows())
    raw = xmodel.raw_proba(x)
    a, b, xs, ys, ref = [], [], [], [], np.empty_like(raw)
    for k in range(3):
        sig = _SigmoidCalibration().fit(raw[:, k], (y == k).astype(float))
        a.append(float(sig.a_))
        b.append(float(sig.b_))
        ref[:, k] = sig.predict(raw[:, k])
    ref /= ref.sum(axis=1, keepdims=True)
    got = calibrate(Calibration("platt", tuple(a), tuple(b)), raw)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    iso_ref = np.empty_like(raw)
    for k in range(3):
        iso = IsotonicRegression(out_of_bounds="clip").fit(raw[:, k], (y == k).astype(float))
        xs.append(tuple(iso.X_thresholds_.tolist()))
        ys.append(tuple(iso.y_thresholds_.tolist()))
        iso_ref[:, k] = iso.predict(raw[:, k])
    total = iso_ref.sum(axis=1, keepdims=True)
    iso_ref = np.where(total > 0, iso_ref / np.where(total > 0, total, 1), 1 / 3)
    got = calibrate(Calibration("isotonic", x=tuple(xs), y=tuple(ys)), raw)
    np.testing.assert_allclose(got, iso_ref, rtol=0, atol=1e-12)
    assert np.allclose(got.sum(axis=1), 1.0)


def test_binary_calibration_sets_the_negative_class() -> None:
    p = np.array([[0.7, 0.3], [0.2, 0.8]])
    got = calibrate(Calibration("platt", (-2.0,), (0.5,)), p)
    want1 = 1 / (1 + np.exp(-2.0 * p[:, 1] + 0.5))
    assert np.array_equal(got[:, 1], want1) and np.array_equal(got[:, 0], 1 - want1)
    with pytest.raises(ValueError, match="2 classes, the model 1"):
        calibrate(Calibration("platt", (1.0, 2.0), (0.0, 0.0)), p)


def scalar_calibrate(
    cal: Calibration, raw: np.ndarray, exp: Callable[[float], float]
) -> np.ndarray:
    """The calibration written out per element in Python floats, with a given exp."""
    k = raw.shape[1]
    cols = [1] if k == 2 else list(range(k))
    out = np.empty_like(raw)
    for i, row in enumerate(raw.tolist()):
        if cal.method == "platt":
            q = [1.0 / (1.0 + exp(cal.a[j] * row[c] + cal.b[j])) for j, c in enumerate(cols)]
        else:  # clipped to the fitted range, then numpy's interpolation
            q = [
                float(np.interp(min(max(row[c], cal.x[j][0]), cal.x[j][-1]), cal.x[j], cal.y[j]))
                for j, c in enumerate(cols)
            ]
        if k == 2:
            out[i] = (1.0 - q[0], q[0])
            continue
        total = 0.0
        for v in q:
            total += v
        out[i] = [v / total for v in q] if total > 0.0 else [1.0 / k] * k
    return out


def test_calibration_is_per_element_and_one_row_equals_a_batch(
    xmodel: TreeModel, lmodel: TreeModel
) -> None:
    x, _ = xy(rows(1000))
    edge3 = [[np.nan, 0.5, 0.5], [0.0, 0.0, 0.0], [5.0, -3.0, 1e300], [-0.0, 1.0, 2.0]]
    edge2 = [[np.nan, np.nan], [0.5, 0.0], [0.0, -7.0], [-1e300, 1e300]]
    raw3 = np.vstack([xmodel.raw_proba(x), edge3])
    raw2 = np.vstack([lmodel.raw_proba(x), edge2])
    iso_x, iso_y = (0.1, 0.3, 0.35, 0.6), (0.05, 0.2, 0.5, 0.9)
    cases = [
        (Calibration("platt", (-4.1, -3.3, -5.2), (2.2, 1.7, 2.6)), raw3),
        (Calibration("platt", (800.0,) * 3, (800.0,) * 3), raw3),  # exp overflows: uniform rows
        (Calibration("platt", (-6.0,), (1.5,)), raw2),
        (Calibration("isotonic", x=(iso_x,) * 3, y=(iso_y, iso_y[::-1], (0.0,) * 4)), raw3),
        (Calibration("isotonic", x=(iso_x,), y=(iso_y,)), raw2),
    ]
    for cal, raw in cases:
        with np.errstate(over="ignore", invalid="ignore"):
            batch = calibrate(cal, raw)
            one = np.vstack([calibrate(cal, raw[i : i + 1]) for i in range(len(raw))])
            ref = scalar_calibrate(cal, raw, lambda t: float(np.exp(t)))
        assert np.array_equal(one, batch, equal_nan=True), cal  # live row == replay batch
        assert np.array_equal(np.signbit(one), np.signbit(batch)), cal
        assert np.array_equal(batch, ref, equal_nan=True), cal  # per element, bit for bit
    # numpy's exp against libm's: 1 ulp apart at most, which the sigmoid's 1 + e and 1 / (.)
    # may round to 2 ulp, and the normalization (a sum, a division) to 4
    cal = Calibration("platt", (-4.1, -3.3, -5.2), (2.2, 1.7, 2.6))
    raw = xmodel.raw_proba(x)
    z = np.array([cal.a]) * raw + np.array([cal.b])
    e = np.exp(z)
    libm = np.array([math.exp(t) for t in z.ravel().tolist()]).reshape(z.shape)
    assert np.all(np.abs(e - libm) <= np.spacing(libm))
    ref = scalar_calibrate(cal, raw, math.exp)
    assert np.all(np.abs(calibrate(cal, raw) - ref) <= 4 * np.spacing(ref))
    bcal = Calibration("platt", (-6.0,), (1.5,))
    bref = scalar_calibrate(bcal, raw2[:-4], math.exp)[:, 1]
    assert np.all(np.abs(calibrate(bcal, raw2[:-4])[:, 1] - bref) <= 2 * np.spacing(bref))


def test_one_row_decision_equals_the_array_rule() -> None:
    rng = np.random.default_rng(5)
    for classes in ((-1, 0, 1), (0, 1), (1, -1)):
        dec = ThresholdDecision(classes, 0.5, 0.45)
        p = rng.dirichlet(np.ones(len(classes)), 2000)
        p[:40] = np.round(p[:40], 1)  # exactly on a threshold
        p[40:45, 0] = np.nan
        p[45:50, -1] = np.nan
        got = [dec.decide(r) for r in p.tolist()]
        assert [d for d, _ in got] == dec.directions(p).tolist()
        conf = np.array([c for _, c in got])
        assert np.array_equal(conf, dec.confidence(p), equal_nan=True)
        assert all(type(d) is int for d, _ in got)


def test_decision_rule_and_neutral_band() -> None:
    d3 = ThresholdDecision((-1, 0, 1), 0.5, 0.5)
    p = np.array([[0.1, 0.3, 0.6], [0.6, 0.3, 0.1], [0.3, 0.4, 0.3], [0.5, 0.0, 0.5]])
    assert d3.directions(p).tolist() == [1, -1, 0, 0]  # both firing: flat, never a side
    d2 = ThresholdDecision((0, 1), 0.6, 0.6)
    assert d2.directions(np.array([[0.3, 0.7], [0.65, 0.35], [0.45, 0.55]])).tolist() == [1, -1, 0]
    with pytest.raises(ValueError, match="threshold long"):
        ThresholdDecision((0, 1), 0.0, 0.5)
    with pytest.raises(ValueError, match="no decision rule"):
        ThresholdDecision((0, 1, 2))


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
def test_batches_equal_one_row_at_a_time_and_resume_from_pickle(
    kind: str, xmodel: TreeModel, lmodel: TreeModel
) -> None:
    model = xmodel if kind == "xgboost" else lmodel
    rs = widened(rows(1200))
    whole = producer(model, warmup=30).score(rs).per_row()
    one = producer(model, warmup=30)
    singles = [s for r in rs for s in one.score([r]).per_row()]
    assert whole == singles
    # pickled mid-stream (as a recovery snapshot is), the rest is bit for bit the same
    p = producer(model, warmup=30)
    head = p.score(rs[:500]).per_row()
    p2 = pickle.loads(pickle.dumps(p))
    assert head + p2.score(rs[500:]).per_row() == whole
    assert copy.deepcopy(p).model is p.model  # snapshots share the immutable model
    preds = [pr for _, pr in whole]
    assert preds[:30] == [None] * 30 and all(type(q) is Prediction for q in preds[30:])
    sigs = [s for s, _ in whole if s is not None]
    assert sigs, "a real model changes its mind on a month of bars"
    prev = None
    for s in sigs:
        assert s.direction != prev and s.model == "toy" and s.model_version == "v1"
        prev = s.direction


def test_predictions_are_the_models_own_columns(xmodel: TreeModel) -> None:
    rs = rows(300)
    got = producer(xmodel).score(widened(rs)).per_row()
    want = xmodel.predict_proba(np.array([v for _, v in rs]))
    assert np.array_equal(np.array([pr.proba for _, pr in got if pr is not None]), want)


def test_predictions_leave_as_one_block_per_run_of_scored_rows(xmodel: TreeModel) -> None:
    rs = widened(rows(300))
    p = producer(xmodel, warmup=30)
    warm = p.score(rs[:20])  # warm-up only: no prediction at all
    assert warm.predictions == [] and warm.signals == [None] * 20
    s = p.score(rs[20:100])  # 10 more warm-up rows, then 70 scored
    [(start, block)] = s.predictions
    assert start == 10 and len(block) == 70 and block.cls is Prediction
    assert block.const["symbol"] == "BTCUSDT" and block.const["model_version"] == "v1"
    assert block.columns["ts_event"] == [b.ts_close for b, _ in rs[30:100]]
    live = p.score(rs[100:101])  # one row, live
    assert [(i, len(b)) for i, b in live.predictions] == [(0, 1)]
    assert p.score([]).predictions == []


def test_refusals_name_the_fix(xmodel: TreeModel) -> None:
    dec = ThresholdDecision((-1, 0, 1))
    with pytest.raises(ValueError, match="version f00d, the flow runs version beef"):
        ModelProducer("p", xmodel, "toy", "v1", COLS, "beef", 0, dec)
    with pytest.raises(ValueError, match=r"needs feature columns \['r15'\]"):
        ModelProducer("p", xmodel, "toy", "v1", COLS[:2], "f00d", 0, dec)
    with pytest.raises(ValueError, match="classes"):
        ModelProducer("p", xmodel, "toy", "v1", COLS, "f00d", 0, ThresholdDecision((0, 1)))
    with pytest.raises(ValueError, match="rows of 3 features"):
        xmodel.predict_proba(np.zeros((2, 4)))


def test_symbol_producers_keep_row_order(xmodel: TreeModel, lmodel: TreeModel) -> None:
    rs = widened(rows(400))
    a, b = producer(xmodel), producer(lmodel)
    b.name = "q"
    both = SymbolProducers([a, b], trading=1).per_row(rs)
    ref_b = producer(lmodel)
    ref_b.name = "q"
    ra, rb = producer(xmodel).score(rs).per_row(), ref_b.score(rs).per_row()
    for (msgs, trade), (sa, pa), (sb, pb) in zip(both, ra, rb, strict=True):
        assert msgs == [m for m in (sa, pa, sb, pb) if m is not None]
        assert trade == sb
    assert all(type(m) in (Signal, Prediction) for msgs, _ in both for m in msgs)


def test_the_extending_guides_producer_runs_as_written() -> None:
    """docs/extending.md's worked example, executed from the page: its signals change only on a
    change of direction, and batches equal one row at a time."""
    page = (ROOT / "docs" / "extending.md").read_text()
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    ns: dict[str, object] = {}
    exec(compile(code, "docs/extending.md", "exec"), ns)
    make = ns["RsiReversion"]
    bars = real_bars("BTCUSDT")[:400]
    close = np.array([b.close for b in bars])
    rs = [(b, (float(v),)) for b, v in zip(bars, ref_rsi(close, 14), strict=True)]
    whole = make("rsi", 0).score(rs)  # type: ignore[operator]
    assert whole.predictions == [] and len(whole.signals) == len(rs)
    one = make("rsi", 0)  # type: ignore[operator]
    assert [s for r in rs for s in one.score([r]).per_row()] == whole.per_row()
    sigs = [s for s in whole.signals if s is not None]
    assert len(sigs) > 2 and all(a.direction != b.direction for a, b in itertools.pairwise(sigs))


def ref_rsi(close: np.ndarray, n: int) -> np.ndarray:
    """Wilder's RSI (NaN for the first n rows)."""
    d = np.diff(close, prepend=np.nan)
    up, down = np.where(d > 0, d, 0.0), np.where(d < 0, -d, 0.0)
    out = np.full(len(close), np.nan)
    au, ad = up[1 : n + 1].mean(), down[1 : n + 1].mean()
    for i in range(n, len(close)):
        if i > n:
            au = (au * (n - 1) + up[i]) / n
            ad = (ad * (n - 1) + down[i]) / n
        out[i] = 100.0 if ad == 0 else 100.0 - 100.0 / (1.0 + au / ad)
    return out
