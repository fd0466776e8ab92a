"""The look-ahead guard: prove, empirically, that a feature's value at bar t depends only on bars
<= t, and that two instances of a streaming feature share no state.

Look-ahead: the feature is run once over the whole history, then recomputed from scratch on the
history TRUNCATED at t (a fresh object fed bars[:t+1], or the batch function called on
frame[:t+1]) for many t: the first bars, around each column's warm-up, the last bar, and a seeded
random sample. The value at t must equal the full-history value at t bit for bit (NaN == NaN).
A streaming object cannot see bar t+1 when it emits bar t, so for it the check catches state that
outlives the instance (class-level or module-level caches filled by the full run); for batch
functions it catches centred windows, full-sample normalisation, negative shifts, etc.

Shared state: two instances updated in turn on different data must give what each gives alone.

Targets (`load_target`): a spec ("macd_12_26_9", "ewma_vol_20 as fast"), a built-in set name
("full"), a `FeatureSet`, or "package.module:Name" / "package.module:Name(k=v, ...)" where Name is
- a streaming class following operators/features/base.py (pair classes have `ref` and take
  `update(bar, ref_bar)`), built with the given keyword arguments;
- a batch function `f(frame) -> pl.Series | pl.DataFrame` (or numpy array) aligned to the rows of
  `frame`: columns symbol, ts_event, ts_init, open, high, low, close, volume, n_trades,
  buy_volume, and per reference symbol S `<s>_open` ... `<s>_volume` (lower-case, null where S
  has no bar at that open time);
- a `FeatureSet` instance.
The warm-up report lives in offline/warmup.py; `main` prints both.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from operators.features import BUILTIN_SETS, FeatureSet, feature_set
from operators.features.base import FIELDS
from operators.features.registry import output_columns
from schemas.messages import NS_PER_MINUTE, Bar

RefRow = Mapping[str, Bar]  # reference symbols' bars at one bar's open time
Updater = Callable[[Bar, RefRow], tuple[float, ...]]
_NO_REFS: RefRow = {}


# --- targets -------------------------------------------------------------------------------------


class Target:
    """A feature under test, run uniformly: `run` -> values (n_bars, n_columns) from no state."""

    kind = "stream"

    def __init__(
        self,
        label: str,
        fresh: Callable[[], Updater],
        columns: Sequence[str],
        declared: Sequence[int | None],
        refs: Sequence[str] = (),
    ) -> None:
        self.label = label
        self.fresh = fresh  # a new, independent instance's update(bar, refs) -> row
        self.columns = list(columns)
        self.declared = list(declared)  # declared warm-up per column (None: unknown)
        self.refs = tuple(refs)

    def run(self, bars: Sequence[Bar], rows: Sequence[RefRow]) -> np.ndarray:
        upd = self.fresh()
        out = [upd(b, r) for b, r in zip(bars, rows, strict=True)]
        return np.array(out, dtype=np.float64).reshape(len(bars), len(self.columns))

    def last(self, bars: Sequence[Bar], rows: Sequence[RefRow]) -> np.ndarray:
        """The row after the last bar, from a fresh instance (nothing stored on the way)."""
        upd = self.fresh()
        v: tuple[float, ...] = ()
        for b, r in zip(bars, rows, strict=True):
            v = upd(b, r)
        return np.array(v, dtype=np.float64)


class BatchTarget(Target):
    kind = "batch"

    def __init__(self, label: str, fn: Callable[[pl.DataFrame], Any], refs: Sequence[str] = ()):
        super().__init__(label, _no_fresh, [], [], refs)
        self.fn = fn

    def run(self, bars: Sequence[Bar], rows: Sequence[RefRow]) -> np.ndarray:
        return self.run_frame(bar_frame(bars, rows, self.refs))

    def run_frame(self, frame: pl.DataFrame) -> np.ndarray:
        cols, values = _as_columns(self.fn(frame), frame.height, self.label)
        if not self.columns:
            self.columns = cols
            self.declared = [None] * len(cols)
        elif cols != self.columns:
            raise ValueError(f"{self.label}: columns changed from {self.columns} to {cols}")
        return values

    def last(self, bars: Sequence[Bar], rows: Sequence[RefRow]) -> np.ndarray:
        out: np.ndarray = self.run(bars, rows)[-1]
        return out


def _no_fresh() -> Updater:
    raise TypeError("a batch feature has no streaming instance")


def _as_columns(out: Any, n: int, label: str) -> tuple[list[str], np.ndarray]:
    if isinstance(out, pl.Series):
        cols, arrs = [out.name or label], [out]
    elif isinstance(out, pl.DataFrame):
        cols, arrs = list(out.columns), list(out.get_columns())
    elif isinstance(out, np.ndarray) and out.ndim in (1, 2):
        a2 = out.reshape(len(out), -1)
        cols = [label] if out.ndim == 1 else [f"{label}_{j}" for j in range(a2.shape[1])]
        arrs = [pl.Series(a2[:, j]) for j in range(a2.shape[1])]
    else:
        raise TypeError(
            f"{label}: a batch feature must return a polars Series/DataFrame or an "
            f"array, got {type(out).__name__}"
        )
    if any(len(a) != n for a in arrs):
        raise ValueError(f"{label}: output has {[len(a) for a in arrs]} rows for {n} bars")
    mat = np.empty((n, len(arrs)), dtype=np.float64)
    for j, a in enumerate(arrs):
        mat[:, j] = a.cast(pl.Float64).fill_null(math.nan).to_numpy()
    return cols, mat


def _row(v: Any) -> tuple[float, ...]:
    return v if type(v) is tuple else (v,)


def set_target(fs: FeatureSet, label: str | None = None) -> Target:
    def fresh() -> Updater:
        return fs.fresh().update  # rebuilt from the specs: none of fs's own state

    declared: list[int | None] = []
    for spec, feat in zip(fs.specs, fs.features, strict=True):
        declared += [feat.warmup] * len(output_columns(spec, feat)[1])
    return Target(label or fs.name, fresh, fs.columns, declared, sorted(fs.refs))


def class_target(cls: type, kwargs: Mapping[str, Any], label: str) -> Target:
    probe = cls(**kwargs)
    columns = tuple(getattr(probe, "columns", ()) or (getattr(probe, "name", label),))
    ref = getattr(probe, "ref", None)
    warmup = getattr(probe, "warmup", None)

    def fresh() -> Updater:
        feat = cls(**kwargs)
        upd = feat.update
        if ref is None:
            return lambda bar, refs: _row(upd(bar))
        return lambda bar, refs: _row(upd(bar, refs.get(ref)))

    refs = () if ref is None else (ref,)
    return Target(label, fresh, columns, [warmup] * len(columns), refs)


_USER = re.compile(r"^\s*([A-Za-z_][\w.]*):([A-Za-z_]\w*)\s*(?:\((.*)\))?\s*$", re.S)


def _parse_kwargs(text: str) -> dict[str, Any]:
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        assert isinstance(call, ast.Call)
        if call.args or any(k.arg is None for k in call.keywords):
            raise ValueError
        return {str(k.arg): ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError):
        raise ValueError(f"user feature arguments must be literal keywords: ({text})") from None


def load_target(feature: Any, kwargs: Mapping[str, Any] | None = None) -> Target:
    """A `Target` for a spec, set name, FeatureSet, streaming class, batch function, or their
    "module:Name[(k=v, ...)]" reference (see the module doc)."""
    kw = dict(kwargs or {})
    if isinstance(feature, Target):
        return feature
    if isinstance(feature, FeatureSet):
        return set_target(feature)
    if isinstance(feature, str):
        m = _USER.match(feature)
        if m is None:
            name = feature.strip()
            fs = feature_set(name) if name in BUILTIN_SETS else FeatureSet([name], name)
            return set_target(fs)
        module, attr, args = m.groups()
        kw = {**_parse_kwargs(args), **kw} if args else kw
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot load user feature {feature!r}: {e}") from None
        return _object_target(obj, kw, f"{attr}")
    return _object_target(feature, kw, getattr(feature, "__name__", type(feature).__name__))


def _object_target(obj: Any, kw: dict[str, Any], label: str) -> Target:
    if isinstance(obj, FeatureSet):
        return set_target(obj, label)
    if inspect.isclass(obj):
        return class_target(obj, kw, label)
    if callable(obj):
        fn = obj if not kw else (lambda df: obj(df, **kw))
        return BatchTarget(label, fn)
    raise TypeError(f"{label}: not a feature class, batch function or FeatureSet")


# --- data ----------------------------------------------------------------------------------------


def align_refs(bars: Sequence[Bar], refs: Mapping[str, Sequence[Bar]] | None) -> list[RefRow]:
    """Per bar: the reference symbols' bars with the same open time (absent ones left out)."""
    if not refs:
        return [_NO_REFS] * len(bars)
    by_ts = {sym: {b.ts_event: b for b in rb} for sym, rb in refs.items()}
    rows: list[RefRow] = []
    for b in bars:
        row = {s: m[b.ts_event] for s, m in by_ts.items() if b.ts_event in m}
        rows.append(row or _NO_REFS)
    return rows


def bar_frame(
    bars: Sequence[Bar], rows: Sequence[RefRow], refs: Sequence[str] = ()
) -> pl.DataFrame:
    """The batch features' input frame (see the module doc)."""
    data: dict[str, Any] = {
        "symbol": [b.symbol for b in bars],
        "ts_event": pl.Series([b.ts_event for b in bars], dtype=pl.Int64),
        "ts_init": pl.Series([b.ts_init for b in bars], dtype=pl.Int64),
        **{f: pl.Series([getattr(b, f) for b in bars], dtype=pl.Float64) for f in FIELDS},
        "n_trades": pl.Series([b.n_trades for b in bars], dtype=pl.Int64),
        "buy_volume": pl.Series([b.buy_volume for b in bars], dtype=pl.Float64),
    }
    syms = sorted({*refs, *(s for r in rows for s in r)})
    for s in syms:
        got = [r.get(s) for r in rows]
        for f in FIELDS:
            vals = [None if g is None else getattr(g, f) for g in got]
            data[f"{s.lower()}_{f}"] = pl.Series(vals, dtype=pl.Float64)
    return pl.DataFrame(data)


def same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit-for-bit equality, except that any NaN equals any NaN."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    eq: np.ndarray = (a.view(np.uint64) == b.view(np.uint64)) | (np.isnan(a) & np.isnan(b))
    return eq


# --- look-ahead check ----------------------------------------------------------------------------


@dataclass
class ColumnLookahead:
    column: str
    checked: int = 0  # truncation points compared
    finite: int = 0  # of which the full-history value was finite (a NaN == NaN pass is weak)
    violations: int = 0
    first: list[tuple[int, float, float]] = field(default_factory=list)  # (t, full, truncated)
    shared_state: int = 0  # bars that differ when two instances are interleaved
    shared_first: tuple[int, float, float] | None = None

    @property
    def ok(self) -> bool:
        return self.violations == 0 and self.shared_state == 0


@dataclass
class LookaheadReport:
    label: str
    kind: str
    bars: int
    cuts: list[int]
    columns: list[ColumnLookahead]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.columns)

    def column(self, name: str) -> ColumnLookahead:
        return next(c for c in self.columns if c.column == name)


def cut_points(n: int, warmups: Sequence[int | None], extra: int, seed: int) -> list[int]:
    """Boundaries (first 5 bars, each warm-up +-1, the last bar) plus `extra` seeded random cuts."""
    pts = {*range(min(5, n)), n - 1}
    for w in warmups:
        if w is not None:
            pts |= {w - 1, w, w + 1}
    pts = {t for t in pts if 0 <= t < n}
    rest = np.setdiff1d(np.arange(n), np.fromiter(pts, dtype=np.int64))
    k = min(extra, rest.size)
    pts |= set(np.random.default_rng(seed).choice(rest, size=k, replace=False).tolist())
    return sorted(pts)


def check_lookahead(
    feature: Any,
    bars: Sequence[Bar],
    refs: Mapping[str, Sequence[Bar]] | None = None,
    cuts: int = 40,
    seed: int = 0,
    kwargs: Mapping[str, Any] | None = None,
    keep: int = 3,
) -> LookaheadReport:
    """Truncated recompute at the boundary cuts plus `cuts` random ones, and the shared-state
    check; `keep` violations are kept per column."""
    target = load_target(feature, kwargs)
    rows = align_refs(bars, refs)
    n = len(bars)
    if n < 2:
        raise ValueError("the look-ahead check needs at least 2 bars")
    full = target.run(bars, rows)
    first_finite = [
        int(np.argmax(np.isfinite(c))) if np.isfinite(c).any() else None for c in full.T
    ]
    pts = cut_points(n, [*target.declared, *first_finite], cuts, seed)
    report = [ColumnLookahead(c) for c in target.columns]
    for t in pts:
        got = target.last(bars[: t + 1], rows[: t + 1])
        same = same_bits(full[t], got)
        for j, col in enumerate(report):
            col.checked += 1
            col.finite += bool(np.isfinite(full[t, j]))
            if not same[j]:
                col.violations += 1
                if len(col.first) < keep:
                    col.first.append((t, float(full[t, j]), float(got[j])))
    _shared_state(target, bars, rows, report)
    return LookaheadReport(target.label, target.kind, n, pts, report)


def _shared_state(
    target: Target, bars: Sequence[Bar], rows: Sequence[RefRow], report: list[ColumnLookahead]
) -> None:
    """Streaming: instances on bars[:h] and bars[n-h:], updated in turn, against separate runs.
    Batch: f(bars[:h]) again after f(bars[n-h:]) against its first call (module-level caches)."""
    n = len(bars)
    h = n // 2
    xs, xr, ys, yr = bars[:h], rows[:h], bars[n - h :], rows[n - h :]
    sep_x = target.run(xs, xr)
    sep_y = target.run(ys, yr)
    if target.kind == "batch":
        pairs = [(target.run(xs, xr), sep_x, 0)]
    else:
        a, b = target.fresh(), target.fresh()
        ax: list[tuple[float, ...]] = []
        by: list[tuple[float, ...]] = []
        for i in range(h):
            ax.append(a(xs[i], xr[i]))
            by.append(b(ys[i], yr[i]))
        shape = (h, len(target.columns))
        inter_x = np.array(ax, dtype=np.float64).reshape(shape)
        inter_y = np.array(by, dtype=np.float64).reshape(shape)
        pairs = [(inter_x, sep_x, 0), (inter_y, sep_y, n - h)]
    for got, want, off in pairs:
        bad = ~same_bits(got, want)
        for j, col in enumerate(report):
            idx = np.flatnonzero(bad[:, j])
            col.shared_state += int(idx.size)
            if idx.size and col.shared_first is None:
                i = int(idx[0])
                col.shared_first = (off + i, float(want[i, j]), float(got[i, j]))


# --- CLI -----------------------------------------------------------------------------------------


def load_bars(path: str, symbols: Sequence[str], limit: int) -> dict[str, list[Bar]]:
    """The first `limit` bars of symbols[0] and the other symbols' bars over the same span, from a
    bar file (`dataflows.io.files.scan`: parquet, parquet glob or CSV): symbol, open_time, open,
    high, low, close, volume[, n_trades, buy_volume]. The bar interval is the median spacing."""
    from dataflows.io.files import scan

    lf = scan(path).with_columns(pl.col("open_time").dt.epoch("ns").alias("ts"))
    main_df = lf.filter(pl.col("symbol") == symbols[0]).sort("ts").head(limit).collect()
    if main_df.height == 0:
        raise ValueError(f"no bars for {symbols[0]} in {path}")
    lo, hi = main_df["ts"][0], main_df["ts"][-1]
    dts = main_df["ts"].diff().drop_nulls()
    interval = int(dts.median() or NS_PER_MINUTE) if dts.len() else NS_PER_MINUTE  # type: ignore[arg-type]
    out = {symbols[0]: _to_bars(main_df, symbols[0], interval)}
    for s in symbols[1:]:
        df = lf.filter((pl.col("symbol") == s) & pl.col("ts").is_between(lo, hi)).sort("ts")
        out[s] = _to_bars(df.collect(), s, interval)
        if not out[s]:
            raise ValueError(f"no bars for reference {s} in {path} over the checked span")
    return out


def _to_bars(df: pl.DataFrame, symbol: str, interval: int) -> list[Bar]:
    """As `dataflows.io.files.to_messages`, plus the file's interval and optional trade columns."""
    nt = df["n_trades"].to_list() if "n_trades" in df.columns else [0] * df.height
    bv = df["buy_volume"].to_list() if "buy_volume" in df.columns else [0.0] * df.height
    cols = [df[c].to_list() for c in ("ts", *FIELDS)]
    return [
        Bar(symbol, ts, ts + interval, o, h, lo, c, v, interval, k or 0, b or 0.0)
        for ts, o, h, lo, c, v, k, b in zip(*cols, nt, bv, strict=True)
    ]


def main(
    feature: str, data: str, symbol: str, ref_symbol: str | None, bars: int, cuts: int, seed: int
) -> int:
    """`cryptoflow offline lookahead-check`: both reports as tables; 0 if no column looks ahead
    or shares state, 1 otherwise (a warm-up longer than declared is reported, not failed)."""
    from rich.console import Console

    from offline.warmup import check_warmup, print_warmup

    console = Console()
    try:
        target = load_target(feature)
        refs = [
            r
            for r in dict.fromkeys([*(target.refs), *([ref_symbol] if ref_symbol else [])])
            if r != symbol
        ]
        data_bars = load_bars(data, [symbol, *refs], bars)
        main_bars = data_bars.pop(symbol)
        ref_bars = data_bars or None
        console.print(
            f"[bold]{target.label}[/] ({target.kind}) on {len(main_bars):,} {symbol} bars from "
            f"{data}" + (f", refs {sorted(data_bars)}" if data_bars else "")
        )
        la = check_lookahead(target, main_bars, ref_bars, cuts=cuts, seed=seed)
        print_lookahead(la, console)
        wu = check_warmup(target, main_bars, ref_bars)
        print_warmup(wu, console)
    except (ValueError, TypeError, FileNotFoundError) as e:
        console.print(f"[red]error:[/] {e}")
        return 2
    console.print(
        "[green]no look-ahead, no shared state[/]"
        if la.ok
        else "[red]LOOK-AHEAD OR SHARED STATE DETECTED[/]"
    )
    return 0 if la.ok else 1


def _g(x: float) -> str:
    return f"{x:.10g}"


def print_lookahead(rep: LookaheadReport, console: Any) -> None:
    from rich.table import Table

    tab = Table(
        title=f"look-ahead: {rep.label}, {len(rep.cuts)} truncation points over "
        f"{rep.bars:,} bars (bit-exact)"
    )
    for h in (
        "column",
        "checked",
        "finite",
        "violations",
        "first violations (t: full / trunc)",
        "shared state",
    ):
        left = h == "column" or h.startswith("first")
        tab.add_column(h, justify="left" if left else "right", overflow="fold")
    for c in rep.columns:
        first = "; ".join(f"{t}: {_g(a)} / {_g(b)}" for t, a, b in c.first)
        shared = "ok" if c.shared_state == 0 else f"[red]{c.shared_state} bars differ[/]"
        if c.shared_first is not None:
            t, a, b = c.shared_first
            shared += f" (first {t}: {_g(a)} / {_g(b)})"
        viol = f"[red]{c.violations}[/]" if c.violations else "0"
        tab.add_row(c.column, str(c.checked), str(c.finite), viol, first, shared)
    console.print(tab)
