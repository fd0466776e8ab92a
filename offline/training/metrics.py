"""Per-fold classification and trading metrics, numpy only.

`y` is the class index (0..k-1, the column of `proba`), `proba` an (n, k) array of calibrated
probabilities (rows sum to 1).

- accuracy: argmax == y.
- log_loss: mean -ln p[y], p clipped to [eps, 1 - eps] (float64 eps, as scikit-learn).
- roc_auc: binary, the AUC of p[:, 1] (Mann-Whitney, ties count half); multiclass, the macro
  mean of one-vs-rest AUCs over the classes present (a class absent from y, or y of a single
  class, has no AUC and is skipped; NaN when none remains).
- brier: binary, the standard mean (p1 - y)^2; multiclass, the mean over rows of
  sum over classes (p_k - onehot_k)^2 (the original Brier score: twice the binary one for k=2).
- ece: top-label confidence c = max_k p_k, 10 equal-width bins [i/10, (i+1)/10) (the last one
  closed), sum over bins of n_b/n * |accuracy_b - mean c_b|.
- sharpe_after_fees: see `strategy_returns`.
"""

from __future__ import annotations

import numpy as np

YEAR_NS = 365.25 * 86400e9
ECE_BINS = 10


def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean(np.argmax(proba, axis=1) == y))


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    eps = float(np.finfo(np.float64).eps)
    p = np.clip(proba[np.arange(y.shape[0]), y], eps, 1.0 - eps)
    return float(-np.mean(np.log(p)))


def _ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get their average rank."""
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # boundaries of runs of equal values
    new = np.concatenate([[True], sorted_s[1:] != sorted_s[:-1]])
    run = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.concatenate([starts[1:], [s.shape[0]]])
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    out = np.empty(s.shape[0], dtype=np.float64)
    out[order] = avg[run]
    return out


def binary_auc(pos: np.ndarray, score: np.ndarray) -> float:
    """AUC of `score` for the boolean `pos`; NaN when one side is empty."""
    n1 = int(np.sum(pos))
    n0 = pos.shape[0] - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = _ranks(np.asarray(score, dtype=np.float64))
    return float((np.sum(r[pos]) - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    k = proba.shape[1]
    if k == 2:
        return binary_auc(y == 1, proba[:, 1])
    aucs = [binary_auc(y == c, proba[:, c]) for c in range(k)]
    ok = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(ok)) if ok else float("nan")


def brier(y: np.ndarray, proba: np.ndarray) -> float:
    k = proba.shape[1]
    if k == 2:
        return float(np.mean((proba[:, 1] - (y == 1)) ** 2))
    onehot = np.eye(k)[y]
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def ece(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    conf = np.max(proba, axis=1)
    correct = (np.argmax(proba, axis=1) == y).astype(np.float64)
    b = np.minimum((conf * bins).astype(np.int64), bins - 1)
    n = y.shape[0]
    total = 0.0
    for i in range(bins):
        m = b == i
        cnt = int(np.sum(m))
        if cnt:
            total += cnt / n * abs(float(np.mean(correct[m])) - float(np.mean(conf[m])))
    return total


def strategy_returns(
    symbol: np.ndarray, ts: np.ndarray, close: np.ndarray, d: np.ndarray, fee_bps: float
) -> tuple[np.ndarray, float]:
    """Per-bar net log returns of holding direction d_t from bar t's close to the next row's
    close of the same symbol: r_t = d_t * ln(c_{t+1}/c_t) - fee_bps/1e4 * |d_t - d_{t-1}|
    (d_{-1} = 0 per symbol; a symbol's last row has no next close and gives no return). Rows
    of all symbols are pooled. Also returns bars per year from the median bar spacing."""
    out: list[np.ndarray] = []
    spacing: list[np.ndarray] = []
    fee = fee_bps / 1e4
    for s in np.unique(symbol):
        idx = np.flatnonzero(symbol == s)
        idx = idx[np.argsort(ts[idx], kind="mergesort")]
        if idx.size < 2:
            continue
        c, dd = close[idx].astype(np.float64), d[idx].astype(np.float64)
        prev = np.concatenate([[0.0], dd[:-1]])
        r = dd[:-1] * np.log(c[1:] / c[:-1]) - fee * np.abs(dd[:-1] - prev[:-1])
        out.append(r)
        spacing.append(np.diff(ts[idx].astype(np.int64)))
    if not out:
        return np.empty(0), float("nan")
    gaps = np.concatenate(spacing)
    med = float(np.median(gaps))
    return np.concatenate(out), (YEAR_NS / med if med > 0 else float("nan"))


def sharpe(returns: np.ndarray, bars_per_year: float) -> float:
    """Annualized mean / std (ddof=1) of per-bar returns; 0 when they do not vary (always
    flat), NaN with fewer than two."""
    if returns.shape[0] < 2 or np.isnan(bars_per_year):
        return float("nan")
    sd = float(np.std(returns, ddof=1))
    if sd == 0.0:
        return 0.0
    return float(np.mean(returns) / sd * np.sqrt(bars_per_year))


def classification(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": accuracy(y, proba),
        "log_loss": log_loss(y, proba),
        "auc": roc_auc(y, proba),
        "brier": brier(y, proba),
        "ece": ece(y, proba),
    }
