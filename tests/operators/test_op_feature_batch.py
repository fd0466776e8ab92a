"""A run of bars at once equals one bar at a time: every family with `update_many`, and
`FeatureSet.update_batch` for the built-in sets, give the same floats and leave the same state,
for any split of a real stream into runs and single bars (a replay's batches, then live)."""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.feature_engine import FeatureEngine
from operators.features import feature_set
from operators.features.base import BarColumns
from operators.features.registry import FAMILIES, build, family_class, parse_spec
from operators.features.sma import SMA
from schemas.messages import Bar
from tests.operators.opdata import real_bars

# families with update_many, each with specs that cover its parameters
BATCHED = {
    "sma": ["sma_1", "sma_10", "sma_50", "sma_1440", "sma_20_high", "sma_7_volume"],
    "ema": ["ema_1", "ema_20", "ema_9_low"],
    "log_returns": ["log_returns_1", "log_returns_5", "log_returns_60"],
    "rsi": ["rsi_2", "rsi_14"],
    "realized_vol": ["realized_vol_2", "realized_vol_20"],
    "macd": ["macd_12_26_9", "macd_2_3_1", "macd_3_7_4"],
    "adx": ["adx_14", "adx_2"],
    "sma_ratio": ["sma_ratio_5_20", "sma_ratio_1_2", "sma_ratio_50_200"],
    "wma": ["wma_20", "wma_2", "wma_200"],
    "candle": ["candle"],
    "obv": ["obv"],
    "atr": ["atr_14", "atr_1"],
    "parkinson": ["parkinson_1", "parkinson_20", "parkinson_1440"],
    "garman_klass": ["garman_klass_1", "garman_klass_20"],
    "garch": ["garch_1_0p05_0p94", "garch_1440_0p05_0p94", "garch_20_0p3_0"],
    "vwap_dev": ["vwap_dev_1", "vwap_dev_20"],
    "volume_zscore": ["volume_zscore_2", "volume_zscore_20"],
    "cci": ["cci_20", "cci_2", "cci_100"],
    "bbands": ["bbands_20_2", "bbands_2_1", "bbands_1000_2"],
    "mfi": ["mfi_14", "mfi_2"],
    "stoch": ["stoch_14_3_3", "stoch_1_1_1", "stoch_60_10_7"],
    "willr": ["willr_14", "willr_2", "willr_200"],
}


def _plain(x: Any) -> Any:
    if isinstance(x, float):
        return ("nan",) if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, deque)):
        return (type(x).__name__, getattr(x, "maxlen", None), [_plain(v) for v in x])
    if hasattr(x, "__dict__") and not callable(x):
        return (type(x).__name__, _plain({k: v for k, v in vars(x).items() if k != "update"}))
    return x


def _split(bars: Sequence[Bar], cuts: Sequence[int]) -> list[Sequence[Bar]]:
    edges = [0, *sorted(min(c, len(bars)) for c in cuts), len(bars)]
    return [bars[a:b] for a, b in itertools.pairwise(edges)]


def _mixed(feat: Any, runs: Sequence[Sequence[Bar]]) -> list[Any]:
    """Odd runs bar by bar, even runs at once."""
    out: list[Any] = []
    for i, run in enumerate(runs):
        out += [feat.update(b) for b in run] if i % 2 else feat.update_many(BarColumns(run))
    return out


def test_every_batched_family_is_listed() -> None:
    have = {fam for fam in FAMILIES if hasattr(family_class(fam), "update_many")}
    assert have == set(BATCHED)


@pytest.mark.parametrize("spec", [s for specs in BATCHED.values() for s in specs])
@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_runs_at_once_equal_one_bar_at_a_time(spec: str, symbol: str) -> None:
    bars = real_bars(symbol)[:6_000]
    one, many = build(parse_spec(spec)), build(parse_spec(spec))
    ref = [one.update(b) for b in bars]
    got = _mixed(many, _split(bars, [1, 2, 3, 57, 1_500, 1_501, 4_000]))
    assert _plain(got) == _plain(ref)
    assert _plain(many) == _plain(one)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([s for specs in BATCHED.values() for s in specs]),
    st.integers(0, 40_000),
    st.lists(st.integers(0, 400), max_size=8),
)
def test_any_split_gives_the_same_values_and_state(spec: str, k: int, cuts: list[int]) -> None:
    bars = real_bars("ETHUSDT")[k : k + 400]
    one, many = build(parse_spec(spec)), build(parse_spec(spec))
    ref = [one.update(b) for b in bars]
    assert _plain(_mixed(many, _split(bars, cuts))) == _plain(ref)
    assert _plain(many) == _plain(one)


def test_sma_sums_beyond_floats_exact_ints_divide_as_python_ints() -> None:
    """sma_3000 of BTC: window sums beyond 2**53 take Python's int division, not a float's."""
    bars = real_bars("BTCUSDT")[:6_000]
    one, many = SMA(3000), SMA(3000)
    ref = [one.update(b) for b in bars]
    assert one.exact_sum > 2**53
    assert _plain(many.update_many(BarColumns(bars))) == _plain(ref)


def test_sma_falls_back_to_one_at_a_time_where_int64_could_overflow() -> None:
    huge = [
        Bar("X", i, i + 1, 1e12, 1e12, 1e12, 1e12 + i * 0.5, 1.0) for i in range(200)
    ]  # 1e12 * 1e8 * 200 > 2**62
    one, many = SMA(100), SMA(100)
    ref = [one.update(b) for b in huge]
    assert many.sums_many([b.close for b in huge]) is None
    assert _plain(many.update_many(BarColumns(huge))) == _plain(ref)
    assert _plain(many) == _plain(one)


def test_a_non_finite_price_raises_as_one_at_a_time_does() -> None:
    bars = list(real_bars("BTCUSDT")[:100])
    b = bars[60]
    bars[60] = Bar(b.symbol, b.ts_event, b.ts_close, b.open, b.high, b.low, math.inf, b.volume)
    one, many = SMA(10), SMA(10)
    with pytest.raises(ValueError, match="not a finite price"):
        [one.update(x) for x in bars]
    with pytest.raises(ValueError, match="not a finite price"):
        many.update_many(BarColumns(bars))
    assert _plain(many) == _plain(one)


@pytest.mark.parametrize("name", ["core", "tcn12", "full"])
def test_featureset_update_batch_equals_update(name: str) -> None:
    bars = real_bars("BTCUSDT")[:3_000]
    a, b = feature_set(name), feature_set(name)
    ref = [a.update(x) for x in bars]
    got: list[tuple[float, ...]] = []
    for i, run in enumerate(_split(bars, [10, 11, 1_000, 2_222])):
        got += [b.update(x) for x in run] if i % 2 else b.update_batch(run)
    assert _plain(got) == _plain(ref)
    assert _plain(b.features) == _plain(a.features)


@pytest.mark.parametrize("name", ["core", "tcn12"])
def test_the_engine_gives_the_same_rows_for_any_batching(name: str) -> None:
    """Guarded bars (a duplicate and a rewind among them) through the engine, in batches of
    any size, equal the same bars fed one at a time."""
    bars = list(real_bars("ETHUSDT")[:2_000])
    bars.insert(500, bars[499])  # a duplicate
    bars.insert(900, bars[100])  # a rewind
    one = FeatureEngine(feature_set(name), ["ETHUSDT"])
    ref = [r for x in bars for r in one.update([x])]
    for size in (7, 333, 5_000):
        eng = FeatureEngine(feature_set(name), ["ETHUSDT"])
        got = [r for i in range(0, len(bars), size) for r in eng.update(bars[i : i + size])]
        assert _plain(got) == _plain(ref)
        assert sum(type(v) is str for _, v in got) == 2


def test_pair_features_aligned_in_batches_equal_one_time_at_a_time() -> None:
    """The `full` set (pair features on BTCUSDT) over both symbols: the engine's batched runs
    equal each open time's bars computed directly with `update(bar, refs)`."""
    eth, btc = real_bars("ETHUSDT")[:1_500], real_bars("BTCUSDT")[:1_500]
    merged = sorted([*eth[1:], *btc], key=lambda b: (b.ts_event, b.symbol))  # ETH misses a bar
    sets = {s: feature_set("full") for s in ("BTCUSDT", "ETHUSDT")}
    at: dict[int, dict[str, Bar]] = {}
    for b in merged:
        at.setdefault(b.ts_event, {})[b.symbol] = b
    ref = [
        (b, sets[s].update(b, group))
        for t in sorted(at)
        for s, b in sorted(at[t].items())
        for group in [at[t]]
    ]
    for size in (1, 97, 10_000):
        eng = FeatureEngine(feature_set("full"), ["BTCUSDT", "ETHUSDT"])
        got = [r for i in range(0, len(merged), size) for r in eng.update(merged[i : i + size])]
        got += eng.flush()
        assert _plain(got) == _plain(ref)
