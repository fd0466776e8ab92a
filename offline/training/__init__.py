"""Walk-forward training of tree classifiers on a training-set parquet: purged time windows
(walkforward.py), early-stopped, calibrated XGBoost / LightGBM fits (fit.py), per-fold metrics
(metrics.py) and `train()` with the final model (run.py). `cryptoflow offline train` drives it
(dataflows/cli_train.py) and registers the final model (offline/registry/)."""

from offline.training.run import KINDS, TrainResult, train
from offline.training.walkforward import WalkForward, parse_duration, parse_walk_forward

__all__ = ["KINDS", "TrainResult", "WalkForward", "parse_duration", "parse_walk_forward", "train"]
