"""Training sets by replay: history -> the live flow's input and features stages -> parquet
(features + labels) and the ClickHouse `features` table.

Features come only from the streaming operators (never re-implemented here); labels are computed
afterwards per symbol from the replayed bars, since they look forward by definition.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from rich.console import Console

from dataflows.backtest import BacktestSpec, replay_source
from dataflows.flow import build_feature_flow, selected_symbols
from dataflows.io.clickhouse import ClickHouseSink
from dataflows.io.parquet import FeatureParquetSink
from dataflows.io.progress import counted
from dataflows.runner import execute
from infra.clickhouse import BatchWriter, connect, ensure_tables
from offline.labels import LabelSpec, compute_labels, parse_label
from operators.feature_engine import FeatureEngine
from operators.features import FeatureSet, feature_set
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
    if spec.out.suffix != ".parquet":
        raise ValueError(f"--out must be a .parquet file, got {spec.out}")
    bt = BacktestSpec(spec.source, spec.symbols, spec.start_ns, spec.end_ns, workers=spec.workers)
    bt.scheme  # noqa: B018  (validates the source string)
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
        counts = _label_and_write(tmp, spec.out, fs, labels, console, progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if spec.store:
        info = FeatureSetInfo(fs.version, fs.name, 0, tuple(fs.columns), tuple(fs.spec_texts()))
        writer = BatchWriter(client, ch.database, dsid, 1_000, 1.0)
        writer.add("feature_sets", info)
        writer.flush()
    secs = time.perf_counter() - t0
    return DatasetResult(dsid, fs.version, sum(counts.values()), counts, secs, spec.out)


def _label_and_write(
    tmp: Path,
    out: Path,
    fs: FeatureSet,
    labels: list[LabelSpec],
    console: Console,
    progress: bool,
) -> dict[str, int]:
    """Per symbol: read the replayed rows, add labels, append to one parquet file."""
    files = sorted(tmp.glob("*.parquet"))
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
            if labels:
                frame = pl.concat([frame, compute_labels(labels, frame)], how="horizontal")
            frame = frame.with_columns(
                pl.lit(fs.name).alias("feature_set"), pl.lit(fs.version).alias("feature_version")
            )
            table = frame.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(part, table.schema, compression="zstd")
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
    return counts
