"""Training sets by replay: history -> the live flow's input and features stages -> parquet
(features + labels) and the ClickHouse `features` table.

Features come only from the streaming operators (never re-implemented here); labels are computed
afterwards per symbol from the replayed bars, since they look forward by definition.

The file (docs/features.md, "Training-set file"): times are `Datetime(ns, UTC)`; a value that is not
available is null, never NaN (features in warm-up or otherwise undefined, labels whose horizon runs
past the data); `warmup` is True on the rows where any feature is still warming up; a trade-flow
column with no value on any row (bars not built from trades) is left out, with a warning and a note
in the parquet metadata (`cryptoflow` key, JSON).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from rich.console import Console

from dataflows.backtest import BacktestSpec, plan_file_replay, replay_source
from dataflows.flow import build_feature_flow, selected_symbols
from dataflows.io.clickhouse import ClickHouseSink
from dataflows.io.parquet import FeatureParquetSink
from dataflows.io.progress import counted
from dataflows.runner import execute
from infra.clickhouse import BatchWriter, connect, ensure_tables
from offline.labels import LabelSpec, compute_labels, parse_label
from operators.feature_engine import FeatureEngine
from operators.features import FeatureSet, feature_set
from operators.features.registry import output_columns
from schemas.config import Config
from schemas.messages import FeatureSetInfo


@dataclass(frozen=True)
class DatasetSpec:
    source: str  # kafka:<topic> | file:<path or parquet glob>
    symbols: tuple[str, ...]
    feature_set: str
    labels: tuple[str, ...]
    out: Path
    start_ns: int | None = None
    end_ns: int | None = None
    workers: int = 1
    store: bool = True  # also write the ClickHouse `features` table


@dataclass(frozen=True)
class DatasetResult:
    dataset_id: str
    version: str
    rows: int
    rows_by_symbol: dict[str, int]
    seconds: float
    path: Path
    dropped: dict[str, str] = field(default_factory=dict)  # column left out -> why


WARMUP_COLUMN = "warmup"
METADATA_KEY = b"cryptoflow"  # parquet key-value metadata: JSON, see `_metadata`
# Families that need bars built from trades (n_trades, taker-buy volume): NaN on every kline bar.
TRADE_FLOW_FAMILIES = frozenset({"trade_imbalance", "trade_count", "trade_size"})
TRADE_FLOW_REASON = (
    "trade-flow features need bars built from trades (n_trades > 0, taker-buy volume); "
    "no input bar had them (bars or klines as the source), so the column would be all null"
)


@dataclass(frozen=True)
class ColumnInfo:
    column: str
    family: str
    warmup: int  # first bar (aligned bars for pair features) with a value
    ref: str | None  # reference symbol of a pair feature


def column_info(fs: FeatureSet) -> list[ColumnInfo]:
    """Per output column of `fs`: its family, declared warm-up and pair reference."""
    return [
        ColumnInfo(c, f.family, f.warmup, getattr(f, "ref", None))
        for s, f in zip(fs.specs, fs.features, strict=True)
        for c in output_columns(s, f)[1]
    ]


def warmup_flags(
    infos: list[ColumnInfo], symbol: str, ts: np.ndarray, ref_ts: dict[str, np.ndarray]
) -> np.ndarray:
    """True where any column of one symbol's replayed rows (in bar order) is still warming up.

    Row t of a column with warm-up w is warming while t < w; for a pair feature t counts the
    bars aligned with its reference (same open time), and the reference symbol's own column
    (never available) is not a warm-up."""
    n = len(ts)
    rows = np.arange(n)
    warm = np.zeros(n, dtype=bool)
    for info in infos:
        if info.ref is None:
            warm |= rows < info.warmup
        elif info.ref != symbol:
            aligned = np.isin(ts, ref_ts.get(info.ref, np.array([], dtype=ts.dtype)))
            warm |= np.cumsum(aligned) <= info.warmup  # aligned bars seen up to t, inclusive
    return warm


def dataset_id_for(
    spec: DatasetSpec, fs: FeatureSet, labels: list[LabelSpec], cfg: Config | None = None
) -> str:
    """Deterministic, so a rerun replaces its own ClickHouse rows instead of adding more."""
    doc = {
        "set": fs.name,
        "bars": cfg.bars.model_dump() if cfg is not None else None,
        "source": spec.source,
        "symbols": sorted(spec.symbols),
        "start": spec.start_ns,
        "end": spec.end_ns,
        "features": fs.version,
        "labels": [repr(lab) for lab in labels],
    }
    return "ds-" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def build_dataset(
    cfg: Config, spec: DatasetSpec, console: Console | None = None, progress: bool = True
) -> DatasetResult:
    console = console or Console(stderr=True)
    # Everything that can be wrong with the request fails here, before any work.
    fs = feature_set(spec.feature_set, cfg.feature_sets)
    labels = [parse_label(s) for s in spec.labels]
    needed = {c for lab in labels for c in lab.feature_columns} - set(fs.columns)
    if needed:
        raise ValueError(f"labels need feature column(s) {sorted(needed)} not in {fs.name!r}")
    if WARMUP_COLUMN in fs.columns:
        raise ValueError(f"feature column name {WARMUP_COLUMN!r} is reserved; use an alias")
    if spec.out.suffix != ".parquet":
        raise ValueError(f"--out must be a .parquet file, got {spec.out}")
    bt = BacktestSpec(spec.source, spec.symbols, spec.start_ns, spec.end_ns, workers=spec.workers)
    if bt.scheme == "file":  # what the file holds, checked as a backtest checks it
        plan = plan_file_replay(bt, cfg, "no rows to build a dataset from")
        bt, spec = plan.spec, replace(spec, symbols=plan.spec.symbols)  # named, in the id
        if plan.absent:  # without --symbols: the config's symbols the file holds, and said
            console.print(
                f"note: {spec.source} holds no {plan.kind} of the config's "
                f"{', '.join(plan.absent)}; the dataset has {', '.join(spec.symbols)} only",
                markup=False,
                highlight=False,
            )
    elif not spec.symbols:
        spec = replace(spec, symbols=tuple(cfg.symbols))
    symbols = sorted(selected_symbols(cfg, spec.symbols))
    FeatureEngine(fs, symbols)  # e.g. a pair feature whose reference symbol is not selected
    dsid = dataset_id_for(spec, fs, labels, cfg)
    ch = cfg.clickhouse
    clickhouse = None
    if spec.store:
        client = connect(ch.dsn, ch.database)
        ensure_tables(client, ch.database)
        clickhouse = ClickHouseSink(ch.dsn, ch.database, dsid, ch.batch_rows, ch.batch_seconds)

    t0 = time.perf_counter()
    spec.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".rows-", dir=spec.out.parent))
    try:
        src, kind, source_name = replay_source(bt, cfg)
        title = f"[bold]features[/] {fs.name} ({len(fs.columns)} columns)"
        with counted(src, title, console, progress) as counted_src:
            flow = build_feature_flow(
                cfg,
                counted_src,
                fs,
                kind=kind,
                rows=FeatureParquetSink(tmp, fs.columns),
                clickhouse=clickhouse,
                symbols=spec.symbols,
                source_name=source_name,
            )
            execute(flow, spec.workers)
        counts, dropped = _label_and_write(tmp, spec.out, fs, labels, console, progress, dsid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if spec.store:
        info = FeatureSetInfo(fs.version, fs.name, 0, tuple(fs.columns), tuple(fs.spec_texts()))
        writer = BatchWriter(client, ch.database, dsid, 1_000, 1.0)
        writer.add("feature_sets", info)
        writer.flush()
    secs = time.perf_counter() - t0
    rows = sum(counts.values())
    return DatasetResult(dsid, fs.version, rows, counts, secs, spec.out, dropped)


def _metadata(
    dataset_id: str, fs: FeatureSet, kept: list[str], dropped: dict[str, str]
) -> dict[bytes, bytes]:
    doc = {
        "dataset_id": dataset_id,
        "feature_set": fs.name,
        "feature_version": fs.version,
        "feature_columns": kept,
        "dropped_columns": dropped,
        "missing_values": "null (never NaN): warm-up, undefined features, labels past the data",
        "warmup_column": WARMUP_COLUMN,
        "times": "Datetime(ns, UTC)",
    }
    return {METADATA_KEY: json.dumps(doc, sort_keys=True).encode()}


def _scan(
    files: list[Path], infos: list[ColumnInfo]
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Before writing anything: the trade-flow columns with no value on any row (left out), and
    the reference symbols' open times (for the pair features' warm-up)."""
    trade_cols = [i.column for i in infos if i.family in TRADE_FLOW_FAMILIES]
    refs = {i.ref for i in infos if i.ref is not None}
    have: set[str] = set()
    ref_ts: dict[str, np.ndarray] = {}
    rows = 0
    for f in files:
        t = pq.read_table(f, columns=["symbol", "ts_event", *trade_cols])
        rows += t.num_rows
        have |= {c for c in trade_cols if t[c].null_count < t.num_rows}
        if t.num_rows and (sym := t["symbol"][0].as_py()) in refs:
            ref_ts[sym] = t["ts_event"].cast("int64").to_numpy()
    if rows == 0:  # no bars at all: an error later, not a column to leave out
        return {}, ref_ts
    return {c: TRADE_FLOW_REASON for c in trade_cols if c not in have}, ref_ts


def _label_and_write(
    tmp: Path,
    out: Path,
    fs: FeatureSet,
    labels: list[LabelSpec],
    console: Console,
    progress: bool,
    dataset_id: str = "",
) -> tuple[dict[str, int], dict[str, str]]:
    """Per symbol: read the replayed rows, add the warm-up flag and labels, append to one
    parquet file. Returns (rows per symbol, columns left out -> why)."""
    files = sorted(tmp.glob("*.parquet"))
    infos = column_info(fs)
    dropped, ref_ts = _scan(files, infos)
    kept = [c for c in fs.columns if c not in dropped]
    if dropped:
        console.print(
            f"[yellow]warning:[/] left out of the dataset: {', '.join(dropped)}: "
            f"{TRADE_FLOW_REASON}"
        )
    end_ts = [c for lab in labels for c in lab.end_ts_columns]
    counts: dict[str, int] = {}
    writer: pq.ParquetWriter | None = None
    part = out.with_suffix(".parquet.partial")
    try:
        for f in files:
            frame = pl.read_parquet(f)
            if frame.is_empty():
                continue
            sym = frame["symbol"][0]
            if sym in counts or frame["symbol"].n_unique() != 1:
                raise RuntimeError(f"{sym}: rows split across files; labels need one series")
            ts = frame["ts_event"].dt.epoch("ns").to_numpy()
            warm = warmup_flags(infos, sym, ts, ref_ts)
            parts = [frame.drop(list(dropped)), pl.DataFrame({WARMUP_COLUMN: warm})]
            if labels:  # labels work on int ns; their end times become datetimes too
                lab = compute_labels(labels, frame.with_columns(pl.Series("ts_event", ts)))
                parts.append(lab.with_columns(pl.col(end_ts).cast(pl.Datetime("ns", "UTC"))))
            frame = pl.concat(parts, how="horizontal").with_columns(
                pl.lit(fs.name).alias("feature_set"), pl.lit(fs.version).alias("feature_version")
            )
            table = frame.to_arrow()
            if writer is None:
                schema = table.schema.with_metadata(_metadata(dataset_id, fs, kept, dropped))
                writer = pq.ParquetWriter(part, schema, compression="zstd")
            writer.write_table(table)
            counts[sym] = frame.height
            if progress:
                console.print(f"  {sym}: {frame.height:,} rows labelled")
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError("the replay produced no bars: check --source, --symbols, --start/--end")
    part.replace(out)  # all or nothing: a failed run leaves no half-written dataset behind
    return counts, dropped


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The `cryptoflow` note of a dataset file (dataset id, set, columns left out and why)."""
    meta = pq.read_schema(path).metadata or {}
    return dict(json.loads(meta[METADATA_KEY])) if METADATA_KEY in meta else {}
