"""offline/training/metrics.py against scikit-learn (accuracy, log loss, ROC AUC, Brier) and
against plain loops written here (ECE, Sharpe after fees), plus the stored calibration form
(offline/training/fit.py) against scikit-learn's own calibrators."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.calibration import _SigmoidCalibration  # type: ignore[import-untyped]
from sklearn.isotonic import IsotonicRegression  # type: ignore[import-untyped]
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score  # type: ignore[import-untyped]

from offline.training import metrics as M
from offline.training.fit import balanced_weights, fit_calibration
from operators.models.decision import ThresholdDecision
from operators.models.tree import calibrate


def _data(k: int, n: int = 500, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y] * rng.random((n, 1))
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p[:5] = np.round(p[:5], 1)  # some ties for the AUC ranks
    p[:5] /= p[:5].sum(axis=1, keepdims=True)
    return y, p


@pytest.mark.parametrize("k", [2, 3])
def test_classification_metrics_match_sklearn(k: int) -> None:
    y, p = _data(k)
    assert M.accuracy(y, p) == pytest.approx(accuracy_score(y, p.argmax(axis=1)))
    assert M.log_loss(y, p) == pytest.approx(log_loss(y, p, labels=list(range(k))), rel=1e-12)
    if k == 2:
        assert M.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p[:, 1]), rel=1e-12)
        assert M.brier(y, p) == pytest.approx(brier_score_loss(y, p[:, 1]), rel=1e-12)
    else:
        auc = roc_auc_score(y, p, multi_class="ovr", average="macro")
        assert M.roc_auc(y, p) == pytest.approx(auc, rel=1e-12)
        # the multiclass Brier: mean over rows of sum over classes, = sum of one-vs-rest Briers
        ovr = sum(brier_score_loss(y == c, p[:, c]) for c in range(k))
        assert M.brier(y, p) == pytest.approx(ovr, rel=1e-12)


def test_auc_undefined_cases() -> None:
    p = np.array([[0.3, 0.7], [0.6, 0.4]])
    assert math.isnan(M.roc_auc(np.array([1, 1]), p))
    # a class absent from y is skipped in the macro mean
    y3, p3 = _data(3)
    keep = y3 != 2
    y, q = y3[keep], p3[keep]
    want = np.mean([roc_auc_score(y == c, q[:, c]) for c in (0, 1)])
    assert M.roc_auc(y, q) == pytest.approx(want)


def _ece_loop(y: np.ndarray, p: np.ndarray) -> float:
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(10)]
    for row, label in zip(p, y, strict=True):
        conf = max(row)
        pred = int(np.argmax(row))
        b = 9 if conf >= 1.0 else int(conf * 10)
        bins[b].append((conf, pred == label))
    total = 0.0
    for items in bins:
        if items:
            acc = sum(c for _, c in items) / len(items)
            mean_conf = sum(c for c, _ in items) / len(items)
            total += len(items) / len(y) * abs(acc - mean_conf)
    return total


@pytest.mark.parametrize("k", [2, 3])
def test_ece_matches_loop(k: int) -> None:
    y, p = _data(k, seed=k)
    p[0] = np.eye(k)[0]  # confidence exactly 1.0 goes to the last bin
    assert M.ece(y, p) == pytest.approx(_ece_loop(y, p), abs=1e-12)


def _sharpe_loop(
    symbol: list[str], ts: list[int], close: list[float], d: list[int], fee_bps: float
) -> float:
    rets: list[float] = []
    gaps: list[int] = []
    for s in sorted(set(symbol)):
        rows = sorted(
            (t, c, x) for sy, t, c, x in zip(symbol, ts, close, d, strict=True) if sy == s
        )
        prev = 0
        for i in range(len(rows) - 1):
            t, c, x = rows[i]
            t1, c1, _ = rows[i + 1]
            rets.append(x * math.log(c1 / c) - fee_bps / 1e4 * abs(x - prev))
            gaps.append(t1 - t)
            prev = x
    mean = sum(rets) / len(rets)
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1))
    gaps.sort()
    n = len(gaps)
    med = gaps[n // 2] if n % 2 else (gaps[n // 2 - 1] + gaps[n // 2]) / 2
    return mean / sd * math.sqrt(365.25 * 86400e9 / med)


def test_sharpe_after_fees_matches_loop() -> None:
    rng = np.random.default_rng(3)
    n = 300
    symbol = np.array(["BTCUSDT", "ETHUSDT"] * (n // 2))
    ts = np.repeat(np.arange(n // 2, dtype=np.int64) * 60_000_000_000, 2)
    close = np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    _, p = _data(3, n)
    d = ThresholdDecision((-1, 0, 1), 0.55, 0.55).directions(p)
    assert set(np.unique(d)) == {-1, 0, 1}
    # shuffled row order: the metric sorts per symbol by time itself
    perm = rng.permutation(n)
    r, bpy = M.strategy_returns(symbol[perm], ts[perm], close[perm], d[perm], 10.0)
    assert bpy == pytest.approx(365.25 * 1440)
    want = _sharpe_loop(symbol.tolist(), ts.tolist(), close.tolist(), d.tolist(), 10.0)
    assert M.sharpe(r, bpy) == pytest.approx(want, rel=1e-9)
    # fees only lower it; always flat gives 0
    r0, _ = M.strategy_returns(symbol, ts, close, d, 0.0)
    assert np.mean(r0) > np.mean(r)
    flat, _ = M.strategy_returns(symbol, ts, close, np.zeros(n, np.int8), 10.0)
    assert M.sharpe(flat, bpy) == 0.0


@pytest.mark.parametrize("method", ["platt", "isotonic"])
@pytest.mark.parametrize("k", [2, 3])
def test_stored_calibration_equals_sklearn(method: str, k: int) -> None:
    y, raw = _data(k, 800, seed=7)
    cal = fit_calibration(method, raw, y)  # type: ignore[arg-type]
    got = calibrate(cal, raw)
    cols = [1] if k == 2 else list(range(k))
    want = np.empty_like(raw)
    for c in cols:
        if method == "platt":
            want[:, c] = _SigmoidCalibration().fit(raw[:, c], y == c).predict(raw[:, c])
        else:
            iso = IsotonicRegression(out_of_bounds="clip").fit(raw[:, c], y == c)
            want[:, c] = iso.predict(raw[:, c])
    if k == 2:
        want[:, 0] = 1 - want[:, 1]
    else:
        want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


def test_balanced_weights() -> None:
    y = np.array([0, 0, 0, 1, 2, 2])
    w = balanced_weights(y, 3)
    np.testing.assert_allclose(w, [6 / 9] * 3 + [2.0] + [1.0] * 2)
    assert [w[y == c].sum() for c in range(3)] == pytest.approx([2.0, 2.0, 2.0])
