"""Feature specs -> feature objects.

A spec is the feature's own name, `<family>_<params>` (e.g. "macd_12_26_9", "corr_btcusdt_60",
"candle"); omitted trailing params take the family's defaults ("rsi" == "rsi_14"). Optional
suffixes: `[part,...]` keeps only some columns of a multi-column family
("time_of_day[sin]" -> time_of_day_sin) and ` as alias` renames the output
("ewma_vol_20 as ewma_vol_fast"). Families are imported lazily so a spec only loads what it uses.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any

# family -> "module:Class" (one family per file)
FAMILIES: dict[str, str] = {
    "log_returns": "returns:LogReturn",
    "sma": "sma:SMA",
    "ema": "ema:EMA",
    "wma": "wma:WMA",
    "macd": "macd:MACD",
    "rsi": "rsi:RSI",
    "stoch": "stoch:Stochastic",
    "roc": "roc:ROC",
    "momentum": "momentum:Momentum",
    "sma_ratio": "sma_ratio:SmaRatio",
    "adx": "adx:ADX",
    "atr": "atr:ATR",
    "bbands": "bbands:Bollinger",
    "cci": "cci:CCI",
    "willr": "willr:WilliamsR",
    "mfi": "mfi:MFI",
    "obv": "obv:OBV",
    "realized_vol": "volatility:RealizedVol",
    "ewma_vol": "ewma_vol:EwmaVol",
    "parkinson": "parkinson:Parkinson",
    "garman_klass": "garman_klass:GarmanKlass",
    "garch": "garch:Garch",
    "volume_zscore": "volume_zscore:VolumeZScore",
    "vwap_dev": "vwap:VwapDeviation",
    "candle": "candle:Candle",
    "hl_range": "hl_range:HLRange",
    "time_of_day": "time_of_day:TimeOfDay",
    "day_of_week": "day_of_week:DayOfWeek",
    "trade_imbalance": "trade_imbalance:TradeImbalance",
    "trade_count": "trade_count:TradeCount",
    "trade_size": "trade_size:MeanTradeSize",
    "corr": "pair_corr:RollingCorr",
    "beta": "pair_beta:RollingBeta",
    "coint": "coint:CointSpread",
}

_SPEC = re.compile(
    r"^\s*([a-z][a-z0-9_.]*)\s*(?:\[([a-z0-9_,\s]+)\])?\s*(?:\s+as\s+([a-z][a-z0-9_]*))?\s*$"
)


@dataclass(frozen=True)
class FeatureSpec:
    """One parsed spec: how to build the feature and which of its columns to output, named how."""

    text: str  # canonical: "<name>[parts] as alias"
    family: str
    params: tuple[Any, ...]
    parts: tuple[str, ...] | None
    alias: str | None


def family_class(family: str) -> type:
    try:
        module, cls = FAMILIES[family].split(":")
    except KeyError:
        raise ValueError(f"unknown feature family {family!r}; known: {sorted(FAMILIES)}") from None
    return getattr(importlib.import_module(f"operators.features.{module}"), cls)  # type: ignore[no-any-return]


def _kind(p: inspect.Parameter) -> str:
    """ "int" | "float" | "str": from the default's type, else from the annotation."""
    if p.default is not inspect.Parameter.empty:
        return type(p.default).__name__
    ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
    return ann


def _convert(raw: str, p: inspect.Parameter, family: str) -> Any:
    kind = _kind(p)
    try:
        if kind == "int":
            return -int(raw[1:]) if raw.startswith("m") else int(raw)
        if kind == "float":
            return float(raw.replace("p", ".").replace("m", "-"))
        if kind == "str":
            return raw
        raise ValueError
    except ValueError:
        raise ValueError(f"feature {family}: parameter {p.name}={raw!r} is not valid") from None


def _split_family(name: str) -> tuple[str, list[str]]:
    best = ""
    for fam in FAMILIES:
        if (name == fam or name.startswith(fam + "_")) and len(fam) > len(best):
            best = fam
    if not best:
        raise ValueError(f"unknown feature {name!r}: no family matches; known: {sorted(FAMILIES)}")
    rest = name[len(best) + 1 :]
    return best, rest.split("_") if rest else []


def parse_spec(text: str) -> FeatureSpec:
    """Parse a spec string (see module doc); raises ValueError with the reason."""
    m = _SPEC.match(text.strip().lower())
    if m is None:
        raise ValueError(f"bad feature spec {text!r}: expected '<family>_<params>[parts] as alias'")
    name, parts_s, alias = m.group(1), m.group(2), m.group(3)
    family, raw = _split_family(name)
    sig = inspect.signature(family_class(family))
    pars = [p for p in sig.parameters.values() if p.name != "self"]
    if len(raw) > len(pars):
        raise ValueError(f"feature {name!r}: {family} takes at most {len(pars)} parameter(s)")
    missing = [p.name for p in pars[len(raw) :] if p.default is inspect.Parameter.empty]
    if missing:
        raise ValueError(f"feature {name!r}: missing parameter(s) {missing}")
    params = tuple(_convert(r, p, family) for r, p in zip(raw, pars, strict=False))
    params += tuple(p.default for p in pars[len(raw) :])
    parts = tuple(s.strip() for s in parts_s.split(",")) if parts_s else None
    spec = FeatureSpec(text.strip(), family, params, parts, alias)
    feat = build(spec)  # validates params and parts now, not when the flow starts
    canon = (
        feat.name + (f"[{','.join(parts)}]" if parts else "") + (f" as {alias}" if alias else "")
    )
    return FeatureSpec(canon, family, params, parts, alias)


def build(spec: FeatureSpec) -> Any:
    """A fresh feature object for a parsed spec."""
    feat = family_class(spec.family)(*spec.params)
    if spec.parts is not None:
        avail = {c[len(feat.name) + 1 :] for c in feat.columns if c != feat.name}
        missing = [p for p in spec.parts if p not in avail]
        if missing:
            raise ValueError(f"feature {feat.name!r} has no part(s) {missing}; has {sorted(avail)}")
    return feat


def output_columns(spec: FeatureSpec, feat: Any) -> tuple[list[int], list[str]]:
    """(indices into feat.columns, output names) after part selection and aliasing."""
    cols = list(feat.columns)
    idx = list(range(len(cols)))
    if spec.parts is not None:
        want = {f"{feat.name}_{p}" for p in spec.parts}
        idx = [i for i in idx if cols[i] in want]
    names = [cols[i] for i in idx]
    if spec.alias is not None:
        if len(names) == 1:
            names = [spec.alias]
        else:
            names = [spec.alias + n[len(feat.name) :] for n in names]
    return idx, names
