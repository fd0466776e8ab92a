"""The look-ahead guard and warm-up report: every built-in column of the "full" set passes on real
bars, deliberately leaky user features (tests/offline/leaky_features.py) are flagged, honest ones
pass, and the warm-up report finds windowed / recursive / cumulative behaviour."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest

from offline.lookahead import (
    align_refs,
    bar_frame,
    check_lookahead,
    cut_points,
    load_target,
    main,
    same_bits,
)
from offline.warmup import check_warmup
from operators.features import FeatureSet, feature_set
from tests.offline import leaky_features as lf
from tests.operators.opdata import real_bars
from tests.paths import BARS_2024_01

LEAKY = "tests.offline.leaky_features"


@pytest.fixture(autouse=True)
def _clear_class_state() -> Iterator[None]:
    """The leaky classes keep class-level state; start every test from empty."""
    for cls in (lf.SharedMean, lf.SharedWindow):
        cls._seen.clear()
    lf.FutureCache._next_close.clear()
    yield


def eth(n: int) -> list:
    return list(real_bars("ETHUSDT")[:n])


def btc_refs() -> dict[str, tuple]:
    return {"BTCUSDT": real_bars("BTCUSDT")}


# --- look-ahead: built-ins ---


def test_full_set_has_no_lookahead_on_real_bars() -> None:
    fs = feature_set("full")
    rep = check_lookahead(fs, eth(3000), btc_refs(), cuts=40, seed=7)
    assert [c.column for c in rep.columns] == fs.columns and len(fs.columns) == 55
    bad = [(c.column, c.first, c.shared_first) for c in rep.columns if not c.ok]
    assert rep.ok, bad
    assert max(rep.cuts) == 2999 and sum(t > 1500 for t in rep.cuts) >= 15
    assert {0, 1, 2, 1439, 1440, 1441} <= set(rep.cuts)
    for c in rep.columns:
        assert c.checked == len(rep.cuts)
        if not c.column.startswith("trade_"):  # no trade data in klines: NaN throughout
            assert c.finite >= 10, c  # garch, coint (1440-bar warm-up) and pairs really checked


def test_spec_with_alias_and_parts() -> None:
    rep = check_lookahead("ewma_vol_20 as fast", eth(400), cuts=10)
    assert [c.column for c in rep.columns] == ["fast"] and rep.ok
    rep = check_lookahead("time_of_day[sin]", eth(100), cuts=5)
    assert [c.column for c in rep.columns] == ["time_of_day_sin"] and rep.ok


def test_cut_points_cover_boundaries_and_are_seeded() -> None:
    a = cut_points(1000, [0, 19, None, 200], extra=30, seed=1)
    assert {0, 1, 2, 3, 4, 18, 19, 20, 199, 200, 201, 999} <= set(a)
    assert len(a) == 12 + 30 and a == sorted(set(a))
    assert a == cut_points(1000, [0, 19, None, 200], extra=30, seed=1)
    assert a != cut_points(1000, [0, 19, None, 200], extra=30, seed=2)
    assert cut_points(10, [50], extra=100, seed=0) == list(range(10))


def test_same_bits_is_exact_and_nan_equal() -> None:
    a = np.array([1.0, math.nan, 0.0, 1.0])
    b = np.array([1.0, -math.nan, -0.0, np.nextafter(1.0, 2.0)])
    assert same_bits(a, b).tolist() == [True, True, False, False]


# --- look-ahead: leaky user features are flagged ---


@pytest.mark.parametrize("fn", ["centred_mean", "full_norm"])
def test_leaky_batch_features_are_flagged(fn: str) -> None:
    rep = check_lookahead(f"{LEAKY}:{fn}", eth(500), cuts=20)
    (col,) = rep.columns
    assert rep.kind == "batch" and not rep.ok
    assert col.violations >= 10
    t, full, trunc = col.first[0]
    assert full != trunc and t <= 4  # caught at the very first cuts


def test_leak_is_reported_per_column() -> None:
    rep = check_lookahead(f"{LEAKY}:next_return", eth(300), cuts=20)
    assert rep.column("ret").violations == 0
    nxt = rep.column("next_ret")
    # the truncated frame has no next bar: NaN where the full run has the future return
    assert nxt.violations == nxt.checked - 1  # all but the last bar, which is NaN in both
    assert all(math.isnan(trunc) and math.isfinite(full) for _, full, trunc in nxt.first)


def test_class_level_shared_list_is_flagged() -> None:
    rep = check_lookahead(f"{LEAKY}:SharedMean", eth(300), cuts=10)
    (col,) = rep.columns
    assert rep.kind == "stream" and col.violations > 0 and col.shared_state > 0


def test_interleaving_catches_what_truncation_cannot() -> None:
    rep = check_lookahead(f"{LEAKY}:SharedWindow(n=5)", eth(300), cuts=10)
    (col,) = rep.columns
    assert col.violations == 0  # a fresh instance alone sees the right last-5 window
    assert col.shared_state > 0 and not rep.ok
    assert col.shared_first is not None and col.shared_first[0] == 4  # first non-NaN bar


def test_module_level_cache_of_future_values_is_flagged() -> None:
    rep = check_lookahead(lf.FutureCache, eth(300), cuts=10)
    (col,) = rep.columns
    assert col.violations > 0 and math.isnan(col.first[0][1])  # full run: not known yet


# --- look-ahead: honest user features pass ---


def test_honest_user_features_pass() -> None:
    bars = eth(500)
    rep = check_lookahead(f"{LEAKY}:trailing_mean(n=20)", bars, cuts=20)
    assert rep.ok and rep.columns[0].column == "trailing_mean_20"
    rep = check_lookahead(f"{LEAKY}:RangeMean", bars, cuts=20, kwargs={"n": 7})
    assert rep.ok and [c.column for c in rep.columns] == ["range_mean_7_mean", "range_mean_7_last"]
    assert rep.columns[0].finite == len(rep.cuts) - 6  # cuts 0..5 are warm-up


def test_pair_features_get_reference_bars() -> None:
    bars = eth(400)
    for feat, warmup in (
        (f"{LEAKY}:RefRatio", 0),
        (f"{LEAKY}:ref_spread", 0),
        ("corr_btcusdt_30", 30),
    ):
        rep = check_lookahead(feat, bars, btc_refs(), cuts=15)
        assert rep.ok, feat
        assert rep.columns[0].finite == sum(t >= warmup for t in rep.cuts), feat


def test_bar_frame_has_reference_columns_with_nulls_for_gaps() -> None:
    bars = eth(5)
    ref = list(real_bars("BTCUSDT")[:5])
    del ref[2]
    df = bar_frame(bars, align_refs(bars, {"BTCUSDT": ref}))
    assert df["close"].to_list() == [b.close for b in bars]
    assert df["btcusdt_close"].null_count() == 1 and df["btcusdt_close"][2] is None


def test_bad_targets_are_reported() -> None:
    with pytest.raises(ValueError, match="cannot load"):
        load_target("tests.offline.no_such_module:f")
    with pytest.raises(ValueError, match="literal keywords"):
        load_target(f"{LEAKY}:RangeMean(7)")
    with pytest.raises(ValueError, match="unknown feature"):
        load_target("no_such_family_3")
    with pytest.raises(ValueError, match="rows"):
        check_lookahead(lambda df: pl.Series([1.0, 2.0]), eth(50), cuts=3)


# --- warm-up ---


def test_warmup_report_on_real_bars() -> None:
    fs = FeatureSet(
        [
            "sma_20",
            "ema_12",
            "obv",
            "log_returns_1",
            "time_of_day[sin]",
            "ewma_vol_20 as fast",
            "garch_1440_0p05_0p94",
            "coint_btcusdt_1440",
        ]
    )
    rep = check_warmup(fs, eth(4000), btc_refs(), starts=3)
    assert rep.starts == [667, 1333, 2000]
    w = {c.column: c for c in rep.columns}
    # windowed: exactly the window, bit for bit
    for col, k in (("sma_20", 19), ("log_returns_1", 1), ("time_of_day_sin", 0)):
        assert (w[col].effective, w[col].exact, w[col].declared) == (k, k, k), w[col]
        assert not w[col].longer
    assert w["coint_btcusdt_1440_z"].effective == w["coint_btcusdt_1440_z"].declared == 1439
    # recursive: finite, longer than declared; bit-identity takes longer still
    for col in ("ema_12", "fast", "garch_1440_0p05_0p94"):
        c = w[col]
        assert c.effective is not None and c.declared is not None
        assert c.declared < c.effective <= (c.exact or 10**9), c
        assert c.longer and c.worst_rel > 1e-6
    assert w["garch_1440_0p05_0p94"].effective > 1500
    # cumulative: never
    assert w["obv"].effective is None and w["obv"].longer and w["obv"].worst_rel > 1e-3


def test_warmup_of_batch_feature() -> None:
    rep = check_warmup(f"{LEAKY}:trailing_mean(n=10)", eth(600), starts=2)
    (c,) = rep.columns
    assert c.declared is None and c.effective == 9 and not c.longer


# --- CLI entry point ---


def test_main_exit_codes_and_tables(capsys: pytest.CaptureFixture[str]) -> None:
    data = str(BARS_2024_01)
    assert main("rsi_14", data, "ETHUSDT", None, 800, 10, 0) == 0
    out = capsys.readouterr().out
    assert "look-ahead: rsi_14" in out and "warm-up: rsi_14" in out
    assert main(f"{LEAKY}:centred_mean", data, "ETHUSDT", None, 300, 5, 0) == 1
    assert "LOOK-AHEAD" in capsys.readouterr().out
    # a pair feature loads its reference even without --ref-symbol
    assert main("beta_btcusdt_30", data, "ETHUSDT", None, 300, 5, 0) == 0
    out = capsys.readouterr().out
    assert "refs" in out and "BTCUSDT" in out and "no look-ahead" in out
    assert main("nope_1", data, "ETHUSDT", "BTCUSDT", 300, 5, 0) == 2
    assert main("rsi_14", data, "XRPUSDT", None, 300, 5, 0) == 2
    assert "no bars for XRPUSDT" in capsys.readouterr().out
