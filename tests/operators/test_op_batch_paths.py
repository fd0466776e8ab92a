"""The batch paths equal the bar-by-bar ones exactly: each family's `update_many`,
`FeatureSet.update_columns`, `Plausibility.check_bars` and `FeatureEngine.update_batch` give the
same values (bit for bit, NaN where NaN) and leave the same state as one call per bar, however
the bars are batched and however batch and single calls are mixed, on real bars and on hostile
ones (jumps, duplicates, rewinds, other symbols)."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from operators.feature_engine import FeatureEngine
from operators.features import FeatureSet, feature_set
from operators.features.registry import build, parse_spec
from operators.plausibility import BAR_RULES, Plausibility
from schemas.messages import NS_PER_MINUTE, Bar
from tests.operators.opdata import real_bars

BTC, ETH = "BTCUSDT", "ETHUSDT"
FAMILIES = [
    "log_returns_1",
    "log_returns_5",
    "sma_1",
    "sma_10",
    "sma_50",
    "sma_3_volume",
    "ema_1",
    "ema_20",
    "rsi_2",
    "rsi_14",
    "realized_vol_2",
    "realized_vol_20",
]


def _bits(values: Sequence[Any]) -> list[Any]:
    """Comparable values: floats by their bits (NaN equals NaN, -0.0 differs from 0.0)."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, tuple):
            out.append(_bits(v))
        elif isinstance(v, float):
            out.append(v.hex() if v == v else "nan")
        else:
            out.append(v)
    return out


def _splits(n: int, seed: int) -> list[tuple[int, int, bool]]:
    """[(start, end, batched)]: batches of random sizes (0, 1, small, big), ~1 in 6 bar by bar."""
    rng = random.Random(seed)
    out, i = [], 0
    while i < n:
        k = rng.choice([0, 1, 2, 3, 7, 49, 50, 51, 997, 5000])
        out.append((i, min(i + k, n), rng.random() > 1 / 6))
        i += k
    return out


def _hostile(seed: int, n: int = 3000) -> list[Bar]:
    """Real BTC bars with jumps (confirmed and not), duplicates, rewinds and gaps mixed in."""
    rng = random.Random(seed)
    bars = list(real_bars(BTC)[:n])
    out: list[Bar] = []
    for b in bars:
        r = rng.random()
        if r < 0.01 and out:
            out.append(out[-1])  # duplicate
        elif r < 0.02 and len(out) > 3:
            out.append(out[-3])  # rewind
        elif r < 0.03:
            k = rng.choice([3.0, 0.2])  # a price jump: a lone outlier or the start of a regime
            out.append(_scaled(b, k))
            continue
        elif r < 0.035:
            out.append(_with(b, ts_event=b.ts_event + 3 * 86_400 * 10**9))  # far ahead
            continue
        out.append(b)
    return out


def _with(b: Bar, **over: Any) -> Bar:
    d = {f: getattr(b, f) for f in b.__struct_fields__}
    d.update(over)
    return Bar(**d)


def _scaled(b: Bar, k: float) -> Bar:
    return _with(b, open=b.open * k, high=b.high * k, low=b.low * k, close=b.close * k)


def _state(obj: Any) -> bytes:
    return pickle.dumps(obj.__dict__ if hasattr(obj, "__dict__") else obj)


def _mixed(
    bars: Sequence[Bar],
    seed: int,
    one: Callable[[Bar], Any],
    many: Callable[[Sequence[Bar]], list[Any]],
) -> list[Any]:
    got: list[Any] = []
    for i, j, batched in _splits(len(bars), seed):
        got += many(bars[i:j]) if batched else [one(b) for b in bars[i:j]]
    return got


@pytest.mark.parametrize("spec", FAMILIES)
@pytest.mark.parametrize("seed", [1, 2])
def test_update_many_equals_update(spec: str, seed: int) -> None:
    bars = real_bars(BTC)[:20_000]
    ref, feat = build(parse_spec(spec)), build(parse_spec(spec))
    want = [ref.update(b) for b in bars]
    got = _mixed(bars, seed, feat.update, feat.update_many)
    assert _bits(got) == _bits(want)
    assert _state(feat) == _state(ref)


@pytest.mark.parametrize("spec", ["sma_10", "sma_50"])
def test_sma_beyond_exact_float_sums_takes_python_ints(spec: str) -> None:
    """Prices whose fixed-point sums pass 2**53 (not exact in float64): the Python-int path,
    still equal to `update`; a non-finite price raises as `update` does."""
    bars = [_scaled(b, 3e6) for b in real_bars(BTC)[:3000]]  # ~1.3e11 * 1e8 * 50 > 2**53
    ref, feat = build(parse_spec(spec)), build(parse_spec(spec))
    assert bars[0].close * 1e8 * 10 > 2**53
    want = [ref.update(b) for b in bars]
    assert _bits(_mixed(bars, 3, feat.update, feat.update_many)) == _bits(want)
    assert _state(feat) == _state(ref)
    bad = [*bars[:5], _with(bars[5], close=math.inf)]
    with pytest.raises(ValueError, match="finite"):
        feat.update_many(bad)


@pytest.mark.parametrize(
    "specs",
    [
        "core",
        "tcn12",
        ["macd_12_26_9", "bbands_20_2[upper,lower]", "stoch_14_3_3 as st", "sma_5", "candle"],
    ],
)
def test_update_columns_equals_update(specs: str | list[str]) -> None:
    fs = feature_set(specs) if isinstance(specs, str) else FeatureSet(specs)
    ref = fs.fresh()
    bars = real_bars(BTC)[:8000]
    want = [ref.update(b) for b in bars]
    got: list[tuple[float, ...]] = []
    for i, j, _ in _splits(len(bars), 5):
        cols = fs.update_columns(bars[i:j])
        assert len(cols) == len(fs.columns) and all(len(c) == j - i for c in cols)
        got += zip(*cols, strict=True)
    assert _bits(got) == _bits(want)
    assert pickle.dumps(fs) == pickle.dumps(ref)


def test_update_columns_refuses_pair_features() -> None:
    with pytest.raises(ValueError, match="pair features"):
        FeatureSet(["corr_btcusdt_60"]).update_columns(real_bars(ETH)[:3])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_check_bars_equals_check(seed: int) -> None:
    bars = _hostile(seed)
    ref, g = Plausibility(BAR_RULES, ordered=True), Plausibility(BAR_RULES, ordered=True)
    want = [[(b, None)] if (v := ref.check(b)) is None else v for b in bars]
    got: list[Any] = []
    for i, j, batched in _splits(len(bars), seed):
        if batched:
            v = g.check_bars(bars[i:j])
            got += [[(b, None)] for b in bars[i:j]] if v is None else [v]
        else:
            got += [[(b, None)] if (v := g.check(b)) is None else v for b in bars[i:j]]
    flat = [x for vs in got for x in vs]
    assert flat == [x for vs in want for x in vs]
    assert any(r is not None for _, r in flat)  # the hostile bars really were judged
    assert [getattr(g, s) for s in Plausibility.__slots__] == [
        getattr(ref, s) for s in Plausibility.__slots__
    ]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("two_symbols", [False, True])
def test_engine_update_batch_equals_bar_by_bar(seed: int, two_symbols: bool) -> None:
    """Against the engine's bar-by-bar path (`_update_rows`, one `FeatureSet.update` per bar):
    the same rows, rejects and groups, and the same state."""
    bars = _hostile(seed)
    symbols = [BTC]
    if two_symbols:  # interleaved with ETH, plus a symbol outside the group
        eth = list(real_bars(ETH)[: len(bars)])
        bars = sorted([*bars, *eth], key=lambda b: (b.ts_event, b.symbol))
        bars.insert(100, _with(bars[100], symbol="SOLUSDT"))
        symbols = [BTC, ETH]
    ref, eng = (FeatureEngine(feature_set("core"), symbols) for _ in range(2))
    want: list[Any] = []
    got: list[Any] = []
    for i, j, _ in _splits(len(bars), seed):
        want += ref._update_rows(bars[i:j])
        rows, groups = eng.update_batch(bars[i:j])
        got += rows
        accepted = [(b, v) for b, v in rows if not isinstance(v, str)]
        regrouped = [
            (b, v)
            for _, bs, cols in groups
            for b, v in zip(bs, zip(*cols, strict=False), strict=True)
        ]
        assert sorted(_bits([(b.symbol, b.ts_event, v) for b, v in regrouped])) == sorted(
            _bits([(b.symbol, b.ts_event, v) for b, v in accepted])
        )
    want += ref.flush()
    got += eng.flush_batch()[0]
    assert _bits([(b, v) for b, v in got]) == _bits([(b, v) for b, v in want])
    assert any(isinstance(v, str) for _, v in got)
    assert eng.rejected == ref.rejected
    assert pickle.dumps(eng) == pickle.dumps(ref)


def test_interval_constant() -> None:
    assert NS_PER_MINUTE == 60 * 10**9
