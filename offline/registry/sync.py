"""The registry mirrored into ClickHouse's `models` table (one row per version, run_id
"registry"): the files stay the source of truth, the table is for queries beside runs and
predictions. Rewriting a row with the same key replaces it (ReplacingMergeTree), so a sync is
idempotent and a promotion flips the flags of the rows it changes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from offline.registry.store import ModelVersion, names, promoted, versions
from schemas.messages import ModelInfo

RUN_ID = "registry"
# The per-fold and summary metrics, as training stores them in meta.json.
METRIC_KEYS = ("folds", "metrics")


def model_info(mv: ModelVersion, promoted: bool, ts_init: int | None = None) -> ModelInfo:
    """The `models` row of one version."""
    meta = mv.meta
    spec = meta.get("spec") or {}
    label = meta.get("label", "")
    return ModelInfo(
        name=mv.name,
        version=mv.version,
        ts_event=int(meta.get("registered_ns", 0)),
        ts_init=time.time_ns() if ts_init is None else ts_init,
        kind=str(spec.get("kind", "")),
        feature_set=str(spec.get("feature_set", "")),
        feature_version=str(spec.get("feature_version", "")),
        label=label if isinstance(label, str) else json.dumps(label, sort_keys=True),
        promoted=promoted,
        metrics_json=json.dumps({k: meta[k] for k in METRIC_KEYS if k in meta}, sort_keys=True),
        meta_json=json.dumps(meta, sort_keys=True),
    )


def sync_clickhouse(root: Path, client: Any, database: str, name: str | None = None) -> int:
    """Write the `models` rows of every version of `name` (or of every model); returns the
    number of rows written."""
    from infra.clickhouse import BatchWriter, ensure_tables

    now = time.time_ns()
    rows: list[ModelInfo] = []
    for n in [name] if name is not None else names(root):
        current = promoted(root, n)
        on = current.version if current is not None else None
        rows += [model_info(mv, mv.version == on, now) for mv in versions(root, n)]
    if not rows:
        return 0
    ensure_tables(client, database, ["models"])
    writer = BatchWriter(client, database, RUN_ID, batch_rows=len(rows) + 1, batch_seconds=3600)
    writer.add("models", rows)
    return writer.flush()
