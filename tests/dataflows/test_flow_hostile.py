"""Property: whatever hostile messages are mixed into real bars (far future, off the grid, huge,
negative or non-numeric prices, price spikes, ints beyond int64, duplicates, rewinds), on one
worker or two, every real bar is processed, the fills equal a replay of the real bars alone, and
every hostile message is exactly one dead letter with a unique, reproducible origin."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from typing import Any

import msgspec
import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.flow import FlowSinks, build_flow
from dataflows.io.kafka import RawMessage
from schemas.codec import encode
from schemas.messages import Bar, DeadLetter, Fill, Trade
from tests.dataflows.flowkit import canonical, sma_config
from tests.operators.opdata import real_bars, real_trades

N = 1_500  # real bars per symbol
SYMS = ("BTCUSDT", "ETHUSDT")
Y2100 = 4_102_444_800 * 10**9
KINDS = (
    "far_future",
    "off_grid",
    "huge_price",
    "negative_price",
    "nan_price",
    "spike",
    "ts_2_63",
    "duplicate",
    "rewind",
)


@cache
def _good() -> tuple[Bar, ...]:
    """Real bars of both symbols in time order."""
    bars = [b for s in SYMS for b in real_bars(s)[:N]]
    return tuple(sorted(bars, key=lambda b: (b.ts_event, b.symbol)))


def _replace(b: Bar, **over: Any) -> Bar:
    return msgspec.structs.replace(b, **over)


def _hostile(kind: str, stream: tuple[Bar, ...], i: int, sym: str) -> bytes:
    """A hostile payload to insert before stream[i] (the next real bar of `sym` is at or after
    i, the previous ones before it)."""
    nxt = next(b for b in stream[i:] if b.symbol == sym)
    prev = [b for b in stream[:i] if b.symbol == sym]
    match kind:
        case "far_future":  # all at the same time: several of them never confirm each other
            return encode(_replace(nxt, ts_event=Y2100, ts_init=Y2100 + 60 * 10**9))
        case "off_grid":
            return encode(_replace(nxt, ts_event=nxt.ts_event + 10**9))
        case "huge_price":
            return encode(_replace(nxt, open=1e300, high=1e300, low=1e300, close=1e300))
        case "negative_price":
            return encode(_replace(nxt, low=-1.0))
        case "nan_price":  # JSON has no NaN: a string where a float belongs
            return encode(nxt).replace(b'"open":', b'"open":"NaN","x":')
        case "spike":
            k = 10.0
            return encode(
                _replace(
                    nxt, open=nxt.open * k, high=nxt.high * k, low=nxt.low * k, close=nxt.close * k
                )
            )
        case "ts_2_63":
            d = json.loads(encode(nxt))
            d["ts_event"] = 2**63
            return json.dumps(d).encode()
        case "duplicate":
            return encode(prev[-1])
        case "rewind":
            return encode(prev[-10])
    raise AssertionError(kind)


def _raws(items: list[tuple[bytes, str, int]]) -> list[RawMessage]:
    return [RawMessage(key, v, ts_ms, 0, off) for off, (v, key, ts_ms) in enumerate(items)]


def _run(raw: list[RawMessage], workers: int, batch: int) -> list[Any]:
    out: list[Any] = []
    cfg = sma_config(list(SYMS))
    src = TestingSource([raw[i : i + batch] for i in range(0, len(raw), batch)])
    flow = build_flow(
        cfg, src, FlowSinks(events=TestingSink(out)), kind="bars", source_name="md.bars.v1"
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return out


def _fills(out: list[Any]) -> list[bytes]:
    return sorted(canonical([m for m in out if type(m) is Fill]))


@cache
def _clean() -> tuple[list[bytes], Counter[tuple[str, int]]]:
    good = _good()
    out = _run(_raws([(encode(b), b.symbol, b.ts_event // 10**6) for b in good]), 1, 500)
    assert not [m for m in out if type(m) is DeadLetter]
    bars = Counter((m.symbol, m.ts_event) for m in out if type(m) is Bar)
    assert len(bars) == len(good)
    return _fills(out), bars


hostile_mix = st.lists(
    st.tuples(
        st.integers(min_value=20, max_value=2 * N - 40),  # position in the real stream
        st.sampled_from(KINDS),
        st.sampled_from(SYMS),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,  # no .hypothesis/ directory: the examples are derandomized anyway
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mix=hostile_mix, workers=st.sampled_from([1, 2]), batch=st.sampled_from([1, 97, 1000]))
def test_hostile_mixes_are_dead_lettered_and_real_bars_unaffected(
    mix: list[tuple[int, str, str]], workers: int, batch: int
) -> None:
    good = _good()
    at: dict[int, list[tuple[str, str]]] = {}
    for pos, kind, sym in mix:
        at.setdefault(pos, []).append((kind, sym))
    items: list[tuple[bytes, str, int]] = []
    hostile: list[bytes] = []
    for i, b in enumerate(good):
        for kind, sym in at.get(i, []):
            payload = _hostile(kind, good, i, sym)
            items.append((payload, sym, b.ts_event // 10**6))
            hostile.append(payload)
        items.append((encode(b), b.symbol, b.ts_event // 10**6))
    out = _run(_raws(items), workers, batch)

    fills, bars = _clean()
    assert Counter((m.symbol, m.ts_event) for m in out if type(m) is Bar) == bars  # all, once
    assert _fills(out) == fills  # as if the hostile messages had never been sent
    dead = [m for m in out if type(m) is DeadLetter]
    assert sorted(d.payload for d in dead) == sorted(p.decode() for p in hostile)
    assert len({d.origin for d in dead}) == len(dead)  # every dead letter its own row


def test_origins_identical_on_one_and_two_workers_and_reruns() -> None:
    good = _good()
    items = [(encode(b), b.symbol, b.ts_event // 10**6) for b in good]
    for i in (2000, 900, 401, 400, 100):  # from the back: indices stay those of `good`
        b = good[i]
        items.insert(i, (encode(_replace(b, ts_event=Y2100)), b.symbol, b.ts_event // 10**6))
        items.insert(i, (encode(good[i - 5]), good[i - 5].symbol, b.ts_event // 10**6))
        items.insert(i, (b"{bad", "BTCUSDT", b.ts_event // 10**6))
    raw = _raws(items)

    def dead(workers: int, batch: int) -> list[tuple[str, str, str]]:
        out = _run(raw, workers, batch)
        return sorted((d.origin, d.reason, d.payload) for d in out if type(d) is DeadLetter)

    one = dead(1, 250)
    assert len(one) == 15 and len({o for o, _, _ in one}) == 15
    assert any(o.startswith("features:") for o, _, _ in one)
    assert any(o.startswith("md.bars.v1/0/") for o, _, _ in one)
    assert dead(2, 77) == one
    assert dead(1, 250) == one


@pytest.mark.parametrize("workers", [1, 2])
def test_hostile_trades_never_move_the_bar_watermark(workers: int) -> None:
    """A far-future trade and a price spike among real trades: the bars equal the clean ones."""
    trades = list(real_trades("BTCUSDT")[:6000])
    t = trades[3000]
    far = Trade("BTCUSDT", 9 * 10**18, 9 * 10**18, 10**12, t.price, t.size, "buy")
    spike = Trade("BTCUSDT", t.ts_event, t.ts_init, 10**12 + 1, t.price * 1e3, 0.1, "sell")
    stream = [*trades[:3000], far, spike, *trades[3000:]]

    def run(ts: list[Trade]) -> list[Any]:
        out: list[Any] = []
        cfg = sma_config(["BTCUSDT", "ETHUSDT"])
        src = TestingSource([ts[i : i + 500] for i in range(0, len(ts), 500)])
        flow = build_flow(
            cfg, src, FlowSinks(events=TestingSink(out)), kind="trades", symbols=["BTCUSDT"]
        )
        if workers == 1:
            run_main(flow)
        else:
            cluster_main(flow, [], 0, worker_count_per_proc=workers)
        return out

    out, clean = run(stream), run(trades)
    assert [m for m in out if type(m) is Bar] == [m for m in clean if type(m) is Bar]
    dead = [m for m in out if type(m) is DeadLetter]
    assert [d.reason.split(":")[0] for d in dead] == ["implausible time", "implausible price"]
    assert [d.origin for d in dead] == ["bars:BTCUSDT:1", "bars:BTCUSDT:2"]


def test_live_clock_and_replay_range_bound_event_time() -> None:
    """The decoder, not the operators, reads the (injected) clock; a replay range dead-letters
    records whose payload time disagrees with the Kafka time range asked for."""
    good = list(_good()[:200])
    now = good[150].ts_event
    raw = _raws([(encode(b), b.symbol, b.ts_event // 10**6) for b in good])
    cfg = sma_config(list(SYMS))

    def run(**kw: Any) -> list[DeadLetter]:
        out: list[Any] = []
        flow = build_flow(
            cfg, TestingSource([raw]), FlowSinks(events=TestingSink(out)), kind="bars", **kw
        )
        run_main(flow)
        return [m for m in out if type(m) is DeadLetter]

    ahead = run(clock=lambda: now)  # 60 s allowed: the bars of one minute later still pass
    assert len(ahead) == sum(b.ts_event - now > 60 * 10**9 for b in good) > 0
    assert all(d.reason.startswith("event time") and "wall clock" in d.reason for d in ahead)
    rng = run(replay_range=(good[10].ts_event, good[190].ts_event))
    assert len(rng) == 20
    assert {d.reason for d in rng} == {"event time outside the replay range"}
    assert run(replay_range=(None, None)) == []
