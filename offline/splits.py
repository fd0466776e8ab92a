"""Purged walk-forward and purged k-fold splits with an embargo (AFML ch. 7).

Sample i is observed at ts[i] and its label depends on data up to end_ts[i] (>= ts[i]), i.e. its
label window is [ts[i], end_ts[i]] (closed). For a test block of contiguous samples, the test
window is [test_start, test_end] = [min ts over the block, max end_ts over the block]. Times are
int ns or datetime64 (a dataset's `ts_event`, `<label>_end_ts` columns as `.to_numpy()`). A training
candidate is dropped when
- purge: its label window intersects the test window (ts <= test_end and end_ts >= test_start);
- embargo: it starts in (test_end, test_end + embargo_ns] (serial correlation leaks test
  information into samples right after the test window).

`embargo_ns` is a duration in ns (like ts/end_ts), so it means the same thing across gaps in the
data; sizes (`test_size`, `train_size`) are numbers of samples. In walk-forward splits training
samples all precede the test block, so the embargo never bites there; it matters for
`purged_kfold`, where training samples also follow the test block.

Test blocks are contiguous in sample order, disjoint and increasing. Train and test are sorted
int64 index arrays; a train array may be empty when purging removes everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Split:
    train: np.ndarray  # int64 sample indices, sorted
    test: np.ndarray  # int64 sample indices, sorted, contiguous


def _as_ns(x: np.ndarray) -> np.ndarray:
    """Int ns as given; datetime64 (the dataset parquet's Datetime(ns, UTC) columns, via
    `.to_numpy()`) as int64 ns since the epoch. NaT (a missing label) stays an error."""
    a = np.asarray(x)
    if a.dtype.kind == "M":
        if bool(np.any(np.isnat(a))):
            raise ValueError("ts and end_ts must not be missing (drop samples with null labels)")
        return a.astype("datetime64[ns]").view(np.int64)
    return a


def _check(ts: np.ndarray, end_ts: np.ndarray, embargo_ns: int) -> tuple[np.ndarray, np.ndarray]:
    t = _as_ns(ts)
    e = _as_ns(end_ts)
    if t.ndim != 1 or e.shape != t.shape:
        raise ValueError(f"ts and end_ts must be 1-d of one length, got {t.shape}, {e.shape}")
    if t.dtype.kind not in "iu" or e.dtype.kind not in "iu":
        raise ValueError(
            "ts and end_ts must be integer ns or datetime64 (drop samples with missing labels)"
        )
    t, e = t.astype(np.int64), e.astype(np.int64)
    if t.size > 1 and bool(np.any(np.diff(t) < 0)):
        raise ValueError("ts must be sorted ascending")
    if bool(np.any(e < t)):
        raise ValueError("end_ts must be >= ts for every sample")
    if isinstance(embargo_ns, bool) or not isinstance(embargo_ns, int | np.integer):
        raise ValueError(f"embargo_ns must be an int duration in ns, got {embargo_ns!r}")
    if embargo_ns < 0:
        raise ValueError(f"embargo_ns must be >= 0, got {embargo_ns}")
    return t, e


def block_window(ts: np.ndarray, end_ts: np.ndarray, test: np.ndarray) -> tuple[int, int]:
    """[test_start, test_end] of a test block: min ts and max end_ts over it."""
    return int(np.min(ts[test])), int(np.max(end_ts[test]))


def purge(
    ts: np.ndarray,
    end_ts: np.ndarray,
    candidates: np.ndarray,
    test: np.ndarray,
    embargo_ns: int = 0,
) -> np.ndarray:
    """The candidates that survive purging and the embargo against one test block."""
    start, end = block_window(ts, end_ts, test)
    c = np.asarray(candidates, dtype=np.int64)
    overlap = (ts[c] <= end) & (end_ts[c] >= start)
    embargoed = (ts[c] > end) & (ts[c] <= end + embargo_ns)
    return c[~(overlap | embargoed)]


def walk_forward(
    ts: np.ndarray,
    end_ts: np.ndarray,
    *,
    n_folds: int = 5,
    test_size: int | None = None,
    anchored: bool = True,
    train_size: int | None = None,
    embargo_ns: int = 0,
) -> list[Split]:
    """Walk-forward splits: train strictly before each test block, purged.

    The last `n_folds * test_size` samples form `n_folds` consecutive test blocks; by default
    `test_size = n // (n_folds + 1)`, so the first block (plus the remainder) is the initial
    train. anchored=True: train = every sample before the test block (expanding);
    anchored=False: only the last `train_size` samples before it (rolling; default the initial
    train's size). Purging then drops those whose label windows reach into the test window.
    """
    t, e = _check(ts, end_ts, embargo_ns)
    n = t.size
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 1:
        raise ValueError(f"n_folds must be an int >= 1, got {n_folds!r}")
    if test_size is None:
        test_size = n // (n_folds + 1)
    if test_size < 1:
        raise ValueError(f"test_size must be >= 1, got {test_size} ({n} samples)")
    first = n - n_folds * test_size
    if first < 1:
        raise ValueError(f"{n_folds} folds of {test_size} leave no initial train ({n} samples)")
    if anchored:
        if train_size is not None:
            raise ValueError("train_size is for the rolling window (anchored=False)")
    else:
        train_size = first if train_size is None else train_size
        if train_size < 1:
            raise ValueError(f"train_size must be >= 1, got {train_size}")
    splits = []
    for k in range(n_folds):
        lo = first + k * test_size
        test = np.arange(lo, lo + test_size, dtype=np.int64)
        start = 0 if train_size is None else max(0, lo - train_size)
        cand = np.arange(start, lo, dtype=np.int64)
        splits.append(Split(train=purge(t, e, cand, test, embargo_ns), test=test))
    return splits


def purged_kfold(
    ts: np.ndarray,
    end_ts: np.ndarray,
    *,
    n_folds: int = 5,
    embargo_ns: int = 0,
) -> list[Split]:
    """K contiguous test blocks covering all samples (np.array_split sizes); train = everything
    else, purged around the test window and embargoed after it. Not walk-forward: train also
    follows the test block, so use it for model selection, not for a backtest."""
    t, e = _check(ts, end_ts, embargo_ns)
    n = t.size
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds must be an int >= 2, got {n_folds!r}")
    if n < n_folds:
        raise ValueError(f"{n} samples cannot make {n_folds} folds")
    idx = np.arange(n, dtype=np.int64)
    splits = []
    for test in np.array_split(idx, n_folds):
        cand = np.concatenate([idx[: test[0]], idx[test[-1] + 1 :]])
        splits.append(Split(train=purge(t, e, cand, test, embargo_ns), test=test))
    return splits
