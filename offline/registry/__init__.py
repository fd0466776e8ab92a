"""The model registry: trained models as immutable, numbered versions (v1, v2, ...) with their
metadata, one promoted version per name, and a mirror in ClickHouse's `models` table.

Files (`store.py`):
  <root>/<name>/v<N>/            the model (`TreeModel.save`) + meta.json (the caller's keys and
                                 name, version, registered_ns, model_sha256, spec, libraries,
                                 git_revision)
  <root>/<name>/PROMOTED         JSON naming the promoted version
  <root>/<name>/promotions.jsonl one line per promotion

The root is `--registry`, else the config's `models.registry`, else `default_root()`
($CRYPTOFLOW_REGISTRY, else <CRYPTOFLOW_DATA_DIR>/registry). `cryptoflow models` lists, shows,
promotes and diffs versions (dataflows/cli_models.py); `retrain()` (retrain.py, `cryptoflow
models retrain`) trains a challenger to the promoted champion and promotes it only if it wins
on a window out of sample for both.
"""

from offline.registry.retrain import RetrainResult, retrain
from offline.registry.store import (
    MISSING,
    ModelVersion,
    RegistryError,
    default_root,
    diff,
    flatten,
    names,
    promote,
    promoted,
    promotions,
    register,
    resolve,
    versions,
)
from offline.registry.sync import RUN_ID, model_info, sync_clickhouse

__all__ = [
    "MISSING",
    "RUN_ID",
    "ModelVersion",
    "RegistryError",
    "RetrainResult",
    "default_root",
    "diff",
    "flatten",
    "model_info",
    "names",
    "promote",
    "promoted",
    "promotions",
    "register",
    "resolve",
    "retrain",
    "sync_clickhouse",
    "versions",
]
