"""Feature specs, feature sets and their versions: the grammar (defaults, params, parts, aliases),
clear errors, a version hash that is stable across processes and changes with anything that can
change a value, the built-in sets, and a set equal column by column to its standalone features."""

from __future__ import annotations

import functools
import json
import os
import pickle
import subprocess
import sys
from typing import Any, ClassVar

import numpy as np
import pytest

from operators.features import BUILTIN_SETS, FAMILIES, FeatureSet, feature_set, registry, spec_name
from operators.features.base import fmt_param
from operators.features.registry import family_class, parse_spec
from operators.features.rsi import RSI
from tests.operators.featurecheck import stream
from tests.operators.opdata import real_bars
from tests.paths import ROOT

TCN12 = [
    "log_returns_1",
    "log_returns_5",
    "realized_vol_20",
    "ewma_vol_fast",
    "ewma_vol_slow",
    "momentum_20",
    "rsi_14",
    "volume_zscore",
    "spread",
    "sma_crossover",
    "time_of_day_sin",
    "day_of_week_sin",
]


# --- grammar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canon", "params"),
    [
        ("rsi", "rsi_14", (14,)),
        ("rsi_14", "rsi_14", (14,)),
        ("  RSI_14  ", "rsi_14", (14,)),
        ("macd", "macd_12_26_9", (12, 26, 9)),
        ("macd_5", "macd_5_26_9", (5, 26, 9)),  # trailing params take defaults
        ("sma_5_high", "sma_5_high", (5, "high")),
        ("sma_5_close", "sma_5", (5, "close")),  # the default field is left out of the name
        ("bbands_20_2", "bbands_20_2", (20, 2.0)),
        ("bbands_20_2p5", "bbands_20_2p5", (20, 2.5)),
        ("garch", "garch_1440_0p05_0p94", (1440, 0.05, 0.94)),
        ("corr", "corr_btcusdt_60", ("BTCUSDT", 60)),
        ("corr_ethusdt_30", "corr_ethusdt_30", ("ethusdt", 30)),
        ("candle", "candle", ()),
        ("obv", "obv", ()),
        ("log_returns", "log_returns_1", (1,)),
        ("sma_ratio", "sma_ratio_5_20", (5, 20)),  # longest family prefix wins over "sma"
    ],
)
def test_defaults_and_canonical_text(text: str, canon: str, params: tuple[Any, ...]) -> None:
    spec = parse_spec(text)
    assert spec.text == canon
    assert spec.params == params
    assert spec.parts is None and spec.alias is None
    assert parse_spec(canon).text == canon  # canonical text parses back to itself


def test_param_types_are_the_constructors() -> None:
    assert type(parse_spec("bbands_20_2").params[1]) is float
    assert type(parse_spec("rsi_7").params[0]) is int


def test_fmt_param_and_spec_name() -> None:
    assert fmt_param(14) == "14"
    assert fmt_param(-3) == "m3"
    assert fmt_param(2.0) == "2"
    assert fmt_param(0.05) == "0p05"
    assert fmt_param(-0.5) == "m0p5"
    assert fmt_param(-2.0) == "m2"
    assert fmt_param("BTCUSDT") == "btcusdt"
    with pytest.raises(TypeError):
        fmt_param(True)
    assert spec_name("macd", 12, 26, 9) == "macd_12_26_9"
    assert spec_name("garch", 1440, 0.05, 0.94) == "garch_1440_0p05_0p94"
    assert spec_name("obv") == "obv"


class _Shift:
    """A test family with negative and float parameters (no shipped family accepts negatives)."""

    family: ClassVar[str] = "shift"

    def __init__(self, k: int = -1, x: float = 0.5) -> None:
        self.k, self.x = k, x
        self.name = spec_name(self.family, k, x)
        self.columns = (self.name,)
        self.warmup = 0

    def update(self, bar: Any) -> float:
        return bar.close * self.x + self.k


@pytest.fixture
def shift_family(monkeypatch: pytest.MonkeyPatch) -> None:
    real = registry.family_class
    monkeypatch.setitem(FAMILIES, "shift", "unused:_Shift")
    monkeypatch.setattr(
        registry, "family_class", lambda fam: _Shift if fam == "shift" else real(fam)
    )


@pytest.mark.usefixtures("shift_family")
@pytest.mark.parametrize(
    ("text", "canon", "params"),
    [
        ("shift", "shift_m1_0p5", (-1, 0.5)),
        ("shift_m3", "shift_m3_0p5", (-3, 0.5)),
        ("shift_4_m0p25", "shift_4_m0p25", (4, -0.25)),
        ("shift_m4_m2", "shift_m4_m2", (-4, -2.0)),
        ("shift_0_1p5", "shift_0_1p5", (0, 1.5)),
    ],
)
def test_negative_and_float_params_round_trip(
    text: str, canon: str, params: tuple[Any, ...]
) -> None:
    spec = parse_spec(text)
    assert spec.params == params
    assert spec.text == canon == spec_name("shift", *params)
    assert parse_spec(canon) == spec


def test_parts_select_columns() -> None:
    fs = FeatureSet(["time_of_day[sin]", "macd[hist, line]", "stoch_14_3_3[d]"])
    # columns keep the family's order, whatever the order inside [...]
    assert fs.columns == [
        "time_of_day_sin",
        "macd_12_26_9_line",
        "macd_12_26_9_hist",
        "stoch_14_3_3_d",
    ]
    assert fs.spec_texts() == [
        "time_of_day[sin]",
        "macd_12_26_9[hist,line]",
        "stoch_14_3_3[d]",
    ]


def test_alias_renames() -> None:
    fs = FeatureSet(
        [
            "ewma_vol_20 as ewma_vol_fast",
            "time_of_day[cos] as tod",
            "macd as m",
            "RSI  AS  Strength",
        ]
    )
    assert fs.columns == ["ewma_vol_fast", "tod", "m_line", "m_signal", "m_hist", "strength"]
    assert fs.spec_texts() == [
        "ewma_vol_20 as ewma_vol_fast",
        "time_of_day[cos] as tod",
        "macd_12_26_9 as m",
        "rsi_14 as strength",
    ]
    assert fs.get("rsi_14") is not None and fs.get("strength") is None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("nosuch_5", "unknown feature"),
        ("", "bad feature spec"),
        ("rsi rsi", "bad feature spec"),
        ("rsi[", "bad feature spec"),
        ("rsi as 1x", "bad feature spec"),
        ("rsi_14_3", "at most 1 parameter"),
        ("obv_3", "at most 0 parameter"),
        ("macd_1_2_3_4", "at most 3 parameter"),
        ("sma", "missing parameter"),
        ("rsi_abc", "parameter n='abc' is not valid"),
        ("rsi_14.0", "parameter n='14.0' is not valid"),
        ("bbands_20_x", "parameter k='x' is not valid"),
        ("rsi_0", "RSI"),  # the family's own validation runs at parse time
        ("log_returns_m1", "horizon"),
        ("bbands_20_m2", "Bollinger"),
        ("corr_btcusdt_1", "window"),
        ("macd[foo]", r"no part\(s\) \['foo'\]"),
        ("rsi[sin]", r"no part\(s\)"),
        ("time_of_day[sin,tan]", r"\['tan'\]"),
    ],
)
def test_bad_specs_raise_clear_value_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_spec(text)
    with pytest.raises(ValueError, match=match):
        FeatureSet(["log_returns_1", text])


@pytest.mark.parametrize(
    "specs",
    [
        ["rsi", "rsi_14"],
        ["sma_5", "sma_10 as sma_5"],
        ["time_of_day", "time_of_day[sin]"],
        ["macd as x", "macd_5 as x"],
    ],
)
def test_duplicate_columns_rejected(specs: list[str]) -> None:
    with pytest.raises(ValueError, match="duplicate columns"):
        FeatureSet(specs, "dup")


def test_empty_unknown_and_clashing_sets() -> None:
    with pytest.raises(ValueError, match="empty"):
        FeatureSet([], "nothing")
    with pytest.raises(ValueError, match="unknown feature set 'nope'"):
        feature_set("nope")
    with pytest.raises(ValueError, match=r"unknown feature set 'nope'.*'mine'"):
        feature_set("nope", {"mine": ["rsi"]})
    with pytest.raises(ValueError, match=r"\['core'\] are built in"):
        feature_set("mine", {"core": ["rsi"], "mine": ["rsi"]})
    with pytest.raises(ValueError, match=r"feature set 'mine'.*bogus"):
        feature_set("mine", {"mine": ["rsi", "bogus_3"]})
    with pytest.raises(ValueError, match=r"feature set 'mine'.*empty"):
        feature_set("mine", {"mine": []})


def test_declared_and_builtin_sets() -> None:
    mine = feature_set("mine", {"mine": ["rsi", "sma_5"]})
    assert mine.name == "mine" and mine.columns == ["rsi_14", "sma_5"]
    core = feature_set("core", {"mine": ["rsi"]})  # declared sets do not hide the built-ins
    assert core.name == "core" and core.spec_texts() == BUILTIN_SETS["core"]
    for name, specs in BUILTIN_SETS.items():
        fs = feature_set(name)
        assert fs.name == name and len(fs.specs) == len(specs)
        assert fs.warmup == max(f.warmup for f in fs.features)


# --- versions --------------------------------------------------------------------------------


def _version_in_subprocess(specs: list[str], hashseed: str) -> str:
    code = (
        "import json, sys\n"
        "from operators.features import FeatureSet\n"
        "print(FeatureSet(json.loads(sys.argv[1])).version)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    res = subprocess.run(
        [sys.executable, "-c", code, json.dumps(specs)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return res.stdout.strip()


def test_version_stable_across_processes() -> None:
    specs = [*BUILTIN_SETS["full"], "time_of_day[sin] as tod_s", "macd[hist] as mh"]
    here = FeatureSet(specs).version
    assert len(here) == 16 and int(here, 16) >= 0
    assert _version_in_subprocess(specs, "1") == here
    assert _version_in_subprocess(specs, "12345") == here
    assert FeatureSet(specs).version == here  # and within a process


def test_version_depends_on_canonical_specs_only() -> None:
    base = FeatureSet(["rsi_14", "sma_5", "macd"]).version
    assert FeatureSet(["RSI", " sma_5 ", "macd_12_26_9"]).version == base
    assert FeatureSet(["rsi", "sma_5_close", "macd_12"]).version == base
    assert FeatureSet(["rsi_14", "sma_5", "macd"]).fresh().version == base


@pytest.mark.parametrize(
    "other",
    [
        ["rsi_15", "sma_5", "macd"],  # params
        ["rsi_14", "sma_5_high", "macd"],  # str param
        ["rsi_14", "sma_5", "macd_12_26_8"],
        ["sma_5", "rsi_14", "macd"],  # order
        ["rsi_14 as r", "sma_5", "macd"],  # alias
        ["rsi_14", "sma_5", "macd[hist]"],  # parts
        ["rsi_14", "sma_5", "macd[line,hist]"],
        ["rsi_14", "sma_5"],  # fewer features
        ["rsi_14", "sma_5", "macd", "obv"],
        ["rsi_14", "ema_5", "macd"],  # family
    ],
)
def test_version_changes_with_the_specs(other: list[str]) -> None:
    assert FeatureSet(other).version != FeatureSet(["rsi_14", "sma_5", "macd"]).version


def test_version_changes_with_a_family_implementation_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    specs = ["rsi_14", "sma_5"]
    before = FeatureSet(specs).version
    monkeypatch.setattr(RSI, "version", getattr(RSI, "version", 1) + 1, raising=False)
    after = FeatureSet(specs).version
    assert after != before
    assert FeatureSet(["sma_5"]).version == FeatureSet(["sma_5"]).version
    monkeypatch.undo()
    assert FeatureSet(specs).version == before


# --- built-in sets -------------------------------------------------------------------------


def test_full_uses_every_family() -> None:
    fs = feature_set("full")
    assert len(fs.columns) >= 50
    assert len(set(fs.columns)) == len(fs.columns)
    assert {s.family for s in fs.specs} == set(FAMILIES)
    assert fs.refs == {"BTCUSDT"}


def test_tcn12_columns() -> None:
    fs = feature_set("tcn12")
    assert fs.columns == TCN12
    assert fs.names == TCN12
    assert fs.refs == frozenset()


# --- values equal the standalone features ----------------------------------------------------

# tcn12's output columns -> the standalone feature and its column, written out by hand.
TCN12_SOURCES = {
    "log_returns_1": ("log_returns_1", "log_returns_1"),
    "log_returns_5": ("log_returns_5", "log_returns_5"),
    "realized_vol_20": ("realized_vol_20", "realized_vol_20"),
    "ewma_vol_fast": ("ewma_vol_20", "ewma_vol_20"),
    "ewma_vol_slow": ("ewma_vol_200", "ewma_vol_200"),
    "momentum_20": ("momentum_20", "momentum_20"),
    "rsi_14": ("rsi_14", "rsi_14"),
    "volume_zscore": ("volume_zscore_20", "volume_zscore_20"),
    "spread": ("hl_range", "hl_range"),
    "sma_crossover": ("sma_ratio_5_20", "sma_ratio_5_20"),
    "time_of_day_sin": ("time_of_day", "time_of_day_sin"),
    "day_of_week_sin": ("day_of_week", "day_of_week_sin"),
}


def _standalone(set_name: str, symbol: str, n: int) -> dict[str, np.ndarray]:
    """Every column of every feature of a built-in set, each built from its class directly and
    fed on its own (pair features: the BTCUSDT bar at the same open time)."""
    bars, btc = real_bars(symbol)[:n], real_bars("BTCUSDT")[:n]
    out: dict[str, np.ndarray] = {}
    for spec in feature_set(set_name).specs:
        make = functools.partial(family_class(spec.family), *spec.params)
        feat = make()
        ref = getattr(feat, "ref", None)
        assert ref in (None, "BTCUSDT")
        vals = stream(make, bars, None if ref is None else btc)
        for j, col in enumerate(feat.columns):
            out[col] = vals[:, j]
    return out


def _set_values(fs: FeatureSet, symbol: str, n: int) -> np.ndarray:
    bars, btc = real_bars(symbol)[:n], real_bars("BTCUSDT")[:n]
    rows = [fs.update(b, {"BTCUSDT": r}) for b, r in zip(bars, btc, strict=True)]
    return np.array(rows, dtype=np.float64)


@pytest.mark.parametrize(("symbol", "n"), [("ETHUSDT", 44_640), ("BTCUSDT", 4_000)])
def test_full_set_equals_standalone_features(symbol: str, n: int) -> None:
    fs = feature_set("full")
    got = _set_values(fs, symbol, n)
    assert got.shape == (n, len(fs.columns))
    ref = _standalone("full", symbol, n)
    assert list(ref) == fs.columns  # no parts or aliases in "full": columns in spec order
    for j, col in enumerate(fs.columns):
        np.testing.assert_array_equal(got[:, j], ref[col], err_msg=col)
    # real values after the warm-up, except the trade-flow columns (these bars have no trade
    # counts) and the cointegration half-life (NaN where the spread does not mean-revert)
    finite = np.isfinite(got[fs.warmup :]).all(axis=0)
    undefined = {c for c in fs.columns if c.startswith("trade_") or c.endswith("_halflife")}
    pair = [j for j, c in enumerate(fs.columns) if "btcusdt" in c]
    assert len(pair) >= 3
    if symbol == "BTCUSDT":  # a symbol is not paired with itself
        assert np.isnan(got[:, pair]).all()
        undefined |= {fs.columns[j] for j in pair}
    assert {c for c, ok in zip(fs.columns, finite, strict=True) if not ok} <= undefined


def test_tcn12_equals_standalone_features() -> None:
    n = 6_000
    fs = feature_set("tcn12")
    got = _set_values(fs, "ETHUSDT", n)
    ref = _standalone("tcn12", "ETHUSDT", n)
    assert list(TCN12_SOURCES) == fs.columns
    for j, col in enumerate(fs.columns):
        _, src_col = TCN12_SOURCES[col]
        np.testing.assert_array_equal(got[:, j], ref[src_col], err_msg=col)
    assert np.isfinite(got[fs.warmup :]).all()


def test_pair_features_without_reference_bars_are_nan() -> None:
    fs = FeatureSet(["log_returns_1", "corr_btcusdt_5", "beta_btcusdt_5"])
    eth, btc = real_bars("ETHUSDT")[:20], real_bars("BTCUSDT")[:20]
    rows = [fs.update(b) for b in eth[:10]]  # no refs at all
    rows += [fs.update(b, {"ETHUSDT": b}) for b in eth[10:12]]  # not the reference symbol
    rows += [fs.update(b, {"BTCUSDT": r}) for b, r in zip(eth[12:20], btc[11:19], strict=True)]
    vals = np.array(rows)
    assert np.isfinite(vals[1:, 0]).all()
    assert np.isnan(vals[:, 1:]).all()  # never aligned: misaligned ref bars count as gaps


def test_pickle_mid_stream_resumes_identically() -> None:
    n, cut = 3_500, 2_000  # past the 1440-bar warm-ups of garch and coint
    eth, btc = real_bars("ETHUSDT")[:n], real_bars("BTCUSDT")[:n]
    full = _set_values(feature_set("full"), "ETHUSDT", n)
    fs = feature_set("full")
    for b, r in zip(eth[:cut], btc[:cut], strict=True):
        fs.update(b, {"BTCUSDT": r})
    fs = pickle.loads(pickle.dumps(fs))
    assert fs.name == "full" and fs.version == feature_set("full").version
    rest = np.array(
        [fs.update(b, {"BTCUSDT": r}) for b, r in zip(eth[cut:], btc[cut:], strict=True)]
    )
    np.testing.assert_array_equal(rest, full[cut:])
    assert np.isfinite(rest).all(axis=0).sum() >= 45


def test_fresh_has_no_state() -> None:
    eth = real_bars("ETHUSDT")[:100]
    fs = FeatureSet(["rsi_14", "sma_5"])
    first = [fs.update(b) for b in eth]
    fresh = fs.fresh()
    assert fresh.version == fs.version and fresh.columns == fs.columns
    assert all(f is not g for f, g in zip(fresh.features, fs.features, strict=True))
    again = [fresh.update(b) for b in eth]
    np.testing.assert_array_equal(np.array(again), np.array(first))
