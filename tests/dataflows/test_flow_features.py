"""The trading flow's features step on the real Jan-2024 BTCUSDT+ETHUSDT bars, with a set that
has pair features: one FeatureRow per bar equal to FeatureEngine run directly, the same on one
worker and two, and the strategy's orders and fills unchanged by the choice of feature set."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource

from dataflows.flow import FlowSinks, build_flow
from dataflows.io.files import FileSource
from operators.feature_engine import FeatureEngine
from operators.features import FeatureSet, feature_set
from schemas.config import Config
from schemas.messages import DeadLetter, FeatureRow, Fill, Order
from tests.dataflows.flowkit import canonical, run_flow, sma_config, streams
from tests.operators.opdata import SYMBOLS, real_bars
from tests.paths import BARS_2024_01

SET = "pairs"
SPECS = ["log_returns_1", "rsi_14", "corr_btcusdt_60", "coint_btcusdt_120"]


def _config(**over: Any) -> Config:
    return sma_config(list(SYMBOLS), **over)


def _pair_config() -> Config:
    return _config(features={"set": SET}, feature_sets={SET: SPECS})


def _run(cfg: Config, workers: int) -> list[Any]:
    return run_flow(
        cfg, FileSource(BARS_2024_01, list(SYMBOLS), batch_size=997), kind="bars", workers=workers
    )


@pytest.fixture(scope="module")
def pair_runs() -> dict[int, list[Any]]:
    cfg = _pair_config()
    return {w: _run(cfg, w) for w in (1, 2)}


@pytest.fixture(scope="module")
def core_run() -> list[Any]:
    cfg = _config()
    assert cfg.features.set == "core"
    return _run(cfg, 1)


def _rows_by_symbol(events: list[Any]) -> dict[str, list[FeatureRow]]:
    """Feature rows per symbol in emitted order (each symbol's stream is ordered; symbols may
    interleave differently across workers)."""
    out: dict[str, list[FeatureRow]] = defaultdict(list)
    for e in events:
        if type(e) is FeatureRow:
            out[e.symbol].append(e)
    return dict(out)


@pytest.fixture(scope="module")
def expected() -> dict[str, list[FeatureRow]]:
    """FeatureEngine run directly over the same bars, as FeatureRows."""
    fs = FeatureSet(SPECS, SET)
    engine = FeatureEngine(fs, list(SYMBOLS))
    bars = sorted((b for s in SYMBOLS for b in real_bars(s)), key=lambda b: (b.ts_event, b.symbol))
    out = engine.update(bars) + engine.flush()
    rows: dict[str, list[FeatureRow]] = defaultdict(list)
    for bar, v in out:
        assert not isinstance(v, str), v
        rows[bar.symbol].append(
            FeatureRow(bar.symbol, bar.ts_event, bar.ts_init, SET, fs.version, v)
        )
    return dict(rows)


@pytest.mark.parametrize("workers", [1, 2])
def test_feature_rows_equal_the_engine(
    pair_runs: dict[int, list[Any]], expected: dict[str, list[FeatureRow]], workers: int
) -> None:
    got = _rows_by_symbol(pair_runs[workers])
    assert sorted(got) == sorted(SYMBOLS)
    for sym in SYMBOLS:
        assert canonical(got[sym]) == canonical(expected[sym]), sym
    assert FeatureSet(SPECS).columns[2] == "corr_btcusdt_60"
    corr = [r.values[2] for r in expected["ETHUSDT"]]
    assert sum(c == c for c in corr) > 40_000  # the pair columns are really computed
    assert all(r.values[2] != r.values[2] for r in expected["BTCUSDT"])


@pytest.mark.parametrize("workers", [1, 2])
def test_one_feature_row_per_bar_with_the_set_version(
    pair_runs: dict[int, list[Any]], workers: int
) -> None:
    fs = feature_set(SET, {SET: SPECS})
    rows = [e for e in pair_runs[workers] if type(e) is FeatureRow]
    assert {(r.feature_set, r.version) for r in rows} == {(SET, fs.version)}
    assert {len(r.values) for r in rows} == {len(fs.columns)}
    counts = Counter((r.symbol, r.ts_event) for r in rows)
    bars = {(b.symbol, b.ts_event) for s in SYMBOLS for b in real_bars(s)}
    assert set(counts) == bars
    assert set(counts.values()) == {1}
    assert not [e for e in pair_runs[workers] if type(e) is DeadLetter]


def test_identical_across_workers(pair_runs: dict[int, list[Any]]) -> None:
    one, two = pair_runs[1], pair_runs[2]
    assert len(one) == len(two)
    assert sorted(canonical(one)) == sorted(canonical(two))
    (m1, a1), (m2, a2) = streams(one), streams(two)
    assert canonical(a1) == canonical(a2)  # the account's stream in the same order
    for sym in SYMBOLS:  # and each symbol's own market stream in the same order
        assert canonical([e for e in m1 if getattr(e, "symbol", None) == sym]) == canonical(
            [e for e in m2 if getattr(e, "symbol", None) == sym]
        )


def test_features_do_not_change_the_trading(
    pair_runs: dict[int, list[Any]], core_run: list[Any]
) -> None:
    def trading(events: list[Any]) -> list[bytes]:
        return sorted(canonical([e for e in events if type(e) is not FeatureRow]))

    fills = [e for e in core_run if type(e) is Fill]
    assert len(fills) > 100 and {f.symbol for f in fills} == set(SYMBOLS)
    assert any(type(e) is Order for e in core_run)
    assert trading(pair_runs[1]) == trading(core_run)
    core_rows = [e for e in core_run if type(e) is FeatureRow]
    assert {r.feature_set for r in core_rows} == {"core"}
    assert len(core_rows) == sum(1 for e in pair_runs[1] if type(e) is FeatureRow)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"features": {"set": "nosuch"}}, "unknown feature set 'nosuch'"),
        (
            {"features": {"set": SET}, "feature_sets": {SET: ["log_returns_1", "bogus_3"]}},
            "feature set 'pairs'.*unknown feature 'bogus_3'",
        ),
        ({"features": {"set": SET}, "feature_sets": {SET: ["rsi_0"]}}, "'pairs'.*RSI"),
        ({"features": {"set": SET}, "feature_sets": {SET: ["rsi", "rsi_14"]}}, "duplicate"),
        ({"features": {"set": SET}, "feature_sets": {SET: []}}, "'pairs'.*empty"),
        ({"features": {"set": "core"}, "feature_sets": {"core": ["rsi"]}}, "built in"),
        (
            {"features": {"set": SET}, "feature_sets": {SET: ["corr_solusdt_60"]}},
            r"reference symbol\(s\) \['SOLUSDT'\]",
        ),
    ],
)
def test_bad_feature_config_fails_before_running(over: dict[str, Any], match: str) -> None:
    cfg = _config(**over)  # the config itself is valid: the feature set is checked when built
    out: list[Any] = []
    with pytest.raises(ValueError, match=match):
        build_flow(
            cfg,
            TestingSource([list(real_bars("BTCUSDT")[:3])]),
            FlowSinks(events=TestingSink(out)),
            kind="bars",
        )
    assert out == []


def test_missing_reference_in_selected_symbols_fails_before_running() -> None:
    cfg = _pair_config()
    source = TestingSource([[b] for b in real_bars("ETHUSDT")[:3]])
    with pytest.raises(ValueError, match="BTCUSDT"):
        build_flow(cfg, source, FlowSinks(), kind="bars", symbols=["ETHUSDT"])
