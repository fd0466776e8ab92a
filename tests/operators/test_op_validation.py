"""decode_batch turns every bad payload into a DeadLetter with a reason (payload kept) and its
origin; the stateless rules of a plausible trade and bar (docs/validation.md)."""

from __future__ import annotations

import json
import math

import msgspec
import numpy as np
import pytest

from operators.validation import (
    I64,
    LIMITS,
    Limits,
    TimeWindow,
    bar_problem,
    dead_letter_for,
    decode_batch,
    trade_problem,
    validate_batch,
)
from schemas.codec import decode, encode
from schemas.messages import NS_PER_MINUTE, Bar, DeadLetter, Trade
from tests.operators.opdata import real_bars, real_trades

UNIVERSE = frozenset({"BTCUSDT", "ETHUSDT"})
TS = 1_723_161_600_000_000_000


def _trade_dict(**over: object) -> dict[str, object]:
    d: dict[str, object] = {
        "symbol": "BTCUSDT",
        "ts_event": TS,
        "ts_init": TS + 5,
        "trade_id": 42,
        "price": 61_000.5,
        "size": 0.01,
        "aggressor": "buy",
    }
    d.update(over)
    return d


def _raw(d: dict[str, object]) -> bytes:
    return json.dumps(d).encode()


def _one_dead(raw: bytes | str, cls: type = Trade) -> DeadLetter:
    good, dead = decode_batch(
        [("key-1", raw, 777, "md.trades.v1/0/9")], cls, UNIVERSE, "md.trades.v1"
    )
    assert good == []
    (dl,) = dead
    assert dl.source == "md.trades.v1" and dl.key == "key-1" and dl.ts_init == 777
    assert dl.origin == "md.trades.v1/0/9"
    return dl


def test_real_trades_and_bars_pass() -> None:
    trades = list(real_trades("BTCUSDT")[:500]) + list(real_trades("ETHUSDT")[:500])
    raws = [(t.symbol, encode(t), i, f"s/0/{i}") for i, t in enumerate(trades)]
    good, dead = decode_batch(raws, Trade, UNIVERSE, "src")
    assert dead == [] and good == trades
    bars = list(real_bars("ETHUSDT")[:500])
    raws2 = [(b.symbol, encode(b).decode(), 1, f"s/0/{i}") for i, b in enumerate(bars)]
    good, dead = decode_batch(raws2, Bar, UNIVERSE, "s")
    assert dead == [] and good == bars
    # str payloads work as well as bytes
    assert decode_batch([("k", json.dumps(_trade_dict()), 1, "o")], Trade, UNIVERSE, "s")[0]


@pytest.mark.parametrize(
    ("raw", "reason_has"),
    [
        (b'{"symbol": "BTCUSDT", "ts_event":', "malformed"),
        (b"not json at all", "malformed"),
        (b"[1, 2, 3]", "malformed"),
        (_raw(_trade_dict(price="61000.5")), "Expected `float`, got `str`"),
        (_raw(_trade_dict(ts_event=1.5)), "Expected `int`"),
        (_raw(_trade_dict(aggressor="hold")), "aggressor"),
        (_raw({**_trade_dict(), "extra": 1}), "unknown field `extra`"),
        (_raw({k: v for k, v in _trade_dict().items() if k != "price"}), "missing required"),
        (
            b'{"symbol":"BTCUSDT","ts_event":1,"ts_init":1,"trade_id":1,"price":1e999,'
            b'"size":1,"aggressor":"buy"}',
            "out of range",
        ),
    ],
)
def test_undecodable_payloads_become_dead_letters(raw: bytes, reason_has: str) -> None:
    dl = _one_dead(raw)
    assert dl.reason.startswith("malformed: ")
    assert reason_has in dl.reason
    assert dl.payload == raw.decode()  # the exact payload is kept
    assert dl.ts_event == 0  # nothing trustworthy to report


def test_non_utf8_payload_kept_as_repr() -> None:
    raw = b"\xff\xfe{garbage"
    dl = _one_dead(raw)
    assert dl.reason.startswith("malformed")
    assert dl.payload == repr(raw)


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"price": -1.0}, "bad price -1.0"),
        ({"price": 0.0}, "bad price 0.0"),
        ({"size": 0.0}, "bad size 0.0"),
        ({"size": -0.5}, "bad size -0.5"),
        ({"symbol": "DOGEUSDT"}, "unknown symbol 'DOGEUSDT'"),
        ({"ts_event": 0}, "bad ts_event 0"),
        ({"price": 1e300}, "price 1e+300 outside [1e-12, 1e+09]"),
        ({"price": 1e-13}, "price 1e-13 outside"),
        ({"size": 1e13}, "size 10000000000000.0 above 1e+12"),
        ({"ts_init": -1}, "bad ts_init -1"),
        ({"trade_id": 2**63}, "bad trade_id"),
    ],
)
def test_invalid_trades_become_dead_letters(over: dict[str, object], reason: str) -> None:
    raw = _raw(_trade_dict(**over))
    dl = _one_dead(raw)
    assert dl.reason.startswith(reason)
    assert dl.payload == raw.decode()
    assert dl.ts_event == _trade_dict(**over)["ts_event"]


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_prices_and_sizes(bad: float) -> None:
    # JSON cannot carry inf/nan (see the 1e999 case above), but decoded messages can
    t = Trade(**_trade_dict(price=bad))  # type: ignore[arg-type]
    assert trade_problem(t, UNIVERSE) == f"bad price {bad!r}"
    t = Trade(**_trade_dict(size=bad))  # type: ignore[arg-type]
    assert trade_problem(t, UNIVERSE) == f"bad size {bad!r}"


def test_good_and_bad_mixed_keep_order_and_nothing_lost() -> None:
    payloads = [
        _raw(_trade_dict(trade_id=1)),
        b"{",
        _raw(_trade_dict(trade_id=2, price=0.0)),
        _raw(_trade_dict(trade_id=3, symbol="ETHUSDT")),
        _raw(_trade_dict(trade_id=4, symbol="XRPUSDT")),
    ]
    raws = [(f"k{i}", p, i, f"src/0/{i}") for i, p in enumerate(payloads)]
    good, dead = decode_batch(raws, Trade, UNIVERSE, "src")
    assert [t.trade_id for t in good] == [1, 3]
    assert [d.key for d in dead] == ["k1", "k2", "k4"]
    assert [d.ts_init for d in dead] == [1, 2, 4]
    assert [d.origin for d in dead] == ["src/0/1", "src/0/2", "src/0/4"]
    assert len(good) + len(dead) == len(payloads)
    assert [d.payload for d in dead] == [payloads[i].decode() for i in (1, 2, 4)]


def _bar(**over: object) -> Bar:
    d: dict[str, object] = {
        "symbol": "BTCUSDT",
        "ts_event": TS,
        "ts_init": TS + NS_PER_MINUTE,
        "open": 100.0,
        "high": 102.0,
        "low": 99.0,
        "close": 101.0,
        "volume": 3.0,
    }
    d.update(over)
    return Bar(**d)  # type: ignore[arg-type]


def test_real_bars_have_no_problem() -> None:
    for sym in ("BTCUSDT", "ETHUSDT"):
        assert all(bar_problem(b, UNIVERSE) is None for b in real_bars(sym))


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"low": 100.5}, "inconsistent OHLC (low/high do not bound open/close)"),  # low > open
        ({"low": 101.5, "high": 103.0}, "inconsistent OHLC"),  # low > both
        ({"high": 100.5}, "inconsistent OHLC"),  # high < close
        ({"high": 98.0, "low": 97.0}, "inconsistent OHLC"),
        ({"open": 0.0}, "bad open 0.0"),
        ({"close": -1.0}, "bad close -1.0"),
        ({"high": math.inf}, "bad high inf"),
        ({"low": math.nan}, "bad low nan"),
        ({"volume": -1.0}, "bad volume -1.0"),
        ({"volume": math.nan}, "bad volume nan"),
        ({"symbol": "FOO"}, "unknown symbol 'FOO'"),
        ({"ts_event": 0}, "bad ts_event 0"),
        ({"ts_event": -NS_PER_MINUTE}, "bad ts_event"),
        ({"ts_event": 2**63}, "bad ts_event"),
        ({"ts_init": 2**64}, "bad ts_init"),
        ({"interval_ns": 0}, "bad interval_ns 0 (want 60000000000)"),
        ({"interval_ns": 2 * NS_PER_MINUTE}, "bad interval_ns"),
        ({"ts_event": TS + 1_000_000_000}, "ts_event 1723161601000000000 off the bar grid"),
        ({"open": 1e300, "high": 1e300, "low": 1e300, "close": 1e300}, "open 1e+300 outside"),
        ({"high": 2e9}, "high 2000000000.0 outside"),
        ({"volume": 1e13}, "volume 10000000000000.0 above"),
        ({"buy_volume": -1.0}, "bad buy_volume -1.0"),
        ({"n_trades": -1}, "bad n_trades -1"),
    ],
)
def test_bar_problem(over: dict[str, object], reason: str) -> None:
    problem = bar_problem(_bar(**over), UNIVERSE)
    assert problem is not None and problem.startswith(reason)


def test_bar_problem_accepts_edge_cases() -> None:
    assert bar_problem(_bar(volume=0.0), UNIVERSE) is None  # no trades in the minute
    assert bar_problem(_bar(open=99.0, high=99.0, low=99.0, close=99.0), UNIVERSE) is None


def test_inconsistent_bar_payload_dead_lettered() -> None:
    raw = encode(_bar(low=101.5))
    good, dead = decode_batch([("BTCUSDT", raw, 3, "md.bars.v1/1/5")], Bar, UNIVERSE, "md.bars.v1")
    assert good == []
    assert dead[0].reason.startswith("inconsistent OHLC") and dead[0].payload == raw.decode()
    assert dead[0].ts_event == TS and dead[0].source == "md.bars.v1"


def test_dead_letter_for_keeps_the_message() -> None:
    t = real_trades("ETHUSDT")[0]
    dl = dead_letter_for(t, "bars.late", "late: bar already closed", "bars:ETHUSDT:1")
    assert (dl.source, dl.reason, dl.key) == ("bars.late", "late: bar already closed", "ETHUSDT")
    assert dl.origin == "bars:ETHUSDT:1"
    assert (dl.ts_event, dl.ts_init) == (t.ts_event, t.ts_init)
    assert decode(dl.payload, Trade) == t
    assert msgspec.json.decode(encode(dl), type=DeadLetter) == dl


def test_null_payload_becomes_dead_letter_instead_of_raising() -> None:
    good, dead = decode_batch(
        [("k0", _raw(_trade_dict()), 1, "t/0/0"), ("k1", None, 2, "t/0/1")],
        Trade,
        UNIVERSE,
        "md.trades.v1",
    )
    assert len(good) == 1
    assert [d.key for d in dead] == ["k1"] and dead[0].reason == "empty payload"
    assert dead[0].origin == "t/0/1"


def _independent_bar_ok(b: Bar, universe: frozenset[str]) -> bool:
    prices = (b.open, b.high, b.low, b.close)
    return (
        b.symbol in universe
        and all(math.isfinite(p) and p > 0 for p in prices)
        and math.isfinite(b.volume)
        and b.volume >= 0
        and b.low <= min(b.open, b.close)
        and b.high >= max(b.open, b.close)
        and all(LIMITS.min_price <= p <= LIMITS.max_price for p in prices)
        and b.volume <= LIMITS.max_size
        and 0 < b.ts_event < 2**63
        and b.ts_event % NS_PER_MINUTE == 0
        and b.interval_ns == NS_PER_MINUTE
    )


def test_bar_problem_agrees_with_independent_predicate() -> None:
    """Property: bar_problem(b) is None exactly when every documented rule holds (the fast path
    and the detailed checks agree), over a grid heavy in edge values."""
    rng = np.random.default_rng(0)
    specials = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e300, *[99.0, 100.0, 101.0, 102.0] * 4]
    n_ok = 0
    for _ in range(40_000):
        o, h, lo, c = (float(rng.choice(specials)) for _ in range(4))
        vol = float(rng.choice([math.nan, math.inf, -0.5, 0.0, 3.0]))
        b = _bar(
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=vol,
            symbol=str(rng.choice(["BTCUSDT", "BTCUSDT", "BTCUSDT", "XRPUSDT"])),
            ts_event=int(rng.choice([TS, TS, TS, 0, -5, TS + 1, 2**63 - 1])),
            interval_ns=int(rng.choice([NS_PER_MINUTE, NS_PER_MINUTE, 0, 1])),
        )
        ok = _independent_bar_ok(b, UNIVERSE)
        problem = bar_problem(b, UNIVERSE)
        assert (problem is None) == ok, (b, problem)
        n_ok += ok
    assert n_ok > 50


def test_huge_ints_decode_but_are_dead_lettered_with_safe_times() -> None:
    """msgspec decodes ints beyond int64; they must not reach ClickHouse (Int64/DateTime64)."""
    for ts in (2**63, 2**64 + 5, 10**30):
        raw = _raw(_trade_dict(ts_event=ts))
        dl = _one_dead(raw)
        assert dl.reason.startswith(f"bad ts_event {ts}") and dl.payload == raw.decode()
        assert dl.ts_event == 0  # the raw value is in the payload; the column stays valid
    bar = json.dumps({**msgspec.structs.asdict(_bar()), "ts_event": 2**63}).encode()
    dl = _one_dead(bar, Bar)
    assert dl.reason.startswith("bad ts_event") and dl.ts_event == 0


def test_limits_come_from_the_config() -> None:
    from schemas.config import BarsConfig, ValidationConfig

    lim = Limits.from_config(ValidationConfig(max_price=1e6), BarsConfig(interval_s=300))
    assert (lim.max_price, lim.interval_ns) == (1e6, 300 * 10**9)
    assert Limits.from_config(ValidationConfig(), BarsConfig()) == LIMITS
    five = _bar(interval_ns=300 * 10**9, ts_event=TS)
    assert bar_problem(five, UNIVERSE, lim) is None
    assert bar_problem(_bar(), UNIVERSE, lim) == "bad interval_ns 60000000000 (want 300000000000)"
    assert bar_problem(five, UNIVERSE) == "bad interval_ns 300000000000 (want 60000000000)"
    assert I64 == 2**63


def test_time_window_replay_range_and_wall_clock() -> None:
    w = TimeWindow(start=TS, end=TS + NS_PER_MINUTE)
    assert w.problem(TS) is None and w.problem(TS + NS_PER_MINUTE - 1) is None
    assert (
        w.problem(TS - 1)
        == w.problem(TS + NS_PER_MINUTE)
        == ("event time outside the replay range")
    )
    live = TimeWindow(now_ns=TS, max_ahead_ns=60 * 10**9)
    assert live.problem(TS + 60 * 10**9) is None
    assert live.problem(TS + 61 * 10**9) == "event time 61s ahead of the wall clock (limit 60s)"
    raws = [
        ("k", _raw(_trade_dict(ts_event=TS)), 1, "o/0/0"),
        ("k", _raw(_trade_dict(ts_event=TS + 3600 * 10**9)), 2, "o/0/1"),
    ]
    good, dead = decode_batch(raws, Trade, UNIVERSE, "o", LIMITS, live)
    assert len(good) == 1 and dead[0].reason.startswith("event time 3600s ahead")
    ok, bad = validate_batch(good, Trade, UNIVERSE, "f", LIMITS, TimeWindow(start=TS + 1))
    assert ok == [] and bad[0].reason == "event time outside the replay range"


def test_typed_rows_get_natural_key_origins_unique_within_a_batch() -> None:
    bad = _bar(open=-1.0)
    _, dead = validate_batch([bad, bad, _bar(), bad], Bar, UNIVERSE, "file:x.parquet")
    assert [d.origin for d in dead] == [
        f"file:x.parquet:BTCUSDT:{TS}",
        f"file:x.parquet:BTCUSDT:{TS}#1",
        f"file:x.parquet:BTCUSDT:{TS}#2",
    ]
