"""ADX/+DI/-DI, ATR, MFI, OBV (TA-Lib references) and the volume z-score and VWAP deviation (numpy
references written here) stream over the real Jan-2024 1m bars and equal their references at
every bar after the warm-up, resume from a pickle and never depend on later bars."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest
import talib
from numpy.lib.stride_tricks import sliding_window_view

from operators.features.adx import ADX
from operators.features.atr import ATR
from operators.features.mfi import MFI
from operators.features.obv import OBV
from operators.features.volume_zscore import VolumeZScore
from operators.features.vwap import VwapDeviation
from schemas.messages import NS_PER_MINUTE, Bar
from tests.operators.featurecheck import (
    arrays,
    assert_matches,
    assert_pickle_resumes,
    assert_prefix_stable,
    stream,
    talib_lookback,
)
from tests.operators.opdata import SYMBOLS, real_arrays, real_bars


def _pad(x: np.ndarray, total: int) -> np.ndarray:
    return np.concatenate((np.full(total - len(x), np.nan), x))


def ref_adx(a: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    h, lo, c = a["high"], a["low"], a["close"]
    name = f"adx_{n}"
    lb = talib_lookback("ADX", timeperiod=n)
    plus, minus = talib.PLUS_DI(h, lo, c, n), talib.MINUS_DI(h, lo, c, n)
    plus[:lb] = np.nan  # one warm-up for the family: ADX's
    minus[:lb] = np.nan
    return {
        f"{name}_adx": talib.ADX(h, lo, c, n),
        f"{name}_plus_di": plus,
        f"{name}_minus_di": minus,
    }


def ref_volume_zscore(v: np.ndarray, n: int) -> np.ndarray:
    w = sliding_window_view(v, n)
    mean = w.mean(axis=1)
    std = w.std(axis=1)  # population, two-pass
    z = np.zeros(len(w))
    flat = np.ptp(w, axis=1) == 0
    z[~flat] = (v[n - 1 :][~flat] - mean[~flat]) / std[~flat]
    return _pad(z, len(v))


def ref_vwap_dev(a: dict[str, np.ndarray], n: int) -> np.ndarray:
    typical = (a["high"] + a["low"] + a["close"]) / 3.0
    pv = sliding_window_view(typical * a["volume"], n).sum(axis=1)
    vol = sliding_window_view(a["volume"], n).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = np.where(vol > 0, a["close"][n - 1 :] / (pv / vol) - 1.0, np.nan)
    return _pad(dev, len(typical))


CASES: dict[str, tuple[Callable[[], Any], Callable[[dict[str, np.ndarray]], dict[str, Any]]]] = {
    "adx_14": (lambda: ADX(), lambda a: ref_adx(a, 14)),
    "adx_5": (lambda: ADX(5), lambda a: ref_adx(a, 5)),
    "atr_14": (lambda: ATR(), lambda a: {"atr_14": talib.ATR(a["high"], a["low"], a["close"], 14)}),
    "atr_1": (lambda: ATR(1), lambda a: {"atr_1": talib.ATR(a["high"], a["low"], a["close"], 1)}),
    "mfi_14": (
        lambda: MFI(),
        lambda a: {"mfi_14": talib.MFI(a["high"], a["low"], a["close"], a["volume"], 14)},
    ),
    "mfi_3": (
        lambda: MFI(3),
        lambda a: {"mfi_3": talib.MFI(a["high"], a["low"], a["close"], a["volume"], 3)},
    ),
    "obv": (lambda: OBV(), lambda a: {"obv": talib.OBV(a["close"], a["volume"])}),
    "volume_zscore_20": (
        lambda: VolumeZScore(),
        lambda a: {"volume_zscore_20": ref_volume_zscore(a["volume"], 20)},
    ),
    "volume_zscore_3": (
        lambda: VolumeZScore(3),
        lambda a: {"volume_zscore_3": ref_volume_zscore(a["volume"], 3)},
    ),
    "vwap_dev_20": (lambda: VwapDeviation(), lambda a: {"vwap_dev_20": ref_vwap_dev(a, 20)}),
    "vwap_dev_1": (lambda: VwapDeviation(1), lambda a: {"vwap_dev_1": ref_vwap_dev(a, 1)}),
}


@cache
def _full(key: str, symbol: str) -> np.ndarray:
    make, ref = CASES[key]
    return assert_matches(make, real_bars(symbol), ref(real_arrays(symbol)))


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("key", list(CASES))
def test_equals_reference_at_every_bar(key: str, symbol: str) -> None:
    feat = CASES[key][0]()
    assert feat.name == key
    got = _full(key, symbol)
    assert got.shape == (len(real_bars(symbol)), len(feat.columns))
    if len(feat.columns) == 1:  # `value` keeps the last output
        for b in real_bars(symbol)[:500]:
            feat.update(b)
        np.testing.assert_array_equal(feat.value, got[499, 0])


@pytest.mark.parametrize("key", list(CASES))
def test_prefix_stable_and_pickle_resumes(key: str) -> None:
    make = CASES[key][0]
    bars = real_bars("ETHUSDT")[:3_000]
    full = _full(key, "ETHUSDT")[:3_000]
    assert_prefix_stable(make, bars, full, [1, 2, 5, 14, 27, 28, 29, 40, 333, 2_999])
    assert_pickle_resumes(make, bars, [1, 13, 27, 50, 1_234])


def test_warmups_are_talib_lookbacks() -> None:
    assert ADX(14).warmup == talib_lookback("ADX", timeperiod=14) == 27
    assert ADX(5).warmup == talib_lookback("ADX", timeperiod=5)
    assert talib_lookback("PLUS_DI", timeperiod=14) == 14 < ADX(14).warmup
    assert ATR(14).warmup == talib_lookback("ATR", timeperiod=14) == 14
    assert ATR(1).warmup == talib_lookback("ATR", timeperiod=1)
    assert MFI(14).warmup == talib_lookback("MFI", timeperiod=14) == 14
    assert OBV().warmup == talib_lookback("OBV") == 0
    assert VolumeZScore(20).warmup == 19
    assert VwapDeviation(20).warmup == 19


def test_names_and_columns() -> None:
    assert ADX().columns == ("adx_14_adx", "adx_14_plus_di", "adx_14_minus_di")
    assert (ATR().name, MFI().name, OBV().name) == ("atr_14", "mfi_14", "obv")
    assert VolumeZScore().name == "volume_zscore_20"
    assert VwapDeviation(30).columns == ("vwap_dev_30",)
    assert ADX.family == "adx" and VwapDeviation.family == "vwap_dev"


def test_obv_first_value_is_first_volume() -> None:
    bars = real_bars("BTCUSDT")[:3]
    got = stream(OBV, bars)[:, 0]
    assert got[0] == bars[0].volume  # TA-Lib's convention (not 0)
    assert got[0] == talib.OBV(arrays(bars)["close"], arrays(bars)["volume"])[0]


def _bar(i: int, o: float, h: float, lo: float, c: float, v: float) -> Bar:
    ts = 1_700_000_000 * 10**9 + i * NS_PER_MINUTE
    return Bar("X", ts, ts + NS_PER_MINUTE, o, h, lo, c, v)


def test_flat_and_zero_volume_edge_cases() -> None:
    flat = [_bar(i, 100.0, 100.0, 100.0, 100.0, 0.0) for i in range(40)]
    # constant volume: z-score 0.0; no volume: VWAP deviation NaN; MFI 0.0 (no money flow)
    np.testing.assert_array_equal(stream(lambda: VolumeZScore(5), flat)[4:, 0], 0.0)
    assert np.isnan(stream(lambda: VwapDeviation(5), flat)).all()
    np.testing.assert_array_equal(stream(lambda: MFI(5), flat)[5:, 0], 0.0)
    # flat prices: DI 0.0 and ADX 0.0 (TA-Lib: no DX while TR is zero)
    a = arrays(flat)
    got = stream(lambda: ADX(5), flat)
    np.testing.assert_array_equal(got[9:], 0.0)
    np.testing.assert_array_equal(got[9:, 0], talib.ADX(a["high"], a["low"], a["close"], 5)[9:])
    # money flow restarts after a flowless window without residue
    moving = [_bar(i, 1.0, 1.0 + i % 3, 1.0, 1.0 + i % 2, 1.5) for i in range(10)]
    got = stream(lambda: MFI(3), moving + flat[:6] + moving)[:, 0]
    ref = talib.MFI(
        *(arrays(moving + flat[:6] + moving)[k] for k in ("high", "low", "close", "volume")), 3
    )
    np.testing.assert_allclose(got[3:], ref[3:], rtol=1e-12, atol=0.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ADX(1),
        lambda: ADX(0),
        lambda: ATR(0),
        lambda: MFI(1),
        lambda: VolumeZScore(1),
        lambda: VwapDeviation(0),
    ],
)
def test_invalid_periods_raise(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()
