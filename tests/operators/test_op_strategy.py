"""SmaCross: crossing semantics decided in exact arithmetic (ties included), checked against an
independent rational-arithmetic reference on synthetic tie-heavy prices and on real bars."""

from __future__ import annotations

import itertools
import pickle
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.features import feature_set
from operators.features.sma import SMA
from operators.strategy_sma_cross import SmaCross
from schemas.messages import NS_PER_MINUTE, Bar, Signal
from tests.operators.opdata import SYMBOLS, real_bars

T0 = 1_704_067_200 * 1_000_000_000  # 2024-01-01 00:00 UTC


def _bars(prices: list[float], symbol: str = "BTCUSDT") -> list[Bar]:
    out = []
    for i, p in enumerate(prices):
        ts = T0 + i * NS_PER_MINUTE
        out.append(
            Bar(
                symbol=symbol,
                ts_event=ts,
                ts_init=ts + NS_PER_MINUTE + 7,  # distinct from ts_close on purpose
                open=p,
                high=p,
                low=p,
                close=p,
                volume=1.0,
            )
        )
    return out


def _exact_d_signs(prices: list[float], fast: int, slow: int) -> list[int | None]:
    """sign(SMA_fast - SMA_slow) per bar in exact rationals of the decimal prices (None before
    the slow average exists)."""
    q = [Fraction(Decimal(repr(p))) for p in prices]
    out: list[int | None] = []
    for t in range(len(q)):
        if t + 1 < slow:
            out.append(None)
            continue
        d = sum(q[t + 1 - fast : t + 1]) / fast - sum(q[t + 1 - slow : t + 1]) / slow
        out.append((d > 0) - (d < 0))
    return out


def _reference_signals(prices: list[float], fast: int, slow: int) -> list[tuple[int, int]]:
    """(bar index, direction) of every cross by the documented rule."""
    d = _exact_d_signs(prices, fast, slow)
    out = []
    for t in range(1, len(d)):
        prev, cur = d[t - 1], d[t]
        if prev is None or cur is None:
            continue
        if cur > 0 and prev <= 0:
            out.append((t, 1))
        elif cur < 0 and prev >= 0:
            out.append((t, -1))
    return out


def _run(prices: list[float], fast: int, slow: int) -> list[tuple[int, Signal]]:
    strat = SmaCross("BTCUSDT", fast, slow)
    out = []
    for i, bar in enumerate(_bars(prices)):
        sig = strat.update(bar)
        if sig is not None:
            out.append((i, sig))
    return out


def test_float_sma_would_misjudge_this_tie() -> None:
    """The fixture the tie tests rely on: fast == slow exactly, but not in float arithmetic."""
    window = [0.2, 0.1, 0.3]
    assert (0.1 + 0.3) / 2 != (0.2 + 0.1 + 0.3) / 3
    q = [Fraction(x) for x in ("0.2", "0.1", "0.3")]
    assert sum(q[1:]) / 2 == sum(q) / 3
    fast, slow = SMA(2), SMA(3)
    for p in window:
        fast.update_price(p)
        slow.update_price(p)
    assert fast.compare(slow) == 0 and slow.compare(fast) == 0


@pytest.mark.parametrize(
    ("prices", "expected"),
    [
        # with fast=2, slow=3: d_t > 0 iff x[t-1] + x[t] > 2 * x[t-2]; ties exact in decimals
        # d: ., ., 0, + -> cross up at bar 3 (prev == 0 counts as "not above")
        ([0.2, 0.1, 0.3, 0.5], [(3, 1)]),
        # d: ., ., 0, - (from an undecided start) -> cross down at bar 3
        ([0.4, 0.5, 0.3, 0.1], [(3, -1)]),
        # d: ., ., -, 0, - -> touching zero and going back down is a fresh cross down
        ([0.9, 0.3, 0.5, 0.1, 0.2], [(4, -1)]),
        # d: ., ., +, 0, + -> likewise a fresh cross up, and no signal on the tie itself
        ([0.1, 0.3, 0.2, 0.4, 0.1], [(4, 1)]),
        # d: ., ., +, 0, - -> one cross down, on the bar that goes negative, not on the tie
        ([0.1, 0.3, 0.5, 0.1, 0.2], [(4, -1)]),
        # d: ., ., +, 0, 0, + -> two ties in a row, then up
        ([0.1, 0.3, 0.5, 0.1, 0.9, 0.1], [(5, 1)]),
    ],
)
def test_tie_handling_is_exact(prices: list[float], expected: list[tuple[int, int]]) -> None:
    assert _reference_signals(prices, 2, 3) == expected  # the hand-derived answer
    d = _exact_d_signs(prices, 2, 3)
    assert 0 in d, "fixture must contain an exact tie"
    got = [(i, s.direction) for i, s in _run(prices, 2, 3)]
    assert got == expected


def test_first_decision_needs_slow_plus_one_bars() -> None:
    # fast above slow from the very first bar where both exist: that is not a cross (no prev)
    rising = [1.0 + 0.01 * i for i in range(30)]
    assert _run(rising, 3, 5) == []
    # a cross on bar index `slow` (the (slow+1)-th bar) is the earliest possible decision
    slow = 5
    prices = [5.0, 4.0, 3.0, 2.0, 1.0, 9.0]  # at bar 4 fast<slow, at bar 5 fast>slow
    got = _run(prices, 2, slow)
    assert [(i, s.direction) for i, s in got] == [(slow, 1)]
    # and nothing before it, even when the bar-`slow-1` state is "above"
    got = _run([1.0, 2.0, 3.0, 4.0, 5.0], 2, slow)
    assert got == []


def test_signal_fields() -> None:
    prices = [0.2, 0.1, 0.3, 0.5]
    bars = _bars(prices)
    ((i, sig),) = _run(prices, 2, 3)
    bar = bars[i]
    assert sig.ts_event == bar.ts_event + NS_PER_MINUTE == bar.ts_close
    assert sig.ts_init == bar.ts_init
    assert sig.symbol == "BTCUSDT" and sig.strategy == "sma_cross_2_3"
    assert sig.direction == 1
    assert "sma_2" in sig.reason and "sma_3" in sig.reason and "above" in sig.reason
    fast = (0.3 + 0.5) / 2
    slow = (0.1 + 0.3 + 0.5) / 3
    assert sig.strength == pytest.approx(fast / slow - 1.0, rel=1e-12)
    assert sig.strength > 0


@pytest.mark.parametrize("seed", range(6))
def test_random_tie_heavy_prices_match_exact_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    fast, slow = [(2, 3), (2, 4), (3, 6), (5, 10), (4, 6), (3, 9)][seed]
    # few distinct one-decimal prices: exact ties between the averages are frequent
    prices = [round(float(x), 1) for x in rng.integers(1, 6, size=400) / 10]
    ref = _reference_signals(prices, fast, slow)
    d = _exact_d_signs(prices, fast, slow)
    assert d.count(0) > 5, "fixture should exercise ties"
    got = [(i, s.direction) for i, s in _run(prices, fast, slow)]
    assert got == ref
    assert len(ref) > 5


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_real_bars_match_integer_reference(symbol: str) -> None:
    """SmaCross(10, 50) over the real month vs a vectorised integer-cents reference."""
    bars = real_bars(symbol)
    c = np.array([round(b.close * 100) for b in bars], dtype=np.int64)
    assert np.all(c.astype(np.float64) / 100 == np.array([b.close for b in bars]))
    fast, slow = 10, 50
    cs = np.concatenate(([0], np.cumsum(c)))
    idx = np.arange(slow - 1, len(c))
    d = np.sign(
        (cs[idx + 1] - cs[idx + 1 - fast]) * slow - (cs[idx + 1] - cs[idx + 1 - slow]) * fast
    )
    prev, cur = d[:-1], d[1:]
    up = (cur > 0) & (prev <= 0)
    down = (cur < 0) & (prev >= 0)
    ref = [(int(t), 1 if u else -1) for t, u, dn in zip(idx[1:], up, down, strict=True) if u or dn]
    strat = SmaCross(symbol, fast, slow)
    got = []
    for i, b in enumerate(bars):
        sig = strat.update(b)
        if sig is not None:
            assert sig.ts_event == b.ts_close
            got.append((i, sig.direction))
    assert got == ref
    assert len(ref) > 100
    # directions alternate: a cross up can only follow a cross down and vice versa
    dirs = [x for _, x in got]
    assert all(a != b for a, b in itertools.pairwise(dirs))


def test_sma_compare_is_exact_and_antisymmetric() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        n1, n2 = (int(x) for x in rng.integers(1, 8, size=2))
        xs = [round(float(v), 2) for v in rng.integers(1, 400, size=n1) / 100]
        ys = [round(float(v), 2) for v in rng.integers(1, 400, size=n2) / 100]
        a, b = SMA(n1), SMA(n2)
        for x in xs:
            a.update_price(x)
        for y in ys:
            b.update_price(y)
        qa = sum(Fraction(Decimal(repr(x))) for x in xs) / n1
        qb = sum(Fraction(Decimal(repr(y))) for y in ys) / n2
        expect = (qa > qb) - (qa < qb)
        assert a.compare(b) == expect
        assert b.compare(a) == -expect
    # equal values: compare says 0 whatever float division says
    a, b = SMA(3), SMA(6)
    for p in (0.1, 0.2, 0.3):
        a.update_price(p)
    for p in (0.3, 0.1, 0.2, 0.3, 0.2, 0.1):
        b.update_price(p)
    assert a.compare(b) == 0


def test_sma_window_slides_exactly() -> None:
    sma = SMA(3)
    vals = [sma.update_price(p) for p in (0.1, 0.2, 0.3, 0.4, 0.5)]
    assert np.isnan(vals[0]) and np.isnan(vals[1])
    assert vals[2:] == [0.2, 0.3, 0.4]  # correctly rounded decimal means, no float drift
    assert not SMA(2).ready


@pytest.mark.parametrize(("fast", "slow"), [(0, 5), (5, 5), (6, 5), (-1, 3)])
def test_invalid_windows_raise(fast: int, slow: int) -> None:
    with pytest.raises(ValueError):
        SmaCross("BTCUSDT", fast, slow)


def _signals_shared(bars: tuple[Bar, ...] | list[Bar]) -> list[Signal]:
    fs = feature_set("core")
    fast, slow = fs.get("sma_10"), fs.get("sma_50")
    assert isinstance(fast, SMA) and isinstance(slow, SMA)
    strat = SmaCross(bars[0].symbol, 10, 50, shared=(fast, slow))
    out = []
    for b in bars:
        fs.update(b)  # the caller updates the shared averages first
        sig = strat.update(b)
        if sig is not None:
            out.append(sig)
    return out


def test_shared_smas_give_identical_signals() -> None:
    bars = real_bars("BTCUSDT")[:8_000]
    strat = SmaCross("BTCUSDT", 10, 50)
    own = [s for b in bars if (s := strat.update(b)) is not None]
    assert len(own) > 20
    assert _signals_shared(bars) == own


def test_shared_smas_survive_pickling_together() -> None:
    bars = real_bars("ETHUSDT")[:3_000]
    expected = _signals_shared(bars)
    fs = feature_set("core")
    strat = SmaCross("ETHUSDT", 10, 50, shared=(fs.get("sma_10"), fs.get("sma_50")))  # type: ignore[arg-type]
    got = []
    for i, b in enumerate(bars):
        if i == 1_234:
            fs, strat = pickle.loads(pickle.dumps((fs, strat)))
            assert strat.fast is fs.get("sma_10") and strat.slow is fs.get("sma_50")
        fs.update(b)
        if (s := strat.update(b)) is not None:
            got.append(s)
    assert got == expected


@pytest.mark.parametrize(
    "shared",
    [
        (SMA(10), SMA(40)),
        (SMA(5), SMA(50)),
        (SMA(50), SMA(10)),
        (SMA(10, "high"), SMA(50)),
    ],
)
def test_mismatched_shared_smas_rejected(shared: tuple[SMA, SMA]) -> None:
    with pytest.raises(ValueError, match="shared SMAs"):
        SmaCross("BTCUSDT", 10, 50, shared=shared)


def test_shared_slow_sma_on_other_field_rejected() -> None:
    with pytest.raises(ValueError, match="shared SMAs"):
        SmaCross("BTCUSDT", 10, 50, shared=(SMA(10), SMA(50, "high")))


def test_featureset_get() -> None:
    fs = feature_set("core")
    for f in fs.features:
        assert fs.get(f.name) is f
    assert fs.get("sma_11") is None


# --- a run of bars at once ------------------------------------------------------------------------


def _strategy_state(s: SmaCross) -> Any:
    return (
        s._prev_sign,
        [(list(m._window), m.exact_sum, repr(m.value)) for m in (s.fast, s.slow)],
    )


@pytest.mark.parametrize(("fast", "slow"), [(1, 2), (10, 50), (240, 1440), (3, 7)])
@pytest.mark.parametrize("cuts", [[], [1, 2, 3], [49, 50, 51, 2_000], [5_000]])
def test_update_many_equals_update_for_any_split(fast: int, slow: int, cuts: list[int]) -> None:
    bars = real_bars("BTCUSDT")[:8_000]
    one, many = SmaCross("BTCUSDT", fast, slow), SmaCross("BTCUSDT", fast, slow)
    ref = [one.update(b) for b in bars]
    got: list[Signal | None] = []
    edges = [0, *cuts, len(bars)]
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        run = bars[a:b]
        got += [many.update(x) for x in run] if i % 2 else many.update_many(run)
    assert got == ref
    assert sum(s is not None for s in got) > 5
    assert _strategy_state(many) == _strategy_state(one)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 40_000),
    st.lists(st.integers(0, 600), max_size=6),
    st.sampled_from([(2, 3), (5, 20), (10, 50)]),
)
def test_update_many_any_window_of_real_bars(
    k: int, cuts: list[int], periods: tuple[int, int]
) -> None:
    bars = real_bars("ETHUSDT")[k : k + 600]
    one, many = SmaCross("ETHUSDT", *periods), SmaCross("ETHUSDT", *periods)
    ref = [one.update(b) for b in bars]
    edges = [0, *sorted(cuts), len(bars)]
    got = [s for a, b in itertools.pairwise(edges) for s in many.update_many(bars[a:b])]
    assert got == ref
    assert _strategy_state(many) == _strategy_state(one)


def test_update_many_with_shared_averages_or_huge_prices_goes_one_at_a_time() -> None:
    fs = feature_set("core")
    bars = real_bars("ETHUSDT")[:500]
    strat = SmaCross("ETHUSDT", 10, 50, shared=(fs.get("sma_10"), fs.get("sma_50")))  # type: ignore[arg-type]
    ref_fs = feature_set("core")
    ref = SmaCross("ETHUSDT", 10, 50, shared=(ref_fs.get("sma_10"), ref_fs.get("sma_50")))  # type: ignore[arg-type]
    want = []
    for b in bars:
        ref_fs.update(b)
        want.append(ref.update(b))
    got = []
    for b in bars:  # the set updates the shared averages; update_many must not move them again
        fs.update(b)
        got += strat.update_many([b])
    assert got == want
    huge = [Bar("X", i, i + 1, 1e12, 1e12, 1e12, 1e12 + (i % 7), 1.0) for i in range(300)]
    a, b = SmaCross("X", 10, 50), SmaCross("X", 10, 50)
    assert b.update_many(huge) == [a.update(x) for x in huge]
    assert _strategy_state(a) == _strategy_state(b)
