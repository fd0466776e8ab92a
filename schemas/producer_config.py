"""Signal producers in the config: `[[producers]]` entries and the `[models]` registry location.

    [[producers]]
    name = "xgb"                 # unique; signals' `strategy`, predictions' `producer`
    kind = "model"               # "model" (a registry model) | "sma_cross" (the rule)
    model = "xgb_trend"          # registry name
    version = "promoted"         # "promoted" | "latest" | "v<N>" (a backtest pins it at start)
    decision = { long = 0.55, short = 0.55 }

    [strategy]
    producer = "xgb"             # the producer that trades ("" = the [strategy] SMA rule)

Every producer's signals (and a model's predictions) are emitted and stored; only the one that
`strategy.producer` names reaches the account.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from schemas.risk_config import _Section

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class DecisionConfig(_Section):
    """Probabilities -> direction (operators/models/decision.py): long when the long class's
    probability >= long, short when the short class's >= short, else flat."""

    long: float = Field(0.55, gt=0, le=1)
    short: float = Field(0.55, gt=0, le=1)


class TrainConfig(_Section):
    """How `backtest --walk-forward` trains this producer's model per window (offline train's
    settings): a label spec as `offline dataset --label` takes it, and the column to learn."""

    kind: Literal["xgboost", "lightgbm"]
    label: str = Field(min_length=1)  # e.g. "threshold:h=10,thr=0.002"
    # The label column; "" = the spec's label (threshold), `<prefix>_label` (triple barrier,
    # xgboost) or `<prefix>_binary` (triple barrier, lightgbm).
    target: str = ""
    calibration: Literal["platt", "isotonic", "none"] = "platt"
    n_estimators: int = Field(300, gt=0)
    max_depth: int = Field(6, gt=0)
    num_leaves: int = Field(31, gt=1)
    learning_rate: float = Field(0.05, gt=0)
    early_stopping_rounds: int = Field(30, gt=0)
    threads: int = Field(1, gt=0)
    seed: int = 0
    fee_bps: float = Field(10.0, ge=0)  # the per-fold signal Sharpe's cost


class ScheduleEntry(_Section):
    """From `start` (int ns UTC, a bar's ts_event) on, score registry version `version`,
    whose model file must have `sha256`. Written by `backtest --walk-forward`."""

    start: int
    version: str = Field(pattern=r"^v[1-9][0-9]*$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ProducerConfig(_Section):
    name: str = Field(min_length=1)
    kind: Literal["model", "sma_cross"]
    # kind = "model"
    model: str = ""
    version: str = "promoted"
    decision: DecisionConfig = DecisionConfig()
    train: TrainConfig | None = None
    # Walk-forward: one version per out-of-sample window (no rows scored before the first).
    schedule: tuple[ScheduleEntry, ...] = ()
    # kind = "sma_cross"
    fast: int = Field(10, gt=0)
    slow: int = Field(50, gt=0)
    price: Literal["close", "open", "high", "low"] = "close"

    @model_validator(mode="after")
    def _check(self) -> ProducerConfig:
        if not NAME.match(self.name):
            raise ValueError(f"producer name {self.name!r}: use [a-z0-9][a-z0-9_.-]*")
        if self.kind == "model":
            if not self.model:
                raise ValueError(f'producer {self.name!r}: kind = "model" needs model = <name>')
            if not re.match(r"^(promoted|latest|v[1-9][0-9]*)$", self.version):
                raise ValueError(
                    f"producer {self.name!r}: version {self.version!r}: want promoted, latest "
                    "or v<N>"
                )
            starts = [e.start for e in self.schedule]
            if starts != sorted(set(starts)):
                raise ValueError(f"producer {self.name!r}: schedule starts must increase")
        elif self.fast >= self.slow:
            raise ValueError(f"producer {self.name!r}: fast ({self.fast}) must be < slow")
        return self


class ModelsConfig(_Section):
    # Registry root; "" = $CRYPTOFLOW_REGISTRY, else <CRYPTOFLOW_DATA_DIR>/registry.
    registry: str = ""
    # Paper/live: how often (wall clock) the flow checks whether a "promoted" model changed.
    reload_s: float = Field(5.0, gt=0)
    # `models retrain`: the out-of-sample metric a challenger must beat the champion on, and by
    # how much (in the metric's units; lower is better for log_loss/brier/ece).
    champion_metric: Literal["log_loss", "brier", "ece", "auc", "accuracy", "sharpe"] = "log_loss"
    min_improvement: float = Field(0.0, ge=0)
