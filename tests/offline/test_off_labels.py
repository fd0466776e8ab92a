"""Offline labels: hand-checked small cases per family, spec parsing, and no look-ahead beyond
t+h (nor dependence on bars before t) on the real BTCUSDT bars."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest

from offline.labels import (
    ForwardSpec,
    ThresholdSpec,
    TripleBarrierSpec,
    compute,
    compute_labels,
    forward_log_return,
    parse_label,
    threshold_labels,
    triple_barrier,
)
from tests.operators.opdata import real_bars

NAN = math.nan
MIN = 60_000_000_000


def frame(high: list[float], low: list[float], close: list[float], **extra: object) -> pl.DataFrame:
    n = len(close)
    return pl.DataFrame(
        {
            "ts_event": [1_700_000_000_000_000_000 + i * MIN for i in range(n)],
            "open": [float(x) for x in close],
            "high": [float(x) for x in high],
            "low": [float(x) for x in low],
            "close": [float(x) for x in close],
            **extra,
        }
    )


def eq_nan(a: np.ndarray, b: list[float]) -> None:
    np.testing.assert_allclose(a, np.array(b, dtype=np.float64), rtol=1e-12, atol=0)


# --- forward / threshold -------------------------------------------------------------------


def test_forward_by_hand() -> None:
    close = np.array([100.0, 110.0, 99.0, 121.0])
    eq_nan(forward_log_return(close, 1), [math.log(1.1), math.log(0.9), math.log(121 / 99), NAN])
    eq_nan(forward_log_return(close, 2), [math.log(0.99), math.log(1.1), NAN, NAN])
    eq_nan(forward_log_return(close, 4), [NAN] * 4)
    out = compute("forward:h=1,2", frame([0.0] * 4, [0.0] * 4, close.tolist()))
    assert out.columns == [
        "fwd_ret_1",
        "fwd_ret_1_end",
        "fwd_ret_1_end_ts",
        "fwd_ret_2",
        "fwd_ret_2_end",
        "fwd_ret_2_end_ts",
    ]
    assert out["fwd_ret_2_end"].to_list() == [2, 3, None, None]
    t0 = 1_700_000_000_000_000_000
    assert out["fwd_ret_1_end_ts"].to_list() == [t0 + MIN, t0 + 2 * MIN, t0 + 3 * MIN, None]
    assert out["fwd_ret_1"][3] is None  # missing is null, not NaN


def test_threshold_by_hand() -> None:
    # returns over 1 bar: +0.5%, -0.896%, +0.502%, 0, (end); thr 0.2% -> +1, -1, +1, 0, missing
    close = [100.0, 100.5, 99.6, 100.1, 100.1]
    eq_nan(threshold_labels(np.array(close), 1, 0.002), [1, -1, 1, 0, NAN])
    # h=2: 99.6/100-1 = -0.4% -> -1 at thr 0.2%, 0 at thr 1%; 100.1/100.5-1 = -0.398%
    eq_nan(threshold_labels(np.array(close), 2, 0.002), [-1, -1, 1, NAN, NAN])
    eq_nan(threshold_labels(np.array(close), 2, 0.01), [0, 0, 0, NAN, NAN])
    out = compute("threshold:h=2,thr=0.002", frame(close, close, close))
    assert out.columns == ["label_thr_2_0p002", "label_thr_2_0p002_end", "label_thr_2_0p002_end_ts"]
    assert out.schema["label_thr_2_0p002"] == pl.Int8
    assert out["label_thr_2_0p002"].to_list() == [-1, -1, 1, None, None]
    assert out["label_thr_2_0p002_end"].to_list() == [2, 3, 4, None, None]


# --- triple barrier ------------------------------------------------------------------------


def tb0(
    highs: Sequence[float], lows: Sequence[float], closes: Sequence[float], **kw: object
) -> tuple[float, int, float, float]:
    """Label, t1, ret, binary at t=0 for entry 100 followed by the given bars; by default
    pt=0.01 (upper 101), sl=0.02 (lower 98), h=3."""
    r = triple_barrier(
        np.array([100.0, *highs]),
        np.array([100.0, *lows]),
        np.array([100.0, *closes]),
        **{"pt": 0.01, "sl": 0.02, "h": 3, **kw},  # type: ignore[arg-type]
    )
    return float(r.label[0]), int(r.t1[0]), float(r.ret[0]), float(r.binary[0])


def test_tb_upper_first() -> None:
    lab, t1, ret, b = tb0([100.5, 101.5, 100], [99, 99.5, 97], [100, 101, 99])
    assert (lab, t1, b) == (1, 2, 1) and ret == pytest.approx(0.01)


def test_tb_lower_first() -> None:
    lab, t1, ret, b = tb0([100.5, 103, 103], [97.9, 99.5, 99], [99, 101, 101])
    assert (lab, t1, b) == (-1, 1, 0) and ret == pytest.approx(-0.02)


def test_tb_both_on_one_bar_counts_stop_loss() -> None:
    lab, t1, ret, _ = tb0([101.2, 100, 100], [97.5, 99, 99], [100, 100, 100])
    assert (lab, t1) == (-1, 1) and ret == pytest.approx(-0.02)
    # short side: profit-take 99 (low), stop 102 (high); one bar through both -> stop
    lab, t1, ret, _ = tb0([102.5, 100, 100], [98.5, 99, 99], [100, 100, 100], side="short")
    assert (lab, t1) == (-1, 1) and ret == pytest.approx(-0.02)


def test_tb_time_barrier_and_binary_modes() -> None:
    bars = ([100.8, 100.9, 100.7], [99, 98.5, 99.2], [100.2, 99.5, 100.5])
    lab, t1, ret, b = tb0(*bars)
    assert (lab, t1, b) == (0, 3, 0) and ret == pytest.approx(0.005)  # close[3]/100 - 1
    lab, t1, ret, b = tb0(*bars, binary="sign")
    assert (lab, b) == (0, 1)  # positive exit return -> 1
    # short with 2% barriers (profit-take 98, stop 102): untouched, exit return -0.5%
    lab, t1, ret, b = tb0(*bars, pt=0.02, side="short", binary="sign")
    assert (lab, t1, b) == (0, 3, 0) and ret == pytest.approx(-0.005)


def test_tb_touch_is_inclusive() -> None:
    # pt=0.5, sl=0.25 are exact in binary: upper exactly 150, lower exactly 75
    lab, t1, *_ = tb0([150.0, 100, 100], [90, 90, 90], [100, 100, 100], pt=0.5, sl=0.25)
    assert (lab, t1) == (1, 1)
    lab, t1, *_ = tb0([110, 110, 110], [90, 75.0, 90], [100, 100, 100], pt=0.5, sl=0.25)
    assert (lab, t1) == (-1, 2)


def test_tb_short_side() -> None:
    # short: profit-take at 99 (low <=), stop at 102 (high >=)
    lab, t1, ret, _ = tb0([101, 100, 100], [99.5, 98.9, 99], [100, 99, 99], side="short")
    assert (lab, t1) == (1, 2) and ret == pytest.approx(0.01)
    lab, t1, ret, _ = tb0([101, 102.1, 100], [99.5, 99.5, 99], [100, 99, 99], side="short")
    assert (lab, t1) == (-1, 2) and ret == pytest.approx(-0.02)


def test_tb_vol_scaling() -> None:
    bars = ([100.5, 101.5, 100], [99.7, 99.5, 97], [100, 101, 99])
    # pt=2, sl=4 times vol[0]=0.005 -> the same 1% / 2% barriers as the fixed case
    vol = np.array([0.005, 1.0, 1.0, 1.0])  # vol after t is never used for t
    lab, t1, ret, _ = tb0(*bars, pt=2.0, sl=4.0, vol=vol)
    assert (lab, t1) == (1, 2) and ret == pytest.approx(0.01)
    # vol[0]=0.001 -> upper 100.2 touched by bar 1's high 100.5 (lower 99.6 not)
    vol = np.array([0.001, 1.0, 1.0, 1.0])
    lab, t1, ret, _ = tb0(*bars, pt=2.0, sl=4.0, vol=vol)
    assert (lab, t1) == (1, 1) and ret == pytest.approx(0.002)
    # vol[0]=0.01 -> lower 96 (pt 2% -> upper 102): bar 3's low 97 does not touch -> timeout
    vol = np.array([0.01, 1.0, 1.0, 1.0])
    lab, t1, ret, _ = tb0(*bars, pt=2.0, sl=4.0, vol=vol)
    assert (lab, t1) == (0, 3) and ret == pytest.approx(-0.01)
    # missing / non-positive vol -> missing label
    for v0 in (NAN, 0.0, -0.01):
        lab, t1, ret, b = tb0(*bars, pt=2.0, sl=4.0, vol=np.array([v0, 1.0, 1.0, 1.0]))
        assert math.isnan(lab) and t1 == -1 and math.isnan(ret) and math.isnan(b)


def test_tb_series_by_hand() -> None:
    close = [100, 100.5, 101.5, 100, 99.5, 99.5]
    high = [100, 101.2, 102, 101, 100, 100]
    low = [100, 100, 100.8, 99.5, 99.2, 99.1]
    r = triple_barrier(np.array(high), np.array(low), np.array(close), pt=0.01, sl=0.01, h=2)
    # t=0: upper 101 hit by bar 1. t=1: upper 101.505 hit by bar 2 (high 102).
    # t=2: lower 100.485 hit by bar 3 (low 99.5). t=3: 101/99 untouched -> 99.5/100-1 at bar 5.
    # t=4, 5: t+2 past the end -> missing.
    eq_nan(r.label, [1, 1, -1, 0, NAN, NAN])
    assert r.t1.tolist() == [1, 2, 3, 5, -1, -1]
    eq_nan(r.ret, [0.01, 0.01, -0.01, -0.005, NAN, NAN])
    eq_nan(r.binary, [1, 1, 0, 0, NAN, NAN])
    spec = "triple_barrier:pt=0.01,sl=0.01,h=2,binary=1,name=tb"
    out = compute(spec, frame(high, low, close))
    assert out.columns == ["tb_label", "tb_binary", "tb_t1", "tb_ret", "tb_end", "tb_end_ts"]
    assert out["tb_label"].to_list() == [1, 1, -1, 0, None, None]
    assert out["tb_end"].to_list() == [1, 2, 3, 5, None, None]
    t0 = 1_700_000_000_000_000_000
    assert out["tb_end_ts"].to_list() == [t0 + k * MIN for k in (1, 2, 3, 5)] + [None, None]


def test_tb_bad_params() -> None:
    a = np.ones(5)
    for kw in ({"pt": 0.0}, {"sl": -1.0}, {"h": 0}, {"side": "up"}, {"binary": "x"}):
        with pytest.raises(ValueError):
            triple_barrier(a, a, a, **{"pt": 0.01, "sl": 0.01, "h": 2, **kw})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vol"):
        triple_barrier(a, a, a, pt=1, sl=1, h=2, vol=np.ones(3))


# --- spec parsing ----------------------------------------------------------------------------


def test_parse_specs() -> None:
    s = parse_label("forward:h=1,5,15,60")
    assert s == ForwardSpec(horizons=(1, 5, 15, 60))
    assert s.columns[:3] == ("fwd_ret_1", "fwd_ret_1_end", "fwd_ret_1_end_ts")
    assert s.end_ts_columns == tuple(f"fwd_ret_{h}_end_ts" for h in (1, 5, 15, 60))
    s = parse_label("threshold:h=10,thr=0.002")
    assert s == ThresholdSpec(h=10, thr=0.002)
    assert s.columns == (
        "label_thr_10_0p002",
        "label_thr_10_0p002_end",
        "label_thr_10_0p002_end_ts",
    )
    s = parse_label("triple_barrier:pt=0.004,sl=0.004,h=60")
    assert s == TripleBarrierSpec(pt=0.004, sl=0.004, h=60)
    assert s.columns == tuple(
        f"tb_0p004_0p004_60_{c}" for c in ("label", "t1", "ret", "end", "end_ts")
    )
    s = parse_label(" triple_barrier: pt=2, sl=2, h=60, vol=realized_vol_20, binary=1 ")
    assert s == TripleBarrierSpec(pt=2, sl=2, h=60, vol="realized_vol_20", binary="pt")
    assert s.columns[:2] == ("tb_2_2_60_realized_vol_20_label", "tb_2_2_60_realized_vol_20_binary")
    assert s.feature_columns == ("realized_vol_20",)
    s = parse_label("triple_barrier:pt=0.004,sl=0.002,h=60,side=short,binary=sign,name=tbs")
    assert s == TripleBarrierSpec(0.004, 0.002, 60, None, "sign", "short", "tbs")
    assert s.end_columns == ("tbs_end",)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "unknown label family"),
        ("fwd:h=1", "unknown label family"),
        ("forward", "no parameters"),
        ("forward:", "no parameters"),
        ("forward:h=0", "want an int >= 1"),
        ("forward:h=1,x", "want an int >= 1"),
        ("forward:h=1,1", "duplicate horizons"),
        ("forward:5", "must start with key=value"),
        ("forward:h=1,,2", "empty item"),
        ("forward:h=", "bad item"),
        ("forward:h=1,thr=0.1", "unknown key"),
        ("threshold:h=10", "lacks"),
        ("threshold:h=10,5,thr=0.002", "takes one value"),
        ("threshold:h=10,thr=-0.002", "want a number > 0"),
        ("threshold:h=10,thr=inf", "want a number > 0"),
        ("threshold:h=10,thr=abc", "want a number > 0"),
        ("threshold:h=10,h=5,thr=0.1", "duplicate key"),
        ("triple_barrier:pt=0.004,h=60", "lacks"),
        ("triple_barrier:pt=0.004,sl=0.004,h=60,binary=2", "binary"),
        ("triple_barrier:pt=0.004,sl=0.004,h=60,side=up", "side"),
        ("triple_barrier:pt=0.004,sl=0.004,h=60,name=a-b", "name"),
        ("triple_barrier:pt=0.004,sl=0.004,h=2.5", "want an int >= 1"),
    ],
)
def test_parse_errors(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_label(spec)


def test_compute_frame_errors() -> None:
    f = frame([1.0, 1.0], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="realized_vol_20"):
        compute("triple_barrier:pt=2,sl=2,h=1,vol=realized_vol_20", f)
    with pytest.raises(ValueError, match="strictly increasing"):
        compute("forward:h=1", f.reverse())
    with pytest.raises(ValueError, match="one symbol"):
        compute("forward:h=1", f.with_columns(symbol=pl.Series(["A", "B"])))
    with pytest.raises(ValueError, match="duplicate columns"):
        compute_labels(["forward:h=1,2", "forward:h=2"], f)


# --- no look-ahead on real bars -----------------------------------------------------------

H = 60  # the longest horizon of SPECS
SPECS = [
    "forward:h=1,5,15,60",
    "threshold:h=10,thr=0.002",
    "triple_barrier:pt=0.004,sl=0.004,h=60,binary=1",
    "triple_barrier:pt=0.002,sl=0.003,h=30,side=short,binary=sign",
    "triple_barrier:pt=2,sl=1.5,h=60,vol=rv,binary=1",
]


@pytest.fixture(scope="module")
def btc() -> pl.DataFrame:
    bars = real_bars("BTCUSDT")
    f = pl.DataFrame(
        {
            "ts_event": [b.ts_event for b in bars],
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
        }
    )
    # a backward-looking per-bar vol column (known at t), like a realized-vol feature
    return f.with_columns(rv=pl.col("close").log().diff().rolling_std(20).fill_null(0.001))


def row(f: pl.DataFrame, t: int) -> dict[str, object]:
    return compute_labels(SPECS, f).row(t, named=True)


def perturb(
    f: pl.DataFrame, rows: np.ndarray, rng: np.random.Generator, cols: list[str]
) -> pl.DataFrame:
    """Scale the given columns on the given rows by random factors (keeps high >= low)."""
    out = {c: f[c].to_numpy().copy() for c in cols}
    k = rng.uniform(0.97, 1.03, size=rows.size)
    for c in cols:
        out[c][rows] *= k if c != "high" else k * 1.01
    return f.with_columns(*(pl.Series(c, v) for c, v in out.items()))


def test_no_look_ahead_real_bars(btc: pl.DataFrame) -> None:
    rng = np.random.default_rng(7)
    n = btc.height
    full = compute_labels(SPECS, btc)
    ohlcv = ["open", "high", "low", "close", "rv"]
    ts = [*rng.integers(0, n - H - 1, size=8).tolist(), 0, n - H - 1]
    for t in ts:
        want = full.row(t, named=True)
        assert want["tb_0p004_0p004_60_label"] is not None
        # truncate right after t+H
        assert row(btc.head(t + H + 1), t) == want, t
        # change every bar after t+H
        after = np.arange(t + H + 1, n)
        assert row(perturb(btc, after, rng, ohlcv), t) == want, t
        # change every bar before t, and bar t's open/high/low (not its close nor vol[t])
        before = np.arange(0, t)
        f = perturb(btc, before, rng, ohlcv)
        f = perturb(f, np.array([t]), rng, ["open", "high", "low"])
        assert row(f, t) == want, t


def test_labels_do_see_the_horizon(btc: pl.DataFrame) -> None:
    """Control for the test above: changing close[t+h] changes the h-bar labels at t only."""
    t = 1000
    f = perturb(btc, np.array([t + 15]), np.random.default_rng(1), ["close"])
    a = compute_labels(SPECS[:1], btc).row(t, named=True)
    b = compute_labels(SPECS[:1], f).row(t, named=True)
    assert a["fwd_ret_15"] != b["fwd_ret_15"]
    assert (a["fwd_ret_1"], a["fwd_ret_5"], a["fwd_ret_60"]) == (
        b["fwd_ret_1"],
        b["fwd_ret_5"],
        b["fwd_ret_60"],
    )
    tb = compute_labels(SPECS, btc)
    assert tb["tb_0p004_0p004_60_label"].null_count() == H
    assert set(tb["tb_0p004_0p004_60_label"].drop_nulls().unique().to_list()) == {-1, 0, 1}


def tb_loop(
    f: pl.DataFrame, pt: float, sl: float, h: int, vol: str | None, short: bool
) -> list[tuple[float, int, float]]:
    """Direct per-t loop, written independently of the vectorised code."""
    hi, lo, c = f["high"].to_list(), f["low"].to_list(), f["close"].to_list()
    v = f[vol].to_list() if vol else [1.0] * len(c)
    out: list[tuple[float, int, float]] = []
    for t in range(len(c) - h):
        wp, ws = pt * v[t], sl * v[t]
        prof = c[t] * (1 - wp) if short else c[t] * (1 + wp)
        stop = c[t] * (1 + ws) if short else c[t] * (1 - ws)
        res = None
        for j in range(t + 1, t + h + 1):
            stopped = hi[j] >= stop if short else lo[j] <= stop
            took = lo[j] <= prof if short else hi[j] >= prof
            if stopped or took:
                res = (-1.0, j, -ws) if stopped else (1.0, j, wp)
                break
        if res is None:
            r = c[t + h] / c[t] - 1
            res = (0.0, t + h, -r if short else r)
        out.append(res)
    return out


@pytest.mark.parametrize(
    ("pt", "sl", "h", "vol", "short"),
    [(0.004, 0.004, 60, None, False), (0.002, 0.003, 30, None, True), (2, 1.5, 60, "rv", False)],
)
def test_tb_matches_loop_on_real_bars(
    btc: pl.DataFrame, pt: float, sl: float, h: int, vol: str | None, short: bool
) -> None:
    f = btc.slice(5000, 4000)
    want = tb_loop(f, pt, sl, h, vol, short)
    r = triple_barrier(
        f["high"].to_numpy(),
        f["low"].to_numpy(),
        f["close"].to_numpy(),
        pt=pt,
        sl=sl,
        h=h,
        vol=f[vol].to_numpy() if vol else None,
        side="short" if short else "long",
    )
    m = len(want)
    assert r.label[:m].tolist() == [w[0] for w in want]
    assert r.t1[:m].tolist() == [w[1] for w in want]
    np.testing.assert_allclose(r.ret[:m], [w[2] for w in want], rtol=1e-12)
    assert np.isnan(r.label[m:]).all()
