"""BarBuilder: trades -> 1m bars in event time with a grace period, checked against Binance's own
klines for the real trade captures, and for order/batching invariance, lateness and duplicates."""

from __future__ import annotations

import itertools
import pickle

import msgspec
import numpy as np
import pytest

from operators.bars import BarBuilder
from operators.plausibility import Rules
from schemas.config import BarsConfig, ValidationConfig
from schemas.messages import NS_PER_MINUTE, NS_PER_SECOND, Bar, Trade
from tests.operators.opdata import SYMBOLS, klines, real_trades

GRACE = 2 * NS_PER_SECOND


def _build(trades: list[Trade] | tuple[Trade, ...], batch: int = 1_000) -> list[Bar]:
    bb = BarBuilder(trades[0].symbol, NS_PER_MINUTE, GRACE)
    bars: list[Bar] = []
    for i in range(0, len(trades), batch):
        out, rejects = bb.update(trades[i : i + batch])
        assert rejects == []
        bars += out
    bars += bb.flush()
    return bars


def _complete_minutes(trades: tuple[Trade, ...]) -> set[int]:
    """Minute opens strictly inside a capture window (windows: gaps > 60 s in trade time)."""
    ts = sorted(t.ts_event for t in trades)
    windows, lo = [], ts[0]
    for a, b in itertools.pairwise(ts):
        if b - a > 60 * NS_PER_SECOND:
            windows.append((lo, a))
            lo = b
    windows.append((lo, ts[-1]))
    out: set[int] = set()
    for lo, hi in windows:
        first, last = lo // NS_PER_MINUTE + 1, hi // NS_PER_MINUTE - 1
        out |= {m * NS_PER_MINUTE for m in range(first, last + 1)}
    return out


def test_bars_from_real_trades_equal_binance_klines() -> None:
    kl = klines()
    compared = 0
    for symbol in SYMBOLS:
        trades = real_trades(symbol)
        bars = _build(trades)
        starts = [b.ts_event for b in bars]
        assert starts == sorted(set(starts)), "bars out of order or repeated"
        complete = _complete_minutes(trades)
        assert complete, symbol
        by_start = {b.ts_event: b for b in bars}
        for start in sorted(complete):
            bar = by_start[start]  # every complete minute has trades in these liquid markets
            o, h, lo, c, v = kl[(symbol, start)]
            assert (bar.open, bar.high, bar.low, bar.close) == (o, h, lo, c), (symbol, start)
            assert bar.volume == v, (symbol, start, bar.volume, v)
            in_bar = [t for t in trades if start <= t.ts_event < start + NS_PER_MINUTE]
            assert bar.n_trades == len(in_bar)
            buy = sum(round(t.size * 1e8) for t in in_bar if t.aggressor == "buy") / 1e8
            assert bar.buy_volume == buy
            assert bar.symbol == symbol and bar.interval_ns == NS_PER_MINUTE
            assert bar.ts_init >= bar.ts_close
            compared += 1
    assert compared > 20


def _shuffled_within_grace(trades: list[Trade], rng: np.random.Generator) -> list[Trade]:
    """Arrival order = event time + uniform jitter in [0, grace): every trade then arrives no
    more than `grace` behind the running maximum event time, so none may be late."""
    jitter = rng.integers(0, GRACE, size=len(trades))
    order = np.argsort(np.array([t.ts_event for t in trades]) + jitter, kind="stable")
    out = [trades[i] for i in order]
    running = -1
    for t in out:
        assert t.ts_event > running - GRACE
        running = max(running, t.ts_event)
    return out


def _random_batches(trades: list[Trade], rng: np.random.Generator) -> list[list[Trade]]:
    out, i = [], 0
    while i < len(trades):
        n = int(rng.choice([1, 2, 7, 50, 333, 4_000]))
        out.append(trades[i : i + n])
        i += n
    return out


def _run_batches(symbol: str, batches: list[list[Trade]]) -> tuple[list[Bar], BarBuilder]:
    bb = BarBuilder(symbol, NS_PER_MINUTE, GRACE)
    bars: list[Bar] = []
    for batch in batches:
        out, rejects = bb.update(batch)
        assert rejects == []
        bars += out
    return bars + bb.flush(), bb


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_batch_boundaries_do_not_change_bars(symbol: str) -> None:
    trades = list(real_trades(symbol))
    expected = _build(trades, batch=len(trades))
    rng = np.random.default_rng(7)
    for _ in range(3):
        got, bb = _run_batches(symbol, _random_batches(trades, rng))
        assert got == expected  # every field, ts_init included
        assert bb.late == 0 and bb.duplicates == 0
        assert bb.bars_emitted == len(expected)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_arrival_order_within_grace_does_not_change_bars(symbol: str) -> None:
    trades = list(real_trades(symbol))
    expected = _build(sorted(trades, key=lambda t: (t.ts_event, t.trade_id)))
    rng = np.random.default_rng(11)
    for _ in range(4):
        arrival = _shuffled_within_grace(trades, rng)
        assert arrival != trades  # the jitter really reorders the stream
        got, bb = _run_batches(symbol, _random_batches(arrival, rng))
        assert got == expected  # every field: ts_init is the close deadline, not arrival-dependent
        assert bb.late == 0 and bb.duplicates == 0


def _trade(ts: int, trade_id: int, price: float = 100.0, size: float = 1.0) -> Trade:
    return Trade(
        symbol="BTCUSDT",
        ts_event=ts,
        ts_init=ts,
        trade_id=trade_id,
        price=price,
        size=size,
        aggressor="buy",
    )


def test_open_close_by_event_time_then_trade_id_not_arrival() -> None:
    m = NS_PER_MINUTE
    a = _trade(10 * NS_PER_SECOND, 5, price=1.0)
    b = _trade(10 * NS_PER_SECOND, 6, price=2.0)  # same time, larger id: after a
    c = _trade(50 * NS_PER_SECOND, 7, price=3.0)
    for order in ([a, b, c], [c, b, a], [b, c, a]):
        bb = BarBuilder("BTCUSDT", m, GRACE)
        bb.update(order)
        (bar,) = bb.flush()
        assert (bar.open, bar.high, bar.low, bar.close) == (1.0, 3.0, 1.0, 3.0)
        assert bar.volume == 3.0 and bar.n_trades == 3


def test_volume_is_summed_exactly() -> None:
    # 0.1 + 0.2 + ... in float drifts; the exchange's decimal sum does not
    sizes = [0.1, 0.2, 0.3, 0.00000001]
    assert sum(sizes) != 0.60000001
    bb = BarBuilder("BTCUSDT", NS_PER_MINUTE, GRACE)
    bb.update([_trade(i * NS_PER_SECOND, i, size=s) for i, s in enumerate(sizes)])
    (bar,) = bb.flush()
    assert bar.volume == 0.60000001
    assert bar.buy_volume == 0.60000001


def test_late_trade_rejected_counted_and_bar_not_reemitted() -> None:
    trades = real_trades("BTCUSDT")
    bb = BarBuilder("BTCUSDT", NS_PER_MINUTE, GRACE)
    bars, rejects = bb.update(trades)
    assert rejects == [] and bars
    first = bars[0]
    # a genuine (new id) trade inside the first, already emitted, minute
    late = msgspec.structs.replace(
        trades[0], ts_event=first.ts_event + 30 * NS_PER_SECOND, trade_id=10**15
    )
    out, rejects = bb.update([late])
    assert out == []
    assert len(rejects) == 1 and rejects[0][0] == late
    assert rejects[0][1].startswith("late")
    assert bb.late == 1 and bb.duplicates == 0
    rest = bb.flush()
    emitted = [(b.symbol, b.ts_event) for b in bars + rest]
    assert (first.symbol, first.ts_event) not in [(b.symbol, b.ts_event) for b in rest]
    assert len(emitted) == len(set(emitted))
    assert bb.bars_emitted == len(emitted)


def test_bucket_closes_exactly_at_end_plus_grace() -> None:
    m = NS_PER_MINUTE
    bb = BarBuilder("BTCUSDT", m, GRACE)
    assert bb.update([_trade(1, 1)]) == ([], [])
    # watermark one ns short of the deadline: still open, a trade for minute 0 is accepted
    assert bb.update([_trade(m + GRACE - 1, 2)]) == ([], [])
    assert bb.update([_trade(m - 1, 3)]) == ([], [])
    bars, rejects = bb.update([_trade(m + GRACE, 4)])  # reaches the deadline: minute 0 closes
    assert rejects == [] and [b.ts_event for b in bars] == [0]
    assert bars[0].n_trades == 2 and bars[0].ts_init == m + GRACE
    _, rejects = bb.update([_trade(m - 1, 5)])
    assert [r for _, r in rejects] == ["late: bar already closed"] and bb.late == 1
    assert bb.open_buckets == 1


def test_trade_beyond_grace_for_empty_minute_is_late() -> None:
    s = NS_PER_SECOND
    bb = BarBuilder("BTCUSDT", NS_PER_MINUTE, GRACE)
    bars, _ = bb.update([_trade(10 * s, 1), _trade(200 * s, 2)])
    assert [b.ts_event for b in bars] == [0]
    # minute [120 s, 180 s) had no trades; the watermark (200 s) is 18 s past its end + grace
    _, rejects = bb.update([_trade(150 * s, 3)])
    assert [r for _, r in rejects] == ["late: bar already closed"]
    assert bb.late == 1


def test_duplicate_trade_ids_rejected_and_counted() -> None:
    trades = list(real_trades("ETHUSDT")[:2_000])
    expected = _build(trades)
    dups = trades[100:110]
    bb = BarBuilder("ETHUSDT", NS_PER_MINUTE, 10 * NS_PER_MINUTE)  # long grace: nothing closes
    bars, rejects = bb.update(trades[:500] + dups + trades[500:])
    assert bars == []
    assert [t for t, _ in rejects] == dups
    assert all(r == "duplicate trade_id" for _, r in rejects)
    assert bb.duplicates == len(dups) and bb.late == 0

    # the duplicates changed nothing (ts_init differs only through the longer grace)
    def content(b: Bar) -> Bar:
        return msgspec.structs.replace(b, ts_init=0)

    assert [content(b) for b in bb.flush()] == [content(b) for b in expected]


def test_no_bar_emitted_twice_across_update_and_flush() -> None:
    trades = list(real_trades("BTCUSDT"))
    rng = np.random.default_rng(3)
    bb = BarBuilder("BTCUSDT", NS_PER_MINUTE, GRACE)
    emitted: list[Bar] = []
    # replay with a burst of re-sent old trades (new ids, old times) and a mid-stream flush
    for i, batch in enumerate(_random_batches(trades, rng)):
        resend = [
            msgspec.structs.replace(t, trade_id=t.trade_id + 10**12)
            for t in rng.choice(np.array(trades[: 1 + i * 50], dtype=object), size=3)
        ]
        out, _ = bb.update(batch + resend)
        emitted += out
        if i == 5:
            emitted += bb.flush()
    emitted += bb.flush()
    emitted += bb.flush()
    keys = [(b.symbol, b.ts_event) for b in emitted]
    assert len(keys) == len(set(keys))
    assert keys == sorted(keys)
    assert bb.bars_emitted == len(emitted)
    assert bb.late > 0


def test_flush_emits_open_buckets_and_later_trades_are_late() -> None:
    trades = real_trades("ETHUSDT")
    bb = BarBuilder("ETHUSDT", NS_PER_MINUTE, GRACE)
    bars, _ = bb.update(trades)
    open_before = bb.open_buckets
    assert open_before >= 1  # the last minute(s) wait for the watermark
    rest = bb.flush()
    assert len(rest) == open_before and bb.open_buckets == 0
    last = max(t.ts_event for t in trades)
    assert rest[-1].ts_event == last - last % NS_PER_MINUTE
    assert rest[-1].ts_init >= rest[-1].ts_close  # never before the bar's end
    assert bb.flush() == []
    # a trade for a flushed minute (and any earlier one) is late
    for ts in (last, rest[0].ts_event, bars[0].ts_event):
        out, rejects = bb.update([msgspec.structs.replace(trades[-1], ts_event=ts, trade_id=-ts)])
        assert out == [] and len(rejects) == 1 and rejects[0][1].startswith("late")
    assert bb.late == 3
    # a later minute is accepted and builds a fresh bar
    nxt = last - last % NS_PER_MINUTE + NS_PER_MINUTE
    _, rejects = bb.update([msgspec.structs.replace(trades[-1], ts_event=nxt, trade_id=1)])
    assert rejects == []
    (bar,) = bb.flush()
    assert bar.ts_event == nxt


def test_flush_on_empty_builder() -> None:
    bb = BarBuilder("BTCUSDT", NS_PER_MINUTE, 0)
    assert bb.flush() == []
    assert bb.update([]) == ([], [])


def test_zero_grace_closes_on_the_first_trade_of_the_next_minute() -> None:
    m = NS_PER_MINUTE
    bb = BarBuilder("BTCUSDT", m, 0)
    bars, _ = bb.update([_trade(5, 1), _trade(m - 1, 2), _trade(m, 3)])
    assert [b.ts_event for b in bars] == [0] and bars[0].n_trades == 2


@pytest.mark.parametrize(("interval", "grace"), [(0, 0), (-1, 0), (NS_PER_MINUTE, -1)])
def test_invalid_constructor_args_raise(interval: int, grace: int) -> None:
    with pytest.raises(ValueError):
        BarBuilder("BTCUSDT", interval, grace)


def test_pickle_mid_stream_then_continue_is_identical() -> None:
    """Snapshot/resume (recovery) of a builder yields exactly the uninterrupted output."""
    trades = list(real_trades("BTCUSDT"))
    expected = _build(trades, batch=len(trades))
    for cut in (1, 2_500, 3_144, 15_000):
        bb = BarBuilder("BTCUSDT", NS_PER_MINUTE, GRACE)
        first, _ = bb.update(trades[:cut])
        resumed = pickle.loads(pickle.dumps(bb))
        rest, rejects = resumed.update(trades[cut:])
        assert rejects == []
        assert first + rest + resumed.flush() == expected
        assert resumed.bars_emitted == len(expected)


# --- with the plausibility guard: a quarantined trade never moves the watermark -------------

RULES = Rules.for_trades(ValidationConfig(), BarsConfig())


def _guarded(trades: list[Trade], batch: int = 700) -> tuple[list[Bar], list[tuple[Trade, str]]]:
    bb = BarBuilder(trades[0].symbol, NS_PER_MINUTE, GRACE, RULES)
    bars: list[Bar] = []
    rejects: list[tuple[Trade, str]] = []
    for i in range(0, len(trades), batch):
        out, rej = bb.update(trades[i : i + batch])
        bars += out
        rejects += rej
    rejects += bb.flush_quarantine()
    assert bb.rejected == len(rejects)
    return bars + bb.flush(), rejects


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_guarded_builder_equals_plain_on_real_trades(symbol: str) -> None:
    trades = list(real_trades(symbol))
    bars, rejects = _guarded(trades)
    assert rejects == [] and bars == _build(trades)


def test_far_future_trade_does_not_make_real_trades_late() -> None:
    """The reproduction: a trade at ts_event ~9e18 used to build a bar in 2255, after which
    every real trade was late."""
    trades = list(real_trades("BTCUSDT")[:5000])
    t = trades[2000]
    hostile = Trade("BTCUSDT", 9 * 10**18, 9 * 10**18, 10**12, t.price, t.size, "buy")
    bars, rejects = _guarded([*trades[:2001], hostile, *trades[2001:]])
    assert [(r[0], r[1].split(":")[0]) for r in rejects] == [(hostile, "implausible time")]
    assert bars == _build(trades)
    assert max(b.ts_event for b in bars) < 2 * 10**18


def test_price_spike_trade_never_becomes_a_bars_high() -> None:
    trades = list(real_trades("ETHUSDT")[:3000])
    t = trades[1500]
    spike = Trade("ETHUSDT", t.ts_event, t.ts_init, 10**12, t.price * 1000, 0.01, "buy")
    bars, rejects = _guarded([*trades[:1501], spike, *trades[1501:]])
    assert [r[0] for r in rejects] == [spike] and rejects[0][1].startswith("implausible price")
    assert bars == _build(trades)


def test_guarded_builder_pickles_with_a_held_candidate() -> None:
    trades = list(real_trades("BTCUSDT")[:3000])
    hostile = Trade("BTCUSDT", 9 * 10**18, 9 * 10**18, 10**12, trades[0].price, 1.0, "buy")
    stream = [*trades[:1000], hostile, *trades[1000:]]
    expected = _guarded(stream, batch=len(stream))
    bb = BarBuilder("BTCUSDT", NS_PER_MINUTE, GRACE, RULES)
    first, rej1 = bb.update(stream[:1001])  # the hostile trade is held at the cut
    assert bb.guard is not None and len(bb.guard.held) == 1
    bb = pickle.loads(pickle.dumps(bb))
    rest, rej2 = bb.update(stream[1001:])
    assert (first + rest + bb.flush(), rej1 + rej2) == expected
