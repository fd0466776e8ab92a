"""Monte Carlo: against separately written per-run loops, hand-worked drawdowns, invariants."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.analytics.montecarlo import block_bootstrap, default_block, shuffle_trades


def _max_dd(equity: list[float]) -> float:
    peak, worst = equity[0], 0.0
    for e in equity:
        peak = max(peak, e)
        worst = max(worst, 1.0 - e / peak)
    return worst


def _sd(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _loop_bootstrap(r: list[float], initial: float, n_runs: int, block: int, seed: int, ppy: float):
    """Each run built bar by bar from the documented draws: run i's block starts are
    default_rng(seed).spawn(n_runs)[i].integers(0, n, ceil(n / block))."""
    n = len(r)
    nb = -(-n // block)
    out = []
    for g in np.random.default_rng(seed).spawn(n_runs):
        starts = g.integers(0, n, size=nb)
        xs = [r[(s + k) % n] for s in starts for k in range(block)][:n]
        eq = [initial]
        for x in xs:
            eq.append(eq[-1] * (1.0 + x))
        sd = _sd(xs)
        sharpe = sum(xs) / n / sd * math.sqrt(ppy) if sd > 0 else math.nan
        out.append((eq[-1] / initial - 1.0, sharpe, _max_dd(eq)))
    return np.array(out)


def test_shuffle_hand_worked() -> None:
    # pnls 10, -20, 30 on 100: the 6 orders' drawdowns by hand
    dds = {
        (10, -20, 30): 20 / 110,
        (10, 30, -20): 20 / 140,
        (-20, 10, 30): 0.2,
        (-20, 30, 10): 0.2,
        (30, 10, -20): 20 / 140,
        (30, -20, 10): 20 / 130,
    }
    mc = shuffle_trades([10.0, -20.0, 30.0], 100.0, n_runs=300, seed=3)
    assert np.all(mc.runs["total_return"] == 0.2)  # the same sum in every order
    got = {round(v, 12) for v in mc.runs["max_drawdown"]}
    assert got == {round(v, 12) for v in dds.values()}  # 300 runs see all 6 orders
    # per-trade Sharpe of the order (10, -20, 30): returns on equity before each trade
    rets = [10 / 100, -20 / 110, 30 / 90]
    want = sum(rets) / 3 / _sd(rets)
    i = int(np.argmin(np.abs(mc.runs["max_drawdown"] - 20 / 110)))
    assert mc.runs["sharpe"][i] == pytest.approx(want)
    assert mc.fan_x == (0, 1, 2, 3) and mc.fan["p50"][0] == 100.0
    assert mc.fan["p5"][-1] == pytest.approx(120.0) and mc.fan["p95"][-1] == pytest.approx(120.0)
    assert mc.p_ruin == 0.0


def test_shuffle_ruin_and_determinism() -> None:
    pnls = np.array([-150.0, 200.0, -30.0, 10.0])
    a = shuffle_trades(pnls, 100.0, n_runs=200, seed=7)
    b = shuffle_trades(pnls, 100.0, n_runs=200, seed=7)
    assert a.to_dict() == b.to_dict()
    dd_of = {}  # every order by enumeration: its drawdown and whether equity reached <= 0
    for p in itertools.permutations(pnls.tolist()):
        eq = list(itertools.accumulate(p, initial=100.0))
        dd_of[round(_max_dd(eq), 12)] = min(eq) <= 0.0
    got = [round(v, 12) for v in a.runs["max_drawdown"]]
    assert set(got) == set(dd_of)  # 200 runs see all 24 orders' drawdowns
    assert a.p_ruin == pytest.approx(np.mean([dd_of[v] for v in got]))
    assert 0.0 < a.p_ruin < 1.0 and max(got) == pytest.approx(1.8)  # 100, 70, -80: 1 + 0.8
    assert np.isnan(a.runs["sharpe"][a.runs["max_drawdown"] >= 1.0]).all()
    assert np.isfinite(a.runs["sharpe"][a.runs["max_drawdown"] < 1.0]).all()


def test_bootstrap_matches_a_loop() -> None:
    r = list(np.random.default_rng(5).normal(0.001, 0.02, 23))
    for block in (1, 3, 5, 8, 10, 23):  # both code paths (direct below 8), partial last block
        mc = block_bootstrap(r, 1000.0, n_runs=40, block=block, seed=11, periods_per_year=365)
        want = _loop_bootstrap(r, 1000.0, 40, block, 11, 365)
        for j, k in enumerate(("total_return", "sharpe", "max_drawdown")):
            assert mc.runs[k] == pytest.approx(want[:, j], rel=1e-9, abs=1e-12), (block, k)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-0.2, 0.2), min_size=2, max_size=40),
    st.integers(1, 40),
    st.integers(0, 2**32),
)
def test_bootstrap_property_vs_loop(r: list[float], block: int, seed: int) -> None:
    block = min(block, len(r))
    mc = block_bootstrap(r, 50.0, n_runs=5, block=block, seed=seed, periods_per_year=12)
    want = _loop_bootstrap(r, 50.0, 5, block, seed, 12)
    assert mc.runs["total_return"] == pytest.approx(want[:, 0], rel=1e-9, abs=1e-12)
    assert mc.runs["max_drawdown"] == pytest.approx(want[:, 2], rel=1e-9, abs=1e-12)
    s, w = mc.runs["sharpe"], want[:, 1]
    assert np.array_equal(np.isnan(s), np.isnan(w)) or np.allclose(s, w, rtol=1e-6)


def test_block_of_n_is_a_rotation() -> None:
    r = list(np.random.default_rng(1).normal(0.0, 0.01, 30))
    mc = block_bootstrap(r, 1.0, n_runs=50, block=30, seed=2)
    rot_dd = []
    for s in range(30):
        eq = [1.0]
        for x in r[s:] + r[:s]:
            eq.append(eq[-1] * (1 + x))
        rot_dd.append(_max_dd(eq))
    total = math.prod(1 + x for x in r) - 1
    assert mc.runs["total_return"] == pytest.approx(np.full(50, total), rel=1e-9)
    assert np.ptp(mc.runs["sharpe"]) < 1e-9  # the same values in another order
    for dd in mc.runs["max_drawdown"]:
        assert min(abs(dd - d) for d in rot_dd) < 1e-12


def test_constant_returns_have_no_sharpe() -> None:
    mc = block_bootstrap([0.001] * 50, 1.0, n_runs=10, block=10)
    assert np.isnan(mc.runs["sharpe"]).all()
    assert mc.bands["sharpe"]["p50"] is None
    assert mc.runs["max_drawdown"] == pytest.approx(np.zeros(10), abs=1e-12)


def test_bands_fan_determinism_and_json() -> None:
    r = np.random.default_rng(9).normal(0.0, 0.01, 5000)
    a = block_bootstrap(r, 100.0, n_runs=300, seed=4)
    b = block_bootstrap(r, 100.0, n_runs=300, seed=4)
    c = block_bootstrap(r, 100.0, n_runs=300, seed=5)
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()
    assert a.block == default_block(5000) == 71
    first = block_bootstrap(r, 100.0, n_runs=30, seed=4)  # run i depends on i only
    assert np.array_equal(first.runs["max_drawdown"], a.runs["max_drawdown"][:30])
    for band in a.bands.values():
        vals = [band[k] for k in ("p5", "p25", "p50", "p75", "p95")]
        assert vals == sorted(vals)
    assert len(a.fan_x) == 200 and a.fan_x[0] == 0 and a.fan_x[-1] == 5000
    assert np.all(np.diff(a.fan_x) > 0)
    for lo, hi in itertools.pairwise(("p5", "p25", "p50", "p75", "p95")):
        assert all(x <= y + 1e-9 for x, y in zip(a.fan[lo], a.fan[hi], strict=True))
    final = 100.0 * (1.0 + a.runs["total_return"])
    assert a.fan["p50"][-1] == pytest.approx(float(np.median(final)), rel=1e-9)
    json.dumps(a.to_dict())


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="returns\\[1\\]"):
        block_bootstrap([0.1, -1.0, 0.2], 1.0)
    with pytest.raises(ValueError, match="returns\\[0\\]"):
        block_bootstrap([math.nan, 0.1], 1.0)
    with pytest.raises(ValueError, match="block"):
        block_bootstrap([0.1, 0.2], 1.0, block=3)
    with pytest.raises(ValueError, match="initial"):
        shuffle_trades([1.0], 0.0)
    with pytest.raises(ValueError, match="n_runs"):
        shuffle_trades([1.0], 1.0, n_runs=0)
