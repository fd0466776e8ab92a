"""Streaming features over the real Jan-2024 BTCUSDT/ETHUSDT 1m bars equal TA-Lib (and numpy) at
every bar: NaN exactly during warm-up, warm-up length = TA-Lib's lookback, rel tol 1e-9 after."""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
import talib

from operators.features import EMA, RSI, SMA, FeatureSet, LogReturn, RealizedVol, feature_set
from tests.operators.featurecheck import talib_lookback
from tests.operators.opdata import SYMBOLS, closes, real_bars

RTOL = 1e-9

FEATURES: dict[str, Callable[[], object]] = {
    **{f"sma_{n}": (lambda n=n: SMA(n)) for n in (5, 10, 50, 200)},
    **{f"ema_{n}": (lambda n=n: EMA(n)) for n in (12, 20, 26)},
    "rsi_14": lambda: RSI(14),
    "realized_vol_20": lambda: RealizedVol(20),
    **{f"log_returns_{k}": (lambda k=k: LogReturn(k)) for k in (1, 5, 15, 60)},
}


def _reference(key: str, close: np.ndarray) -> tuple[np.ndarray, int]:
    """(reference series, warm-up length) for a feature key, computed independently."""
    kind, _, arg = key.rpartition("_")
    n = int(arg)
    if kind == "sma":
        return talib.SMA(close, n), talib_lookback("SMA", timeperiod=n)
    if kind == "ema":
        return talib.EMA(close, n), talib_lookback("EMA", timeperiod=n)
    if kind == "rsi":
        return talib.RSI(close, n), talib_lookback("RSI", timeperiod=n)
    if kind == "realized_vol":
        logret = np.log(close[1:] / close[:-1])
        sd = talib.STDDEV(logret, timeperiod=n, nbdev=1.0)
        # one bar is consumed by the first log return
        return np.concatenate(([np.nan], sd)), 1 + talib_lookback("STDDEV", timeperiod=n, nbdev=1.0)
    if kind == "log_returns":
        ref = np.full(len(close), np.nan)
        ref[n:] = np.log(close[n:] / close[:-n])
        return ref, n
    raise AssertionError(key)


@cache
def _stream(key: str, symbol: str) -> np.ndarray:
    """Feed every real bar one at a time; the value after each bar."""
    feat = FEATURES[key]()
    out = np.array([feat.update(b) for b in real_bars(symbol)], dtype=np.float64)
    assert feat.value == out[-1] or (np.isnan(feat.value) and np.isnan(out[-1]))
    return out


def _assert_matches(got: np.ndarray, ref: np.ndarray, lookback: int) -> None:
    assert len(got) == len(ref)
    assert np.isnan(got[:lookback]).all(), "value before the warm-up is complete"
    assert not np.isnan(got[lookback:]).any(), "NaN after the warm-up"
    # the reference agrees on the warm-up length (our lookback source is TA-Lib's own)
    assert np.isnan(ref[:lookback]).all() and not np.isnan(ref[lookback:]).any()
    np.testing.assert_allclose(got[lookback:], ref[lookback:], rtol=RTOL, atol=0.0)


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("key", list(FEATURES))
def test_stream_equals_reference_at_every_bar(key: str, symbol: str) -> None:
    close = closes(symbol)
    ref, lookback = _reference(key, close)
    got = _stream(key, symbol)
    _assert_matches(got, ref, lookback)


def test_warmup_lengths_are_talib_lookbacks() -> None:
    # Spelled out so a change in the convention (e.g. RSI's first value) is caught by name.
    assert talib_lookback("SMA", timeperiod=50) == 49
    assert talib_lookback("EMA", timeperiod=26) == 25
    assert talib_lookback("RSI", timeperiod=14) == 14
    assert talib_lookback("STDDEV", timeperiod=20, nbdev=1.0) == 19
    for key, expect in [("sma_50", 49), ("ema_26", 25), ("rsi_14", 14), ("realized_vol_20", 20)]:
        got = _stream(key, "BTCUSDT")
        first = int(np.argmax(~np.isnan(got)))
        assert first == expect, key


@pytest.mark.parametrize("key", list(FEATURES))
def test_every_prefix_matches_full_stream_and_reference(key: str) -> None:
    """A fresh feature fed bars[:t] ends on the full stream's value at t-1 (bit for bit), and on
    the reference computed over close[:t] alone (no look-ahead anywhere)."""
    symbol = "ETHUSDT"
    bars = real_bars(symbol)
    close = closes(symbol)
    full = _stream(key, symbol)
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    cuts = [1, 2, *rng.integers(3, 300, size=3), *rng.integers(300, 6_000, size=3)]
    for t in (int(c) for c in cuts):
        feat = FEATURES[key]()
        for b in bars[:t]:
            last = feat.update(b)
        if np.isnan(full[t - 1]):
            assert np.isnan(last) and np.isnan(feat.value), (key, t)
            continue
        assert last == full[t - 1] and feat.value == full[t - 1], (key, t)
        ref, _ = _reference(key, close[:t])
        np.testing.assert_allclose(last, ref[-1], rtol=RTOL, atol=0.0, err_msg=f"{key} t={t}")


@pytest.mark.parametrize("key", list(FEATURES))
def test_pickle_mid_stream_then_continue_is_identical(key: str) -> None:
    symbol = "BTCUSDT"
    bars = real_bars(symbol)[:3_000]
    full = _stream(key, symbol)[:3_000]
    for cut in (7, 250, 1_999):
        feat = FEATURES[key]()
        for b in bars[:cut]:
            feat.update(b)
        restored = pickle.loads(pickle.dumps(feat))
        rest = np.array([restored.update(b) for b in bars[cut:]])
        np.testing.assert_array_equal(rest, full[cut:])  # NaN == NaN here, exact otherwise
        # the original is untouched by the copy's updates and continues identically too
        orig = np.array([feat.update(b) for b in bars[cut:]])
        np.testing.assert_array_equal(orig, full[cut:])


def test_featureset_core_names_order_and_values() -> None:
    fs = feature_set("core")
    expected = ["log_returns_1", "sma_10", "sma_50", "ema_20", "rsi_14", "realized_vol_20"]
    assert fs.names == expected
    assert [f.name for f in fs.features] == expected
    bars = real_bars("BTCUSDT")[:300]
    rows = [dict(zip(fs.names, fs.update(b), strict=True)) for b in bars]
    assert all(list(r) == expected for r in rows)
    for name in expected:
        col = np.array([r[name] for r in rows])
        np.testing.assert_array_equal(col, _stream(name, "BTCUSDT")[:300])


def test_featureset_duplicate_names_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        FeatureSet(["sma_5", "ema_5", "sma_5"])
    with pytest.raises(ValueError, match="duplicate"):
        FeatureSet(["sma_5", "ema_5 as sma_5"])
    # a different input field is a different feature name, so it is allowed
    fs = FeatureSet(["sma_5", "sma_5_high", "ema_5_low"])
    assert fs.names == ["sma_5", "sma_5_high", "ema_5_low"]


def test_field_argument_reads_that_field() -> None:
    bars = real_bars("ETHUSDT")[:500]
    highs = np.array([b.high for b in bars])
    sma = SMA(20, "high")
    got = np.array([sma.update(b) for b in bars])
    np.testing.assert_allclose(got[19:], talib.SMA(highs, 20)[19:], rtol=RTOL, atol=0.0)
    ema = EMA(20, "high")
    got = np.array([ema.update(b) for b in bars])
    np.testing.assert_allclose(got[19:], talib.EMA(highs, 20)[19:], rtol=RTOL, atol=0.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SMA(0),
        lambda: EMA(0),
        lambda: RSI(1),
        lambda: RealizedVol(1),
        lambda: LogReturn(0),
    ],
)
def test_invalid_periods_raise(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()
