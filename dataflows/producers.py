"""The config's signal producers, built per symbol for the strategy step.

No `[[producers]]`: the `[strategy]` SMA rule alone, as before (its plain per-bar path). With
them: every producer runs on every symbol, models are loaded from the registry once at start
(the flow refuses a model whose feature-set version is not the running set's, naming both), and
`strategy.producer` names the one that trades ("" = the [strategy] rule, kept as a producer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from operators.features import FeatureSet
from operators.models.decision import ThresholdDecision
from operators.models.producers import (
    ModelProducer,
    Producer,
    RuleProducer,
    ScheduledProducer,
    SymbolProducers,
)
from operators.models.tree import TreeModel
from operators.strategy_sma_cross import SmaCross
from schemas.config import Config, ProducerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    model: TreeModel
    horizon: int

    @classmethod
    def of(cls, mv: Any) -> LoadedModel:
        """A registry `ModelVersion`, loaded (its model file checked against its sha256)."""
        return cls(mv.name, mv.version, mv.load(), int(mv.meta.get("horizon", 0)))


def registry_root(cfg: Config) -> Path:
    from offline.registry import default_root

    return Path(cfg.models.registry) if cfg.models.registry else default_root()


def pin_models(cfg: Config) -> Config:
    """The config with every model producer's `promoted`/`latest` resolved to its version now:
    a backtest scores one version from start to end, and its run id and stored config say
    which."""
    if not any(p.kind == "model" for p in cfg.producers):
        return cfg
    from offline.registry import resolve

    root = registry_root(cfg)
    pinned = [
        p.model_copy(update={"version": resolve(root, p.model, p.version).version})
        if p.kind == "model" and not p.schedule
        else p
        for p in cfg.producers
    ]
    return cfg.model_copy(update={"producers": pinned})


def model_fingerprints(cfg: Config) -> dict[str, str]:
    """producer name -> the sha256 of the model file a pinned model producer scores with: the
    version name alone is only unique within one registry, and a run id must follow the bytes."""
    if not any(p.kind == "model" and not p.schedule for p in cfg.producers):
        return {}
    from offline.registry import resolve

    root = registry_root(cfg)
    return {
        p.name: str(resolve(root, p.model, p.version).meta.get("model_sha256", ""))
        for p in cfg.producers
        if p.kind == "model" and not p.schedule
    }


def load_models(cfg: Config) -> dict[str, LoadedModel]:
    """producer name -> its model, resolved (promoted/latest/vN). `strategy_factory` checks it
    against the running feature set at start (building one symbol's producers)."""
    from offline.registry import resolve

    out: dict[str, LoadedModel] = {}
    root = registry_root(cfg)
    for p in cfg.producers:
        if p.kind != "model" or p.schedule:
            continue
        out[p.name] = LoadedModel.of(resolve(root, p.model, p.version))
    return out


def load_schedules(cfg: Config) -> dict[str, list[tuple[int, LoadedModel]]]:
    """producer name -> (start ns, model) per walk-forward window; each version's model file
    must be the one the schedule names (its sha256), or the run is refused."""
    from offline.registry import resolve

    out: dict[str, list[tuple[int, LoadedModel]]] = {}
    root = registry_root(cfg)
    for p in cfg.producers:
        if p.kind != "model" or not p.schedule:
            continue
        got: list[tuple[int, LoadedModel]] = []
        for e in p.schedule:
            mv = resolve(root, p.model, e.version)
            if mv.meta.get("model_sha256") != e.sha256:
                raise ValueError(
                    f"producer {p.name}: {p.model} {e.version} in {root} has model sha256 "
                    f"{str(mv.meta.get('model_sha256'))[:12]}..., the schedule names "
                    f"{e.sha256[:12]}...: the walk-forward registry was changed; rerun "
                    "backtest --walk-forward"
                )
            got.append((e.start, LoadedModel.of(mv)))
        out[p.name] = got
    return out


def _model_producer(p: ProducerConfig, m: LoadedModel, fs: FeatureSet) -> ModelProducer:
    return ModelProducer(
        p.name,
        m.model,
        m.name,
        m.version,
        fs.columns,
        fs.version,
        fs.warmup,
        ThresholdDecision(tuple(m.model.spec.classes), p.decision.long, p.decision.short),
        m.horizon,
    )


class PromotionWatch:
    """Paper/live: at most every `models.reload_s` of wall clock, a producer configured with
    version = "promoted" switches to the registry's newly promoted version before the next
    batch it scores. A version the running features cannot feed is refused with a warning and
    the current one keeps trading (never a dead flow, never a silent switch)."""

    def __init__(self, cfg: Config, fs: FeatureSet, clock: Callable[[], int]) -> None:
        self.root = registry_root(cfg)
        self.fs = fs
        self.clock = clock
        self.every_ns = int(cfg.models.reload_s * 1e9)
        self.watched = {
            p.name: p
            for p in cfg.producers
            if p.kind == "model" and p.version == "promoted" and not p.schedule
        }
        self.next_ns = 0
        self._cache: dict[tuple[str, str], LoadedModel] = {}
        self._refused: set[tuple[str, str]] = set()

    def __call__(self, st: SymbolProducers) -> None:
        now = self.clock()
        if not self.watched or now < self.next_ns:
            return
        self.next_ns = now + self.every_ns
        from offline.registry import promoted

        for prod in st.producers:
            p = self.watched.get(prod.name)
            if p is None or not isinstance(prod, ModelProducer):
                continue
            mv = promoted(self.root, p.model)
            if mv is None or mv.version == prod.model_version:
                continue
            key = (p.model, mv.version)
            try:
                loaded = self._cache.get(key)
                if loaded is None:
                    loaded = self._cache[key] = LoadedModel.of(mv)
                prod.swap(loaded.model, loaded.version)
            except (ValueError, OSError) as exc:
                if key not in self._refused:
                    self._refused.add(key)
                    log.warning(
                        "producer %s keeps %s: promoted %s refused: %s",
                        prod.name,
                        prod.model_version,
                        mv.version,
                        exc,
                    )
                continue
            log.info("producer %s: %s %s -> %s", prod.name, p.model, prod.model_version, mv.version)


def strategy_factory(cfg: Config, fs: FeatureSet) -> Callable[[str], Any]:
    """symbol -> the strategy step's state: a `SmaCross` (no [[producers]]) or `SymbolProducers`."""
    s = cfg.strategy
    if not cfg.producers:

        def rule(symbol: str) -> SmaCross:
            return SmaCross(symbol, s.fast, s.slow, s.price)

        return rule
    models = load_models(cfg)
    schedules = load_schedules(cfg)
    names = [p.name for p in cfg.producers]
    implicit = not s.producer  # the [strategy] rule trades, next to the declared producers
    trading = names.index(s.producer) if s.producer else len(names)

    def producers(symbol: str) -> SymbolProducers:
        made: list[Producer] = []
        for p in cfg.producers:
            if p.kind == "model" and p.schedule:
                plan = schedules[p.name]
                inner = _model_producer(p, plan[0][1], fs)
                steps = [(start, m.model, m.version) for start, m in plan]
                made.append(ScheduledProducer(inner, steps))
            elif p.kind == "model":
                made.append(_model_producer(p, models[p.name], fs))
            else:
                made.append(RuleProducer(p.name, SmaCross(symbol, p.fast, p.slow, p.price)))
        if implicit:
            made.append(RuleProducer(s.rule_name, SmaCross(symbol, s.fast, s.slow, s.price)))
        return SymbolProducers(made, trading)

    producers(cfg.symbols[0])  # fail now, not inside the running flow
    return producers


def in_sample_warnings(cfg: Config, first_ns: int, last_ns: int) -> list[str]:
    """One warning per pinned model producer whose model was trained on bars this replay covers
    ([first_ns, last_ns], bar open times): its results there are in sample. A walk-forward
    schedule is out of sample by construction and is not checked."""
    from datetime import datetime

    from offline.registry import resolve

    out: list[str] = []
    root = registry_root(cfg)
    span = max(last_ns - first_ns, 1)
    for p in cfg.producers:
        if p.kind != "model" or p.schedule:
            continue
        mv = resolve(root, p.model, p.version)
        window = mv.meta.get("training_window") or {}
        if not window.get("start") or not window.get("end"):
            continue
        lo, hi = (
            int(datetime.fromisoformat(window[k]).timestamp() * 1e9) for k in ("start", "end")
        )
        overlap = min(hi, last_ns) - max(lo, first_ns)
        if overlap <= 0:
            continue
        out.append(
            f"producer {p.name}: model {mv.name} {mv.version} was trained on bars from "
            f"{window['start']} to {window['end']}, and this replay covers "
            f"{overlap / 86_400e9:.1f} days of them ({overlap / span:.0%} of the run): its "
            f"results there are in sample and prove nothing; replay bars after {window['end']}, "
            "or use --walk-forward"
        )
    return out
