"""Pair features (rolling corr / beta of log returns, rolling Engle-Granger cointegration) on the
real Jan-2024 ETHUSDT-vs-BTCUSDT 1m bars (and BTC vs ETH) equal independent numpy references at
every bar: two-pass centred sliding-window moments, spot-checked against np.corrcoef / np.polyfit
/ lstsq, computed on the inner join of the two legs' timestamps (NaN on the unaligned bars)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache, partial

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view as windows

from operators.features.base import PairFeature
from operators.features.coint import CointSpread
from operators.features.pair_beta import RollingBeta
from operators.features.pair_corr import RollingCorr
from schemas.messages import Bar
from tests.operators.featurecheck import (
    assert_column_matches,
    assert_matches,
    assert_pickle_resumes,
    assert_prefix_stable,
    stream,
)
from tests.operators.opdata import real_bars

PAIRS = [("ETHUSDT", "BTCUSDT"), ("BTCUSDT", "ETHUSDT")]
# (start, length) of the reference-leg runs removed in the gap tests, plus scattered singles
GAP_RUNS = [(3000, 120), (9000, 7), (17_500, 250), (26_000, 1), (31_000, 60), (40_000, 90)]


def _refs(ref_symbol: str, gaps: bool) -> list[Bar | None]:
    """The reference leg's bars, with holes: None, plus a few bars of the wrong open time (which
    must count as missing too)."""
    refs: list[Bar | None] = list(real_bars(ref_symbol))
    if gaps:
        for start, length in GAP_RUNS:
            refs[start : start + length] = [None] * length
        rng = np.random.default_rng(7)
        for i in rng.choice(np.arange(2000, len(refs)), size=80, replace=False):
            refs[int(i)] = None
        for i in (5001, 5002, 22_222):  # misaligned: the previous minute's bar
            refs[i] = real_bars(ref_symbol)[i - 1]
    return refs


def _aligned(symbol: str, ref_symbol: str, gaps: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask of aligned bars, symbol closes, ref closes) on the inner join of timestamps."""
    bars = real_bars(symbol)
    refs = _refs(ref_symbol, gaps)
    mask = np.array(
        [r is not None and r.ts_event == b.ts_event for b, r in zip(bars, refs, strict=True)]
    )
    c = np.array([b.close for b in bars])[mask]
    cr = np.array([b.close for b in real_bars(ref_symbol)])[mask]
    return mask, c, cr


def _scatter(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.full(len(mask), np.nan)
    out[mask] = values
    return out


def _return_moments(c: np.ndarray, cr: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Centred (two-pass) moments of the last n aligned returns, one row per aligned bar."""
    rs, rr = np.log(c[1:] / c[:-1]), np.log(cr[1:] / cr[:-1])
    ws, wr = windows(rs, n), windows(rr, n)
    ds = ws - ws.mean(axis=1, keepdims=True)
    dr = wr - wr.mean(axis=1, keepdims=True)
    pad = np.full(n, np.nan)  # aligned bar k has returns 1..k: full window from k = n
    return tuple(
        np.concatenate((pad, v))
        for v in ((ds * dr).sum(axis=1), (ds * ds).sum(axis=1), (dr * dr).sum(axis=1))
    )


def corr_reference(c: np.ndarray, cr: np.ndarray, n: int) -> np.ndarray:
    sxy, sxx, syy = _return_moments(c, cr, n)
    out: np.ndarray = sxy / np.sqrt(sxx * syy)
    return out


def beta_reference(c: np.ndarray, cr: np.ndarray, n: int) -> np.ndarray:
    sxy, _, syy = _return_moments(c, cr, n)
    out: np.ndarray = sxy / syy
    return out


def coint_reference(c: np.ndarray, cr: np.ndarray, n: int, chunk: int = 1500) -> np.ndarray:
    """(hedge, halflife, z) per aligned bar: per-window centred OLS, residuals, AR(1) of diffs."""
    y_all, x_all = np.log(c), np.log(cr)
    out = np.full((len(c), 3), np.nan)
    wy, wx = windows(y_all, n), windows(x_all, n)
    for s in range(0, len(wy), chunk):
        y, x = wy[s : s + chunk], wx[s : s + chunk]
        xc = x - x.mean(axis=1, keepdims=True)
        yc = y - y.mean(axis=1, keepdims=True)
        b = (xc * yc).sum(axis=1) / (xc * xc).sum(axis=1)
        e = yc - b[:, None] * xc
        z = e[:, -1] / np.sqrt((e * e).mean(axis=1))
        u, de = e[:, :-1], np.diff(e, axis=1)
        uc = u - u.mean(axis=1, keepdims=True)
        dc = de - de.mean(axis=1, keepdims=True)
        phi = (uc * dc).sum(axis=1) / (uc * uc).sum(axis=1)
        with np.errstate(invalid="ignore"):
            hl = np.where((phi > -1) & (phi < 0), -math.log(2) / np.log1p(phi), np.nan)
        out[n - 1 + s : n - 1 + s + len(b)] = np.column_stack((b, hl, z))
    return out


@cache
def _case(family: str, symbol: str, ref: str, n: int, gaps: bool) -> dict[str, np.ndarray]:
    mask, c, cr = _aligned(symbol, ref, gaps)
    name = f"{family}_{ref.lower()}_{n}"
    if family == "corr":
        return {name: _scatter(mask, corr_reference(c, cr, n))}
    if family == "beta":
        return {name: _scatter(mask, beta_reference(c, cr, n))}
    ref_cols = coint_reference(c, cr, n)
    return {f"{name}_{p}": _scatter(mask, ref_cols[:, j]) for j, p in enumerate(PARTS)}


PARTS = ("hedge", "halflife", "z")
MAKERS: dict[str, Callable[..., PairFeature]] = {
    "corr": RollingCorr,
    "beta": RollingBeta,
    "coint": CointSpread,
}
CASES = [("corr", 60), ("corr", 240), ("beta", 60), ("beta", 500), ("coint", 1440), ("coint", 120)]


def _ids(case: tuple[str, int]) -> str:
    return f"{case[0]}_{case[1]}"


@pytest.mark.parametrize("gaps", [False, True], ids=["aligned", "gaps"])
@pytest.mark.parametrize("symbol,ref", PAIRS)
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matches_reference(case: tuple[str, int], symbol: str, ref: str, gaps: bool) -> None:
    family, n = case
    make = MAKERS[family]
    feat = make(ref, n)
    assert isinstance(feat, PairFeature)
    assert feat.warmup == (n if family in ("corr", "beta") else n - 1)
    got = assert_matches(
        lambda: make(ref, n),
        real_bars(symbol),
        _case(family, symbol, ref, n, gaps),
        _refs(ref, gaps),
    )
    if gaps:
        mask, _, _ = _aligned(symbol, ref, gaps)
        assert (~mask).sum() > 500
        assert np.isnan(got[~mask]).all()
    if family != "coint":
        assert np.isfinite(got[n:]).mean() > 0.95


def test_reference_spot_checks() -> None:
    """The vectorised references agree with np.corrcoef / np.polyfit / lstsq window by window."""
    _, c, cr = _aligned("ETHUSDT", "BTCUSDT", False)
    rs, rr = np.log(c[1:] / c[:-1]), np.log(cr[1:] / cr[:-1])
    corr, beta = corr_reference(c, cr, 60), beta_reference(c, cr, 60)
    n = 300
    co = coint_reference(c[:3000], cr[:3000], n)
    for k in (60, 61, 1000, 20_000, len(c) - 1):
        a, b = rs[k - 60 : k], rr[k - 60 : k]
        assert corr[k] == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-10)
        assert beta[k] == pytest.approx(np.polyfit(b, a, 1)[0], rel=1e-9)
    for k in (n - 1, 777, 2999):
        y, x = np.log(c[k - n + 1 : k + 1]), np.log(cr[k - n + 1 : k + 1])
        slope, icpt = np.polyfit(x - 10.0, y - 10.0, 1)  # shifted: keep polyfit well conditioned
        e = (y - 10.0) - icpt - slope * (x - 10.0)
        (_, phi), *_ = np.linalg.lstsq(np.column_stack((np.ones(n - 1), e[:-1])), np.diff(e))
        assert co[k, 0] == pytest.approx(slope, rel=1e-8)
        assert co[k, 2] == pytest.approx(e[-1] / e.std(), rel=1e-7, abs=1e-9)
        assert -1 < phi < 0
        assert co[k, 1] == pytest.approx(-math.log(2) / math.log(1 + phi), rel=1e-7)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_on_reference_symbol_is_nan(case: tuple[str, int]) -> None:
    family, n = case
    for sym in ("BTCUSDT", "ETHUSDT"):
        bars = real_bars(sym)[: 3 * n]
        got = stream(partial(MAKERS[family], sym, n), bars, bars)
        assert np.isnan(got).all()
    # the ref symbol is upper-cased (spec names are lower case)
    assert MAKERS[family]("btcusdt", n).ref == "BTCUSDT"


def test_names_and_columns() -> None:
    assert RollingCorr().name == "corr_btcusdt_60" and RollingCorr().columns == ("corr_btcusdt_60",)
    assert RollingBeta("ethusdt", 30).name == "beta_ethusdt_30"
    c = CointSpread()
    assert c.name == "coint_btcusdt_1440" and c.warmup == 1439
    assert c.columns == (
        "coint_btcusdt_1440_hedge",
        "coint_btcusdt_1440_halflife",
        "coint_btcusdt_1440_z",
    )


def test_zero_variance_is_nan() -> None:
    """A flat reference leg: corr, beta and coint are undefined (NaN), not a division error."""
    eth = real_bars("ETHUSDT")[:400]
    flat = [
        Bar(symbol="BTCUSDT", ts_event=b.ts_event, ts_init=b.ts_init, open=1.0, high=1.0,
            low=1.0, close=42_000.0, volume=1.0)
        for b in eth
    ]  # fmt: skip
    for make in (lambda: RollingCorr("BTCUSDT", 20), lambda: RollingBeta("BTCUSDT", 20)):
        assert np.isnan(stream(make, eth, flat)).all()
    assert np.isnan(stream(lambda: CointSpread("BTCUSDT", 50), eth, flat)).all()
    # a flat symbol leg: corr undefined, beta exactly 0
    flat_eth = [
        Bar(symbol="ETHUSDT", ts_event=b.ts_event, ts_init=b.ts_init, open=1.0, high=1.0,
            low=1.0, close=2_000.0, volume=1.0)
        for b in eth
    ]  # fmt: skip
    btc = real_bars("BTCUSDT")[:400]
    assert np.isnan(stream(lambda: RollingCorr("BTCUSDT", 20), flat_eth, btc)).all()
    assert (stream(lambda: RollingBeta("BTCUSDT", 20), flat_eth, btc)[20:] == 0.0).all()


def test_exact_sums_do_not_drift() -> None:
    """Rolling exact sums equal a fresh computation of the last window: after 44k bars the
    streamed value is bit-identical to a feature fed only the final window."""
    eth, btc = real_bars("ETHUSDT"), real_bars("BTCUSDT")
    for make, need in (
        (lambda: RollingCorr("BTCUSDT", 60), 61),
        (lambda: RollingBeta("BTCUSDT", 60), 61),
        (lambda: CointSpread("BTCUSDT", 1440), 1440),
    ):
        full = stream(make, eth, btc)[-1]
        tail = stream(make, eth[-need:], btc[-need:])[-1]
        np.testing.assert_array_equal(full, tail)


STABILITY = [("corr", 60), ("beta", 60), ("coint", 300)]


@pytest.mark.parametrize("case", STABILITY, ids=_ids)
def test_prefix_stable_and_pickle(case: tuple[str, int]) -> None:
    family, n = case
    eth = real_bars("ETHUSDT")[:6000]
    refs: Sequence[Bar | None] = _refs("BTCUSDT", True)[:6000]

    def make() -> PairFeature:
        return MAKERS[family]("BTCUSDT", n)

    full = stream(make, eth, refs)
    assert_prefix_stable(make, eth, full, [1, n - 1, n, n + 1, 3050, 5001, 6000], refs)
    assert_pickle_resumes(make, eth, [1, n, 3060, 5002], refs)


@pytest.mark.parametrize("family", list(MAKERS))
@pytest.mark.parametrize("bad", [{"n": 1}, {"n": 0}, {"n": -5}, {"n": 2.5}, {"ref": ""}])
def test_bad_params(family: str, bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MAKERS[family](**bad)
    if family == "coint":
        with pytest.raises(ValueError):
            CointSpread("BTCUSDT", 2)
    else:
        MAKERS[family]("BTCUSDT", 2)


def test_gap_values_are_unchanged_state() -> None:
    """A non-aligned bar leaves the state alone: feeding the aligned bars only gives the same
    values at the aligned positions."""
    eth, refs = real_bars("ETHUSDT"), _refs("BTCUSDT", True)
    keep = [i for i, r in enumerate(refs) if r is not None and r.ts_event == eth[i].ts_event]
    for make in (lambda: RollingCorr("BTCUSDT", 60), lambda: CointSpread("BTCUSDT", 240)):
        full = stream(make, eth, refs)
        only = stream(make, [eth[i] for i in keep], [refs[i] for i in keep])
        np.testing.assert_array_equal(full[keep], only)
        assert_column_matches(full[:, 0], full[:, 0], make().warmup)
