"""Purged walk-forward / k-fold splits: a hand example and property tests on random label
windows (numpy RNG), each checked against a brute-force restatement of the rules."""

from __future__ import annotations

import numpy as np
import pytest

from offline.splits import Split, purged_kfold, walk_forward


def window(ts: np.ndarray, end: np.ndarray, test: np.ndarray) -> tuple[int, int]:
    return int(ts[test].min()), int(end[test].max())


def check_rules(ts: np.ndarray, end: np.ndarray, s: Split, embargo: int) -> None:
    lo, hi = window(ts, end, s.test)
    tr = s.train
    assert tr.dtype == np.int64 and s.test.dtype == np.int64
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(s.test) == 1)
    assert np.intersect1d(tr, s.test).size == 0
    # purged: no training label window [ts, end] intersects [lo, hi]
    assert not np.any((ts[tr] <= hi) & (end[tr] >= lo))
    # embargoed: no training sample starts in (hi, hi + embargo]
    assert not np.any((ts[tr] > hi) & (ts[tr] <= hi + embargo))


def allowed(ts: np.ndarray, end: np.ndarray, i: int, lo: int, hi: int, embargo: int) -> bool:
    """Brute force, one sample at a time: may sample i train against window [lo, hi]?"""
    overlaps = not (end[i] < lo or ts[i] > hi)
    embargoed = hi < ts[i] <= hi + embargo
    return not overlaps and not embargoed


def random_samples(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    gaps = rng.choice([1, 1, 1, 2, 5, 60], size=n) * 60_000_000_000  # irregular, some gaps
    ts = 1_700_000_000_000_000_000 + np.cumsum(gaps).astype(np.int64)
    # label ends: a random number of samples ahead, capped at the last sample
    ahead = np.minimum(np.arange(n) + rng.integers(0, 30, size=n), n - 1)
    return ts, ts[ahead]


def test_hand_example() -> None:
    # 10 samples at ts 0..9, each label spanning 2 samples ahead (capped)
    ts = np.arange(10, dtype=np.int64)
    end = np.minimum(ts + 2, 9)
    wf = walk_forward(ts, end, n_folds=2, test_size=3)
    assert [s.test.tolist() for s in wf] == [[4, 5, 6], [7, 8, 9]]
    # test [4..6] has window [4, 8]: samples 2, 3 end at 4, 5 -> purged
    assert wf[0].train.tolist() == [0, 1]
    assert wf[1].train.tolist() == [0, 1, 2, 3, 4]
    roll = walk_forward(ts, end, n_folds=2, test_size=3, anchored=False, train_size=3)
    assert [s.train.tolist() for s in roll] == [[1], [4]]
    kf = purged_kfold(ts, end, n_folds=3, embargo_ns=2)
    assert [s.test.tolist() for s in kf] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    # fold 0: window [0, 5] -> 4, 5 excluded by overlap; 6, 7 by the embargo (5, 7]
    assert kf[0].train.tolist() == [8, 9]
    # fold 1: window [4, 8]: before, 2 and 3 purged; after, everything is in the window
    assert kf[1].train.tolist() == [0, 1]
    # fold 2: window [7, 9]: 5 and 6 end at 7 and 8 -> purged
    assert kf[2].train.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("seed", range(20))
def test_walk_forward_properties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    ts, end = random_samples(rng, n)
    n_folds = int(rng.integers(1, 7))
    test_size = None if rng.random() < 0.5 else int(rng.integers(1, n // (n_folds + 1) + 1))
    anchored = bool(rng.random() < 0.5)
    train_size = None if anchored or rng.random() < 0.5 else int(rng.integers(1, n))
    embargo = int(rng.choice([0, 60_000_000_000, 600_000_000_000]))
    splits = walk_forward(
        ts,
        end,
        n_folds=n_folds,
        test_size=test_size,
        anchored=anchored,
        train_size=train_size,
        embargo_ns=embargo,
    )
    size = test_size or n // (n_folds + 1)
    assert len(splits) == n_folds
    tests = np.concatenate([s.test for s in splits])
    # disjoint, ordered, contiguous, covering the last n_folds * size samples
    assert tests.tolist() == list(range(n - n_folds * size, n))
    assert all(s.test.size == size for s in splits)
    for s in splits:
        check_rules(ts, end, s, embargo)
        first = int(s.test[0])
        assert s.train.size == 0 or s.train.max() < first  # walk-forward: train before test
        lo, hi = window(ts, end, s.test)
        start = 0
        if not anchored:
            start = max(0, first - (train_size or n - n_folds * size))
        want = [i for i in range(start, first) if allowed(ts, end, i, lo, hi, embargo)]
        assert s.train.tolist() == want  # exactly what the rules keep (nothing over-purged)


@pytest.mark.parametrize("seed", range(20))
def test_purged_kfold_properties(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(20, 400))
    ts, end = random_samples(rng, n)
    k = int(rng.integers(2, 8))
    embargo = int(rng.choice([0, 60_000_000_000, 1_800_000_000_000]))
    splits = purged_kfold(ts, end, n_folds=k, embargo_ns=embargo)
    assert len(splits) == k
    tests = np.concatenate([s.test for s in splits])
    assert tests.tolist() == list(range(n))  # disjoint, ordered, covering everything
    for s in splits:
        check_rules(ts, end, s, embargo)
        lo, hi = window(ts, end, s.test)
        rest = sorted(set(range(n)) - set(s.test.tolist()))
        assert s.train.tolist() == [i for i in rest if allowed(ts, end, i, lo, hi, embargo)]


def test_embargo_bites_after_the_test_window() -> None:
    ts = np.arange(100, dtype=np.int64) * 10
    end = ts.copy()  # point labels: no purging at all
    s = purged_kfold(ts, end, n_folds=4, embargo_ns=0)[1]
    assert s.train.tolist() == [*range(25), *range(50, 100)]
    s = purged_kfold(ts, end, n_folds=4, embargo_ns=35)[1]  # test ends at ts 490
    assert s.train.tolist() == [*range(25), *range(53, 100)]  # 500, 510, 520 embargoed


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_folds": 0}, "n_folds"),
        ({"n_folds": 10, "test_size": 10}, "no initial train"),
        ({"test_size": 0}, "test_size"),
        ({"embargo_ns": -1}, "embargo_ns"),
        ({"embargo_ns": 1.5}, "embargo_ns"),
        ({"train_size": 5}, "rolling"),
        ({"anchored": False, "train_size": 0}, "train_size"),
    ],
)
def test_walk_forward_errors(kwargs: dict[str, object], match: str) -> None:
    ts = np.arange(100, dtype=np.int64)
    with pytest.raises(ValueError, match=match):
        walk_forward(ts, ts, **kwargs)  # type: ignore[arg-type]


def test_input_errors() -> None:
    ts = np.arange(10, dtype=np.int64)
    with pytest.raises(ValueError, match="sorted"):
        purged_kfold(ts[::-1].copy(), ts[::-1].copy())
    with pytest.raises(ValueError, match=">= ts"):
        purged_kfold(ts, ts - 1)
    with pytest.raises(ValueError, match="integer"):
        purged_kfold(ts.astype(float), ts.astype(float))
    with pytest.raises(ValueError, match="one length"):
        walk_forward(ts, ts[:5])
    with pytest.raises(ValueError, match="n_folds"):
        purged_kfold(ts, ts, n_folds=1)
    with pytest.raises(ValueError, match="cannot make"):
        purged_kfold(ts[:3], ts[:3], n_folds=4)
