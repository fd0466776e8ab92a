"""FeatureEngine: per-symbol plausibility guard (duplicates, rewinds, bars implausible in time or
price) and feature sets, and the time alignment of pair features, whose output must not depend
on how the input interleaves or batches the symbols."""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Iterable, Sequence

import msgspec
import numpy as np
import pytest

from operators.feature_engine import FeatureEngine, Out
from operators.features import FeatureSet
from operators.features.pair_corr import RollingCorr
from schemas.messages import Bar
from tests.operators.opdata import real_bars

BTC, ETH = "BTCUSDT", "ETHUSDT"
PAIR_SPECS = ["log_returns_1", "corr_btcusdt_60"]
N = 1_500  # bars per symbol for the alignment tests


def _key(out: Sequence[Out]) -> list[tuple[str, int, str]]:
    """Comparable outputs (repr keeps every float bit and makes NaN equal to NaN)."""
    return [(b.symbol, b.ts_event, repr(v)) for b, v in out]


def _run(engine: FeatureEngine, batches: Iterable[Sequence[Bar]]) -> list[Out]:
    out: list[Out] = []
    for batch in batches:
        out += engine.update(batch)
    out += engine.flush()
    assert engine.held == 0
    assert engine.flush() == []
    return out


def _chunks(items: Sequence[Bar], rng: random.Random, most: int) -> list[list[Bar]]:
    out, i = [], 0
    while i < len(items):
        k = rng.randint(1, most)
        out.append(list(items[i : i + k]))
        i += k
    return out


def _interleave(a: Sequence[Bar], b: Sequence[Bar], rng: random.Random) -> list[Bar]:
    """A random merge that keeps each symbol's own order."""
    out, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        if j >= len(b) or (i < len(a) and rng.random() < 0.5):
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out


def _time_order(a: Sequence[Bar], b: Sequence[Bar]) -> list[Bar]:
    return sorted([*a, *b], key=lambda x: (x.ts_event, x.symbol))


# --- without pair features: immediate, in input order ------------------------------------


def test_rows_come_out_immediately_in_input_order() -> None:
    fs = FeatureSet(["log_returns_1", "rsi_14", "macd"])
    engine = FeatureEngine(fs, [ETH, BTC])
    assert engine.symbols == (BTC, ETH) and not engine.align
    bars = _interleave(real_bars(BTC)[:500], real_bars(ETH)[:500], random.Random(1))
    direct = {BTC: fs.fresh(), ETH: fs.fresh()}
    for batch in _chunks(bars, random.Random(2), 40):
        out = engine.update(batch)
        assert [b for b, _ in out] == batch  # all of them, now, in order
        assert engine.held == 0
        for bar, values in out:
            assert repr(values) == repr(direct[bar.symbol].update(bar))
    assert engine.flush() == []


def test_values_equal_a_set_per_symbol() -> None:
    fs = FeatureSet(["log_returns_1", "rsi_14", "macd"])
    btc, eth = real_bars(BTC)[:500], real_bars(ETH)[:500]
    out = _run(FeatureEngine(fs, [BTC, ETH]), [_interleave(btc, eth, random.Random(3))])
    for sym, bars in ((BTC, btc), (ETH, eth)):
        got = np.array([v for b, v in out if b.symbol == sym])
        solo = fs.fresh()
        np.testing.assert_array_equal(got, np.array([solo.update(b) for b in bars]))
    assert np.isfinite(got[fs.warmup :]).all()


def test_single_symbol_group_never_holds() -> None:
    fs = FeatureSet(PAIR_SPECS)  # pair features, but the group is just the reference itself
    engine = FeatureEngine(fs, [BTC])
    assert not engine.align
    bars = real_bars(BTC)[:100]
    out = engine.update(bars)
    assert [b for b, _ in out] == list(bars)
    assert all(v[1] != v[1] for _, v in out)  # corr with itself: NaN


# --- sequence guard ----------------------------------------------------------------------


@pytest.mark.parametrize("pair", [False, True])
def test_duplicate_and_out_of_order_bars_rejected(pair: bool) -> None:
    specs = PAIR_SPECS if pair else ["log_returns_1", "rsi_14"]
    fs = FeatureSet(specs)
    btc, eth = real_bars(BTC)[:200], real_bars(ETH)[:200]
    engine = FeatureEngine(fs, [BTC, ETH])
    out: list[Out] = []
    out += engine.update([btc[0], eth[0], btc[1], eth[1]])
    # a duplicate (same open time, even with other prices) and a rewind of each symbol
    dup = msgspec.structs.replace(btc[1], close=btc[1].close * 2, high=btc[1].high * 2)
    bad = [dup, eth[0], btc[0], eth[1]]
    got = engine.update(bad)
    rejects = [(b, v) for b, v in got if isinstance(v, str)]
    assert [(b, v) for b, v in rejects] == [
        (dup, "duplicate bar"),
        (eth[0], "out-of-order bar"),
        (btc[0], "out-of-order bar"),
        (eth[1], "duplicate bar"),
    ]
    out += got
    out += engine.update([*btc[2:], *eth[2:]])
    out += engine.flush()
    rows = [(b, v) for b, v in out if not isinstance(v, str)]
    assert len(rows) == 400
    # the rejected bars were never fed: values equal a clean run
    clean = _run(FeatureEngine(fs, [BTC, ETH]), [_time_order(btc, eth)])
    by_sym = {s: [o for o in _key(rows) if o[0] == s] for s in (BTC, ETH)}
    assert by_sym == {s: [o for o in _key(clean) if o[0] == s] for s in (BTC, ETH)}


def test_rejects_keep_their_place_in_input_order() -> None:
    fs = FeatureSet(["rsi_14"])
    btc = real_bars(BTC)[:5]
    out = FeatureEngine(fs, [BTC]).update([btc[0], btc[1], btc[1], btc[0], btc[2]])
    assert [(b.ts_event, v if isinstance(v, str) else "row") for b, v in out] == [
        (btc[0].ts_event, "row"),
        (btc[1].ts_event, "row"),
        (btc[1].ts_event, "duplicate bar"),
        (btc[0].ts_event, "out-of-order bar"),
        (btc[2].ts_event, "row"),
    ]


@pytest.mark.parametrize("pair", [False, True])
def test_bars_outside_the_group_rejected(pair: bool) -> None:
    fs = FeatureSet(PAIR_SPECS if pair else ["rsi_14"])
    engine = FeatureEngine(fs, [BTC, ETH])
    sol = msgspec.structs.replace(real_bars(ETH)[0], symbol="SOLUSDT")
    out = engine.update([sol])
    assert len(out) == 1 and out[0][0] is sol
    reason = out[0][1]
    assert isinstance(reason, str) and reason.startswith("symbol not in feature group")
    assert BTC in reason and ETH in reason
    assert "SOLUSDT" not in engine.sets and engine.held == 0
    assert engine.flush() == []


def test_missing_reference_symbol_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match=r"reference symbol\(s\) \['BTCUSDT'\]"):
        FeatureEngine(FeatureSet(PAIR_SPECS), [ETH])
    with pytest.raises(ValueError, match="SOLUSDT"):
        FeatureEngine(FeatureSet(["corr_solusdt_60", "beta_btcusdt_60"]), [BTC, ETH])


# --- pair features: time alignment -------------------------------------------------------


@pytest.fixture(scope="module")
def reference_run() -> list[tuple[str, int, str]]:
    btc, eth = real_bars(BTC)[:N], real_bars(ETH)[:N]
    out = _run(FeatureEngine(FeatureSet(PAIR_SPECS), [BTC, ETH]), [_time_order(btc, eth)])
    assert len(out) == 2 * N
    # released by open time, symbols in order within each time
    assert [(b.ts_event, b.symbol) for b, _ in out] == [
        (b.ts_event, b.symbol) for b in _time_order(btc, eth)
    ]
    return _key(out)


def _orders() -> list[tuple[str, list[list[Bar]]]]:
    btc, eth = real_bars(BTC)[:N], real_bars(ETH)[:N]
    cases = [
        ("btc_first", [list(btc), list(eth)]),
        ("eth_first", [list(eth), list(btc)]),
        ("one_batch_btc_first", [[*btc, *eth]]),
        ("one_batch_eth_first", [[*eth, *btc]]),
        ("bar_by_bar", [[b] for b in _time_order(btc, eth)]),
    ]
    for seed in range(4):
        rng = random.Random(seed)
        cases.append((f"random_{seed}", _chunks(_interleave(btc, eth, rng), rng, 1 + 50 * seed)))
    rng = random.Random(99)
    skew = [*_interleave(btc[:700], eth[:50], rng), *_interleave(btc[700:], eth[50:], rng)]
    cases.append(("eth_lagging", _chunks(skew, rng, 300)))
    return cases


@pytest.mark.parametrize(("label", "batches"), _orders(), ids=[c[0] for c in _orders()])
def test_output_independent_of_interleaving_and_batching(
    label: str, batches: list[list[Bar]], reference_run: list[tuple[str, int, str]]
) -> None:
    engine = FeatureEngine(FeatureSet(PAIR_SPECS), [ETH, BTC])
    assert engine.align
    assert _key(_run(engine, batches)) == reference_run, label


def test_pair_value_equals_standalone_on_aligned_bars(
    reference_run: list[tuple[str, int, str]],
) -> None:
    btc, eth = real_bars(BTC)[:N], real_bars(ETH)[:N]
    out = _run(FeatureEngine(FeatureSet(PAIR_SPECS), [BTC, ETH]), [list(eth), list(btc)])
    assert _key(out) == reference_run
    corr = RollingCorr(BTC, 60)
    want = np.array([corr.update(e, b) for e, b in zip(eth, btc, strict=True)])
    got = {s: np.array([v for b, v in out if b.symbol == s]) for s in (BTC, ETH)}
    np.testing.assert_array_equal(got[ETH][:, 1], want)
    assert np.isfinite(want[60:]).all() and np.isnan(want[:60]).all()
    assert np.isnan(got[BTC][:, 1]).all()  # the reference is not paired with itself
    c = np.array([b.close for b in eth])
    np.testing.assert_allclose(got[ETH][1:, 0], np.log(c[1:] / c[:-1]), rtol=1e-9)


def test_gap_in_reference_gives_nan_for_that_bar() -> None:
    gap = 700
    btc, eth = list(real_bars(BTC)[:N]), list(real_bars(ETH)[:N])
    btc_gapped = btc[:gap] + btc[gap + 1 :]
    rng = random.Random(5)
    out = _run(
        FeatureEngine(FeatureSet(PAIR_SPECS), [BTC, ETH]),
        _chunks(_interleave(btc_gapped, eth, rng), rng, 64),
    )
    assert len(out) == 2 * N - 1
    eth_vals = np.array([v for b, v in out if b.symbol == ETH])
    assert [b.ts_event for b, _ in out if b.symbol == ETH] == [b.ts_event for b in eth]
    corr = RollingCorr(BTC, 60)
    refs: list[Bar | None] = [*btc[:gap], None, *btc[gap + 1 :]]
    want = np.array([corr.update(e, r) for e, r in zip(eth, refs, strict=True)])
    np.testing.assert_array_equal(eth_vals[:, 1], want)
    assert np.isnan(eth_vals[gap, 1])
    assert np.isfinite(eth_vals[gap - 1, 1]) and np.isfinite(eth_vals[gap + 1, 1])
    assert np.isfinite(eth_vals[gap, 0])  # ETH's own features are unaffected


def test_silent_symbol_holds_until_flush() -> None:
    btc = real_bars(BTC)[:300]
    engine = FeatureEngine(FeatureSet(PAIR_SPECS), [BTC, ETH])
    assert engine.update(btc) == []
    assert engine.held == 300
    out = engine.flush()
    assert [b for b, _ in out] == list(btc)
    assert engine.held == 0 and engine.flush() == []


def test_engine_snapshot_with_held_bars_resumes_identically(
    reference_run: list[tuple[str, int, str]],
) -> None:
    btc, eth = real_bars(BTC)[:N], real_bars(ETH)[:N]
    rng = random.Random(11)
    batches = _chunks(_interleave(btc, eth[:1000], rng), rng, 80) + _chunks(eth[1000:], rng, 80)
    for cut in (1, len(batches) // 3, len(batches) // 2):
        engine = FeatureEngine(FeatureSet(PAIR_SPECS), [BTC, ETH])
        out: list[Out] = []
        for batch in batches[:cut]:
            out += engine.update(batch)
        held = engine.held
        engine = pickle.loads(pickle.dumps(copy.deepcopy(engine)))
        assert engine.held == held
        out += _run(engine, batches[cut:])
        assert _key(out) == reference_run


# --- plausibility: one hostile bar never moves the sequence or the price reference ---------


def _far_future(b: Bar) -> Bar:
    y2100 = 4_102_444_800 * 10**9
    return msgspec.structs.replace(b, ts_event=y2100, ts_init=y2100 + 60 * 10**9)


@pytest.mark.parametrize("pair", [False, True])
def test_far_future_bar_does_not_poison_the_day(pair: bool) -> None:
    """The reproduction: one bar stamped 2100-01-01 inside a real day used to make every later
    real bar "out-of-order"; now all 1,440 real bars are processed and only it is rejected."""
    fs = FeatureSet(PAIR_SPECS if pair else ["log_returns_1", "rsi_14"])
    btc, eth = real_bars(BTC)[:1440], real_bars(ETH)[:1440]
    hostile = _far_future(btc[600])
    stream = [*_time_order(btc[:601], eth[:601]), hostile, *_time_order(btc[601:], eth[601:])]
    engine = FeatureEngine(fs, [BTC, ETH])
    out = _run(engine, _chunks(stream, random.Random(5), 300))
    clean = _run(FeatureEngine(fs, [BTC, ETH]), [_time_order(btc, eth)])
    rejected = [(b, v) for b, v in out if type(v) is str]
    assert [b for b, _ in rejected] == [hostile]
    assert str(rejected[0][1]).startswith("implausible time")
    assert _key([r for r in out if type(r[1]) is not str]) == _key(clean)
    assert engine.rejected == {BTC: 1}


def test_price_spike_rejected_and_unconfirmed_candidate_rejected_at_flush() -> None:
    fs = FeatureSet(["log_returns_1"])
    btc = list(real_bars(BTC)[:300])
    spike = msgspec.structs.replace(
        btc[100],
        open=btc[100].open * 10,
        high=btc[100].high * 10,
        low=btc[100].low * 10,
        close=btc[100].close * 10,
    )
    out = FeatureEngine(fs, [BTC]).update([*btc[:100], spike, *btc[101:]])
    assert [b for b, v in out if type(v) is str] == [spike]
    assert len(out) == 300
    # held candidates are rejected at flush when nothing confirms or refutes them
    engine = FeatureEngine(fs, [BTC])
    out = engine.update([*btc[:100], spike])
    assert len(out) == 100
    assert [b for b, v in engine.flush() if type(v) is str] == [spike]
