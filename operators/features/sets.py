"""Built-in feature sets (a config file may declare more under [feature_sets])."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from operators.features.featureset import FeatureSet

BUILTIN_SETS: dict[str, list[str]] = {
    # The trading flow's default: cheap, and what the SMA-cross demo reports alongside its fills.
    "core": ["log_returns_1", "sma_10", "sma_50", "ema_20", "rsi_14", "realized_vol_20"],
    # The 12 inputs of the TCN model (offline/), named as that model expects them.
    "tcn12": [
        "log_returns_1",
        "log_returns_5",
        "realized_vol_20",
        "ewma_vol_20 as ewma_vol_fast",
        "ewma_vol_200 as ewma_vol_slow",
        "momentum_20",
        "rsi_14",
        "volume_zscore_20 as volume_zscore",
        "hl_range as spread",
        "sma_ratio_5_20 as sma_crossover",
        "time_of_day[sin]",
        "day_of_week[sin]",
    ],
    # Every family, at the usual parameters.
    "full": [
        "log_returns_1",
        "log_returns_5",
        "log_returns_15",
        "log_returns_60",
        "sma_5",
        "sma_10",
        "sma_20",
        "sma_50",
        "ema_12",
        "ema_26",
        "wma_20",
        "macd_12_26_9",
        "rsi_14",
        "stoch_14_3_3",
        "roc_10",
        "momentum_20",
        "adx_14",
        "atr_14",
        "bbands_20_2",
        "realized_vol_20",
        "realized_vol_60",
        "ewma_vol_20",
        "ewma_vol_200",
        "parkinson_20",
        "garman_klass_20",
        "garch_1440_0p05_0p94",
        "volume_zscore_20",
        "vwap_dev_20",
        "obv",
        "mfi_14",
        "cci_20",
        "willr_14",
        "candle",
        "hl_range",
        "sma_ratio_5_20",
        "time_of_day",
        "day_of_week",
        "trade_imbalance",
        "trade_count",
        "trade_size",
        "corr_btcusdt_60",
        "beta_btcusdt_60",
        "coint_btcusdt_1440",
    ],
}


def feature_set(name: str, declared: Mapping[str, Sequence[str]] | None = None) -> FeatureSet:
    """The feature set called `name`: declared in the config, or built in. Raises ValueError
    naming the set and the bad spec, so a typo in a config fails at startup."""
    declared = declared or {}
    clash = sorted(set(declared) & set(BUILTIN_SETS))
    if clash:
        raise ValueError(f"feature set name(s) {clash} are built in; choose other names")
    specs = declared.get(name, BUILTIN_SETS.get(name))
    if specs is None:
        known = sorted({*declared, *BUILTIN_SETS})
        raise ValueError(f"unknown feature set {name!r}; known: {known}")
    try:
        return FeatureSet(specs, name)
    except ValueError as e:
        msg = str(e)
        prefix = "" if msg.startswith("feature set") else f"feature set {name!r}: "
        raise ValueError(prefix + msg) from None
