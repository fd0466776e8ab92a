"""Label specs for the CLI: parse "family:key=value,..." strings and compute label columns.

Grammar: `<family>:<key>=<value>[,<key>=<value>...]`; a comma-separated token without "="
continues the previous key's value list ("forward:h=1,5,15,60"). Families:

- "forward:h=1,5,15,60"  -> per h: fwd_ret_<h> (ln close[t+h]/close[t])
- "threshold:h=10,thr=0.002"  -> label_thr_10_0p002 in {-1, 0, 1}
- "triple_barrier:pt=0.004,sl=0.004,h=60[,vol=<feature col>][,binary=1|pt|sign]
  [,side=long|short][,name=<prefix>]"  -> <prefix>_label, [_binary,] _t1, _ret; with vol, the
  barrier widths are pt*vol[t] and sl*vol[t]. Default prefix tb_<pt>_<sl>_<h>[_<vol>][_short].

Every label (each horizon of "forward" is its own label) also outputs `<prefix>_end` (index of the
last frame row the label depends on) and `<prefix>_end_ts` (that row's ts_event), for purging.
Numbers in names: "." -> "p" (0.002 -> 0p002). In the returned polars frame missing values are
nulls (never NaN): labels Int8, returns Float64, indices and ts Int64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import polars as pl

from offline.labels.forward import check_horizon, forward_log_return, horizon_end
from offline.labels.threshold import check_fraction, threshold_labels
from offline.labels.triple_barrier import BinaryMode, Side, triple_barrier

REQUIRED = ("ts_event", "open", "high", "low", "close")


def num_name(x: float) -> str:
    """0.002 -> '0p002', 2.0 -> '2', 1e-5 -> '0p00001' (no exponents, column-name safe)."""
    s = np.format_float_positional(float(x), trim="-")
    return s.replace(".", "p").replace("-", "m")


@dataclass(frozen=True)
class LabelSpec:
    """A parsed label spec; subclasses per family."""

    family: ClassVar[str]

    @property
    def prefixes(self) -> tuple[str, ...]:
        """One prefix per label (forward: one per horizon)."""
        raise NotImplementedError

    @property
    def columns(self) -> tuple[str, ...]:
        """Per prefix: the label, its end index and end ts."""
        return tuple(c for p in self.prefixes for c in (p, f"{p}_end", f"{p}_end_ts"))

    @property
    def end_columns(self) -> tuple[str, ...]:
        return tuple(f"{p}_end" for p in self.prefixes)

    @property
    def end_ts_columns(self) -> tuple[str, ...]:
        return tuple(f"{p}_end_ts" for p in self.prefixes)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Frame columns besides OHLC/ts that compute needs."""
        return ()

    def _arrays(self, frame: pl.DataFrame) -> dict[str, np.ndarray]:
        """Column name -> numpy array (float NaN / int -1 = missing)."""
        raise NotImplementedError

    def compute(self, frame: pl.DataFrame) -> pl.DataFrame:
        _check_frame(frame, self.feature_columns)
        ts = frame["ts_event"].to_numpy().astype(np.int64)
        arrays = self._arrays(frame)
        for p in self.prefixes:  # end_ts from end index
            end = arrays[f"{p}_end"]
            arrays[f"{p}_end_ts"] = np.where(end >= 0, ts[np.maximum(end, 0)], -1)
        cols: list[pl.Series] = []
        for name in self.columns:
            a = arrays[name]
            if a.dtype.kind == "f":
                s = pl.Series(name, a, nan_to_null=True)
                if name in self._int8_columns:
                    s = s.cast(pl.Int8)
            else:
                s = pl.Series(name, a, dtype=pl.Int64)
                s = pl.select(pl.when(s >= 0).then(s)).to_series().alias(name)
            cols.append(s)
        return pl.DataFrame(cols)

    @property
    def _int8_columns(self) -> frozenset[str]:
        return frozenset()


@dataclass(frozen=True)
class ForwardSpec(LabelSpec):
    horizons: tuple[int, ...]
    family: ClassVar[str] = "forward"

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(f"fwd_ret_{h}" for h in self.horizons)

    def _arrays(self, frame: pl.DataFrame) -> dict[str, np.ndarray]:
        close = frame["close"].to_numpy().astype(np.float64)
        out: dict[str, np.ndarray] = {}
        for h, p in zip(self.horizons, self.prefixes, strict=True):
            r = forward_log_return(close, h)
            out[p], out[f"{p}_end"] = r, _label_end(r, h)
        return out


@dataclass(frozen=True)
class ThresholdSpec(LabelSpec):
    h: int
    thr: float
    family: ClassVar[str] = "threshold"

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (f"label_thr_{self.h}_{num_name(self.thr)}",)

    @property
    def _int8_columns(self) -> frozenset[str]:
        return frozenset(self.prefixes)

    def _arrays(self, frame: pl.DataFrame) -> dict[str, np.ndarray]:
        close = frame["close"].to_numpy().astype(np.float64)
        lab = threshold_labels(close, self.h, self.thr)
        p = self.prefixes[0]
        return {p: lab, f"{p}_end": _label_end(lab, self.h)}


@dataclass(frozen=True)
class TripleBarrierSpec(LabelSpec):
    pt: float
    sl: float
    h: int
    vol: str | None = None
    binary: BinaryMode | None = None  # None: no binary column
    side: Side = "long"
    name: str | None = None  # prefix override
    family: ClassVar[str] = "triple_barrier"

    @property
    def prefix(self) -> str:
        if self.name is not None:
            return self.name
        p = f"tb_{num_name(self.pt)}_{num_name(self.sl)}_{self.h}"
        if self.vol is not None:
            p += f"_{self.vol}"
        return p + ("_short" if self.side == "short" else "")

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.prefix,)

    @property
    def columns(self) -> tuple[str, ...]:
        parts = ["label", *(["binary"] if self.binary else []), "t1", "ret", "end", "end_ts"]
        return tuple(f"{self.prefix}_{s}" for s in parts)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return (self.vol,) if self.vol is not None else ()

    @property
    def _int8_columns(self) -> frozenset[str]:
        return frozenset((f"{self.prefix}_label", f"{self.prefix}_binary"))

    def _arrays(self, frame: pl.DataFrame) -> dict[str, np.ndarray]:
        def col(c: str) -> np.ndarray:
            return frame[c].cast(pl.Float64).to_numpy()

        vol = col(self.vol) if self.vol is not None else None
        r = triple_barrier(
            col("high"),
            col("low"),
            col("close"),
            pt=self.pt,
            sl=self.sl,
            h=self.h,
            vol=vol,
            side=self.side,
            binary=self.binary or "pt",
        )
        p = self.prefix
        return {
            f"{p}_label": r.label,
            f"{p}_binary": r.binary,
            f"{p}_t1": r.t1,
            f"{p}_ret": r.ret,
            f"{p}_end": r.t1.copy(),  # the label depends on bars t..t1 only
        }


def _label_end(label: np.ndarray, h: int) -> np.ndarray:
    """End index t+h of an h-bar label, -1 where the label is missing."""
    end = horizon_end(label.shape[0], h)
    end[np.isnan(label)] = -1
    return end


def _check_frame(frame: pl.DataFrame, extra: tuple[str, ...]) -> None:
    missing = [c for c in (*REQUIRED, *extra) if c not in frame.columns]
    if missing:
        raise ValueError(f"label frame lacks column(s) {missing}; has {frame.columns}")
    if "symbol" in frame.columns and frame["symbol"].n_unique() > 1:
        raise ValueError("label frame must hold one symbol; compute labels per symbol")
    ts = frame["ts_event"].to_numpy()
    if ts.shape[0] > 1 and not bool(np.all(np.diff(ts) > 0)):
        raise ValueError("label frame ts_event must be strictly increasing (one symbol, sorted)")


def _split_params(spec: str, body: str) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    key: str | None = None
    for tok in (t.strip() for t in body.split(",")):
        if not tok:
            raise ValueError(f"empty item in label spec {spec!r}")
        if "=" in tok:
            key, _, val = (s.strip() for s in tok.partition("="))
            if not key or not val:
                raise ValueError(f"bad item {tok!r} in label spec {spec!r} (want key=value)")
            if key in params:
                raise ValueError(f"duplicate key {key!r} in label spec {spec!r}")
            params[key] = [val]
        elif key is None:
            raise ValueError(f"label spec {spec!r} must start with key=value, got {tok!r}")
        else:
            params[key].append(tok)
    return params


def _one(spec: str, params: dict[str, list[str]], key: str) -> str:
    vals = params[key]
    if len(vals) != 1:
        raise ValueError(f"{key} takes one value in label spec {spec!r}, got {vals}")
    return vals[0]


def _int(spec: str, key: str, val: str) -> int:
    try:
        return check_horizon(int(val))
    except ValueError:
        raise ValueError(f"{key}={val!r} in label spec {spec!r}: want an int >= 1") from None


def _float(spec: str, key: str, val: str) -> float:
    try:
        x = float(val)
        if math.isinf(x):
            raise ValueError
        return check_fraction(key, x)
    except ValueError:
        raise ValueError(f"{key}={val!r} in label spec {spec!r}: want a number > 0") from None


_KEYS: dict[str, tuple[set[str], set[str]]] = {  # family -> (required, optional)
    "forward": ({"h"}, set()),
    "threshold": ({"h", "thr"}, set()),
    "triple_barrier": ({"pt", "sl", "h"}, {"vol", "binary", "side", "name"}),
}


def parse_label(spec: str) -> LabelSpec:
    """Parse one label spec string (grammar in the module docstring)."""
    family, sep, body = spec.strip().partition(":")
    family = family.strip()
    if family not in _KEYS:
        raise ValueError(f"unknown label family {family!r} in {spec!r}; known: {sorted(_KEYS)}")
    if not sep or not body.strip():
        raise ValueError(f"label spec {spec!r} has no parameters (want {family}:key=value,...)")
    params = _split_params(spec, body)
    required, optional = _KEYS[family]
    if missing := required - params.keys():
        raise ValueError(f"label spec {spec!r} lacks {sorted(missing)}")
    if unknown := params.keys() - required - optional:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in label spec {spec!r}")
    if family == "forward":
        hs = tuple(_int(spec, "h", v) for v in params["h"])
        if len(set(hs)) != len(hs):
            raise ValueError(f"duplicate horizons in label spec {spec!r}")
        return ForwardSpec(horizons=hs)
    h = _int(spec, "h", _one(spec, params, "h"))
    if family == "threshold":
        return ThresholdSpec(h=h, thr=_float(spec, "thr", _one(spec, params, "thr")))
    pt = _float(spec, "pt", _one(spec, params, "pt"))
    sl = _float(spec, "sl", _one(spec, params, "sl"))
    vol = _one(spec, params, "vol") if "vol" in params else None
    binary: BinaryMode | None = None
    if "binary" in params:
        b = _one(spec, params, "binary").lower()
        if b in ("1", "true", "pt"):
            binary = "pt"
        elif b == "sign":
            binary = "sign"
        elif b not in ("0", "false"):
            raise ValueError(f"binary={b!r} in label spec {spec!r}: want 1, 0, pt or sign")
    side = _one(spec, params, "side").lower() if "side" in params else "long"
    if side not in ("long", "short"):
        raise ValueError(f"side={side!r} in label spec {spec!r}: want long or short")
    name = _one(spec, params, "name") if "name" in params else None
    if name is not None and not name.replace("_", "").isalnum():
        raise ValueError(f"name={name!r} in label spec {spec!r}: want letters, digits, _")
    return TripleBarrierSpec(
        pt=pt,
        sl=sl,
        h=h,
        vol=vol,
        binary=binary,
        side="short" if side == "short" else "long",
        name=name,
    )


def compute(spec: LabelSpec | str, frame: pl.DataFrame) -> pl.DataFrame:
    """Label columns of one spec, row-aligned to `frame` (one symbol, sorted by ts_event)."""
    s = parse_label(spec) if isinstance(spec, str) else spec
    return s.compute(frame)


def compute_labels(specs: Sequence[LabelSpec | str], frame: pl.DataFrame) -> pl.DataFrame:
    """Several specs side by side; raises ValueError on clashing column names."""
    parsed = [parse_label(s) if isinstance(s, str) else s for s in specs]
    names = [c for s in parsed for c in s.columns]
    if dup := sorted({c for c in names if names.count(c) > 1}):
        raise ValueError(f"label specs produce duplicate columns {dup}; use name= to rename")
    return pl.concat([s.compute(frame) for s in parsed], how="horizontal")
