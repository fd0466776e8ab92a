"""Volatility families (ewma_vol, parkinson, garman_klass, garch, realized_vol) over the real
Jan-2024 BTCUSDT/ETHUSDT 1m bars equal independent numpy/scipy references at every bar after the
warm-up (rel 1e-9), are prefix-stable, resume from pickle, and reject bad parameters."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

from operators.features.ewma_vol import EwmaVol
from operators.features.garch import Garch
from operators.features.garman_klass import GarmanKlass
from operators.features.parkinson import Parkinson
from operators.features.volatility import RealizedVol
from schemas.messages import NS_PER_MINUTE, Bar
from tests.operators.featurecheck import (
    assert_matches,
    assert_pickle_resumes,
    assert_prefix_stable,
    stream,
)
from tests.operators.opdata import SYMBOLS, real_arrays, real_bars

Arr = dict[str, np.ndarray]


def _nan(m: int) -> np.ndarray:
    return np.full(m, np.nan)


def _logret(c: np.ndarray) -> np.ndarray:
    return np.log(c[1:] / c[:-1])  # index j: the return of bar j + 1


def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of every full window of n, each summed on its own (no running sums)."""
    return sliding_window_view(x, n).mean(axis=1)


def ref_ewma_vol(a: Arr, n: int) -> np.ndarray:
    q = _logret(a["close"]) ** 2
    k = 2.0 / (n + 1)
    seed = q[:n].mean()  # value at bar n
    # y_i = k*x_i + (1-k)*y_{i-1}, y_{-1} = seed, for the bars after n
    tail = lfilter([k], [1.0, -(1.0 - k)], q[n:], zi=[(1.0 - k) * seed])[0]
    out = _nan(len(a["close"]))
    out[n] = seed
    out[n + 1 :] = tail
    return np.sqrt(out)


def ref_parkinson(a: Arr, n: int) -> np.ndarray:
    x = np.log(a["high"] / a["low"]) ** 2 / (4.0 * np.log(2.0))
    out = _nan(len(x))
    out[n - 1 :] = np.sqrt(_rolling_mean(x, n))
    return out


def ref_garman_klass(a: Arr, n: int) -> np.ndarray:
    hl = np.log(a["high"] / a["low"])
    co = np.log(a["close"] / a["open"])
    terms = 0.5 * hl**2 - (2.0 * np.log(2.0) - 1.0) * co**2
    out = _nan(len(terms))
    out[n - 1 :] = np.sqrt(np.maximum(0.0, _rolling_mean(terms, n)))
    return out


def ref_garch(a: Arr, n: int, alpha: float, beta: float) -> np.ndarray:
    """Value at bar t = sqrt(h_{t+1}), the forecast for the next return made at t's close."""
    q = _logret(a["close"]) ** 2
    m = _rolling_mean(q, n)  # m[i]: window ending at bar n + i
    omega = (1.0 - alpha - beta) * m
    # h at bar t > n: omega_t + alpha q_t + beta h_{t-1}; q_t = q[t-1]
    x = omega[1:] + alpha * q[n:]
    tail = lfilter([1.0], [1.0, -beta], x, zi=[beta * m[0]])[0]
    out = _nan(len(a["close"]))
    out[n] = m[0]
    out[n + 1 :] = tail
    return np.sqrt(out)


def ref_realized_vol(a: Arr, w: int) -> np.ndarray:
    r = _logret(a["close"])
    out = _nan(len(a["close"]))
    out[w:] = sliding_window_view(r, w).std(axis=1)  # two-pass per window
    return out


# key -> (factory, reference over the bar arrays, expected warm-up)
CASES: dict[str, tuple[Callable[[], Any], Callable[[Arr], np.ndarray], int]] = {
    **{
        f"ewma_vol_{n}": (lambda n=n: EwmaVol(n), lambda a, n=n: ref_ewma_vol(a, n), n)
        for n in (1, 20, 200)
    },
    **{
        f"parkinson_{n}": (lambda n=n: Parkinson(n), lambda a, n=n: ref_parkinson(a, n), n - 1)
        for n in (1, 5, 20, 240)
    },
    **{
        f"garman_klass_{n}": (
            lambda n=n: GarmanKlass(n),
            lambda a, n=n: ref_garman_klass(a, n),
            n - 1,
        )
        for n in (1, 5, 20, 240)
    },
    "garch_1440_0p05_0p94": (Garch, lambda a: ref_garch(a, 1440, 0.05, 0.94), 1440),
    "garch_60_0p1_0p85": (
        lambda: Garch(60, 0.1, 0.85),
        lambda a: ref_garch(a, 60, 0.1, 0.85),
        60,
    ),
    "garch_30_0p2_0": (lambda: Garch(30, 0.2, 0.0), lambda a: ref_garch(a, 30, 0.2, 0.0), 30),
    **{
        f"realized_vol_{w}": (
            lambda w=w: RealizedVol(w),
            lambda a, w=w: ref_realized_vol(a, w),
            w,
        )
        for w in (2, 3, 20, 1440)
    },
}


@cache
def _full(key: str, symbol: str) -> np.ndarray:
    make, ref, _ = CASES[key]
    return assert_matches(make, real_bars(symbol), {make().name: ref(real_arrays(symbol))})


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("key", list(CASES))
def test_matches_reference_every_bar(key: str, symbol: str) -> None:
    make, _, warmup = CASES[key]
    feat = make()
    assert feat.name == key
    assert feat.columns == (key,)
    assert feat.warmup == warmup
    got = _full(key, symbol)
    assert feat.family == type(feat).family and key.startswith(feat.family + "_")
    assert not np.isnan(got[warmup:]).any()


@pytest.mark.parametrize("key", list(CASES))
def test_prefix_stable_and_pickle_resumes(key: str) -> None:
    make, _, warmup = CASES[key]
    bars = real_bars("ETHUSDT")
    full = _full(key, "ETHUSDT")
    cuts = [1, 2, warmup + 1, warmup + 2, warmup + 37, 5_000, len(bars)]
    assert_prefix_stable(make, bars, full, sorted(set(cuts)))
    assert_pickle_resumes(make, bars[:4_000], [1, warmup, warmup + 1, 3_001])


def test_default_names() -> None:
    assert EwmaVol().name == "ewma_vol_20"
    assert Parkinson().name == "parkinson_20"
    assert GarmanKlass().name == "garman_klass_20"
    assert Garch().name == "garch_1440_0p05_0p94"
    assert RealizedVol().name == "realized_vol_20"
    assert Garch(n=100, alpha=0.1, beta=0.8).name == "garch_100_0p1_0p8"


def _bar(i: int, o: float, h: float, lo: float, c: float) -> Bar:
    ts = i * NS_PER_MINUTE
    return Bar("X", ts, ts + NS_PER_MINUTE, o, h, lo, c, 1.0)


def test_hand_values() -> None:
    # flat bars: every estimator is exactly 0 once warm
    flat = [_bar(i, 100.0, 100.0, 100.0, 100.0) for i in range(10)]
    for make in (lambda: EwmaVol(3), lambda: Parkinson(3), lambda: GarmanKlass(3)):
        assert stream(make, flat)[-1, 0] == 0.0
    assert stream(lambda: Garch(3, 0.1, 0.8), flat)[-1, 0] == 0.0
    assert stream(lambda: RealizedVol(3), flat)[-1, 0] == 0.0
    # a full-body bar (open = low, close = high): GK term (1.5 - 2 ln 2) ln(h/l)^2 > 0
    body = _bar(0, 100.0, 110.0, 100.0, 110.0)
    gk = math.sqrt(1.5 - 2 * math.log(2)) * math.log(1.1)
    assert GarmanKlass(1).update(body) == pytest.approx(gk, rel=1e-15)
    p = Parkinson(1).update(body)
    assert p == pytest.approx(math.log(1.1) / math.sqrt(4 * math.log(2)), rel=1e-15)
    # an inconsistent bar (body outside the range) makes the term negative -> clamped to 0
    assert GarmanKlass(1).update(_bar(0, 100.0, 101.0, 100.0, 110.0)) == 0.0


def test_garch_value_is_next_bar_forecast() -> None:
    """GARCH's value at bar t uses bars <= t only: changing bar t+1 leaves it unchanged, and the
    value at t+1 follows h_{t+2} = omega_{t+1} + alpha r_{t+1}^2 + beta h_{t+1}."""
    closes = [100.0, 101.0, 99.5, 100.5, 102.0, 101.0]
    bars = [_bar(i, c, c, c, c) for i, c in enumerate(closes)]
    n, a, b = 2, 0.1, 0.8
    got = stream(lambda: Garch(n, a, b), bars)[:, 0]
    r = np.diff(np.log(closes))
    assert np.isnan(got[:n]).all()
    h = (r[0] ** 2 + r[1] ** 2) / 2  # seed at bar 2 = forecast for bar 3
    assert got[2] == pytest.approx(math.sqrt(h), rel=1e-12)
    for t in (3, 4, 5):
        m = (r[t - 2] ** 2 + r[t - 1] ** 2) / 2
        h = (1 - a - b) * m + a * r[t - 1] ** 2 + b * h
        assert got[t] == pytest.approx(math.sqrt(h), rel=1e-12)
    bumped = [*bars[:4], _bar(4, 150.0, 150.0, 150.0, 150.0), bars[5]]
    np.testing.assert_array_equal(stream(lambda: Garch(n, a, b), bumped)[:4], got[:4, None])


@pytest.mark.parametrize(
    "make",
    [
        lambda: EwmaVol(0),
        lambda: Parkinson(0),
        lambda: GarmanKlass(0),
        lambda: Garch(0),
        lambda: Garch(100, 0.0, 0.9),
        lambda: Garch(100, -0.1, 0.9),
        lambda: Garch(100, 0.1, -0.1),
        lambda: Garch(100, 0.1, 0.9),
        lambda: Garch(100, 0.5, 0.6),
        lambda: Garch(100, float("nan"), 0.5),
        lambda: RealizedVol(1),
    ],
)
def test_bad_parameters_raise(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()
