"""Run configuration (pydantic: validated once at startup, so bad config fails loudly and early).

A config file is TOML. Connection settings may be overridden by environment variables or a `.env`
file (`KAFKA_BOOTSTRAP`, `CLICKHOUSE_DSN`, `CRYPTOFLOW_DATA_DIR`); secrets never live in the file.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.producer_config import DecisionConfig, ModelsConfig, ProducerConfig
from schemas.risk_config import (
    BINANCE_SPOT_MARKETS,
    ExecutionConfig,
    MarketConfig,
    PortfolioConfig,
    RiskConfig,
    SizingConfig,
    _Section,
    merge_markets,
)

__all__ = [
    "BarsConfig",
    "ClickHouseConfig",
    "Config",
    "ConfigError",
    "DecisionConfig",
    "ExecutionConfig",
    "FeaturesConfig",
    "KafkaConfig",
    "MarketConfig",
    "ModelsConfig",
    "PaperConfig",
    "PortfolioConfig",
    "ProducerConfig",
    "RiskConfig",
    "Settings",
    "SizingConfig",
    "StrategyConfig",
    "ValidationConfig",
    "apply_sets",
    "data_dir",
    "explain",
    "load_config",
    "unknown_key_message",
]


class BarsConfig(_Section):
    interval_s: int = Field(60, gt=0)
    grace_ms: int = Field(2_000, ge=0)  # out-of-order tolerance before a bar closes

    @property
    def interval_ns(self) -> int:
        return self.interval_s * 1_000_000_000


class FeaturesConfig(_Section):
    # A built-in set (core, tcn12, full: operators/features/sets.py) or one declared under
    # [feature_sets]; specs are `<family>_<params>` names (docs/features.md).
    set: str = Field("core", min_length=1)
    store: bool = True  # write feature rows to ClickHouse (`features` table)


class StrategyConfig(_Section):
    kind: Literal["sma_cross"] = "sma_cross"
    fast: int = Field(10, gt=0)
    slow: int = Field(50, gt=0)
    price: Literal["close", "open", "high", "low"] = "close"
    long_only: bool = True
    # The [[producers]] entry whose signals trade; "" = this section's SMA rule.
    producer: str = ""

    @property
    def rule_name(self) -> str:
        """The name this section's SMA rule's signals carry (as `SmaCross.name`)."""
        return f"sma_cross_{self.fast}_{self.slow}"

    @model_validator(mode="after")
    def _fast_below_slow(self) -> StrategyConfig:
        if self.fast >= self.slow:
            raise ValueError(f"strategy.fast ({self.fast}) must be < strategy.slow ({self.slow})")
        return self


class ValidationConfig(_Section):
    """What a plausible market-data message is; anything else is dead-lettered with a reason and
    never moves a watermark, a sequence guard or a price reference (docs/validation.md)."""

    # Event time may run at most this far ahead of the symbol's watermark (replay and live);
    # further ahead is held until confirmed. Trades are held beyond the bar grace period already
    # (a trade further ahead would make real trades late), at most this far.
    max_ahead_s: float = Field(86_400.0, gt=0)
    # Live only: at most this far ahead of the wall clock (exchange/host clock skew).
    max_clock_ahead_s: float = Field(60.0, gt=0)
    min_price: float = Field(1e-12, gt=0)
    max_price: float = Field(1e9, gt=0)
    max_size: float = Field(1e12, gt=0)  # trade size and bar volume
    # A price more than max(move_floor, move_k x recent range) away (in log terms) from the
    # last good price is quarantined unless `confirm` consecutive messages agree on it.
    move_k: float = Field(50.0, gt=0)
    move_floor: float = Field(0.25, gt=0)
    confirm: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> ValidationConfig:
        if self.min_price >= self.max_price:
            raise ValueError(
                f"validation.min_price ({self.min_price}) must be < max_price ({self.max_price})"
            )
        return self


class KafkaConfig(_Section):
    bootstrap: str = "127.0.0.1:9092"
    partitions: dict[str, int] = Field(default_factory=dict)  # topic -> count overrides
    batch_size: int = Field(10_000, gt=0)
    # How long the broker may be unreachable (reads stall, deliveries unacknowledged) before a
    # run fails with a one-line error; a broker back within it loses nothing.
    outage_s: float = Field(30.0, gt=0)


class ClickHouseConfig(_Section):
    dsn: str = ""  # empty: chdb:///<data_dir>/clickhouse
    database: str = "cryptoflow"
    # chDB pays ~6 ms per insert (one part on disk): big batches for replay; live latency is
    # bounded by batch_seconds and the epoch flush.
    batch_rows: int = Field(50_000, ge=1_000)
    batch_seconds: float = Field(1.0, gt=0)
    # A failed insert or connect is retried this many times, backing off from retry_backoff_s
    # (doubling, capped at 8 s), then the run fails with a one-line error.
    retries: int = Field(4, ge=0)
    retry_backoff_s: float = Field(0.5, ge=0)


class PaperConfig(_Section):
    epoch_s: float = Field(2.0, gt=0)  # snapshot interval (Bytewax recovery epoch)
    heartbeat_s: float = Field(10.0, gt=0)
    # Live: a symbol that sent no bar for this long (wall clock) no longer holds the one account
    # back (its bars are booked when they come). Replays always wait: they stay deterministic.
    stale_after_s: float = Field(120.0, gt=0)


class Config(_Section):
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    # Where the symbols trade: a trade from another venue is another instrument (Binance spot
    # BTCUSDT and USD-M futures BTCUSDT share a name), so it is dead-lettered, never merged.
    # `markets` holds Binance spot's filters: another venue needs its own [markets.<SYMBOL>].
    venue: str = Field("binance_spot", pattern=r"^[A-Za-z0-9_.-]+$")
    bars: BarsConfig = BarsConfig()
    features: FeaturesConfig = FeaturesConfig()
    feature_sets: dict[str, list[str]] = Field(default_factory=dict)
    strategy: StrategyConfig = StrategyConfig()
    producers: list[ProducerConfig] = Field(default_factory=list)
    models: ModelsConfig = ModelsConfig()
    sizing: SizingConfig = SizingConfig()
    risk: RiskConfig = RiskConfig()
    execution: ExecutionConfig = ExecutionConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    validation: ValidationConfig = ValidationConfig()
    paper: PaperConfig = PaperConfig()
    kafka: KafkaConfig = KafkaConfig()
    clickhouse: ClickHouseConfig = ClickHouseConfig()
    # symbol -> exchange filters: Binance's for BTCUSDT, ETHUSDT, SOLUSDT, then the file's
    # [markets.<SYMBOL>] entries, each replacing its symbol's default
    markets: dict[str, MarketConfig] = Field(default_factory=lambda: dict(BINANCE_SPOT_MARKETS))

    def trading_json(self) -> str:
        """The config minus connection settings: what defines a run's results."""
        return self.model_dump_json(exclude={"kafka", "clickhouse", "paper"})

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("symbols must not be empty")
        bad = [s for s in v if not s or not s.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"bad symbol names: {bad}")
        upper = [s.upper() for s in v]
        if len(set(upper)) != len(upper):
            raise ValueError(f"duplicate symbols: {v}")
        return upper

    @field_validator("markets", mode="before")
    @classmethod
    def _markets(cls, v: object) -> object:
        return merge_markets(v)

    @model_validator(mode="after")
    def _across_sections(self) -> Config:
        """Rules between sections; each error names every key involved (`explain` says which
        one a `--set` touched)."""
        p = self.portfolio
        for key in ("fraction", "max_fraction"):
            value = getattr(self.sizing, key)
            if not value <= p.max_leverage:
                raise _cross(
                    f"Input should be less than or equal to {p.max_leverage:g} "
                    f"(portfolio.max_leverage of a {p.kind} account)",
                    (f"sizing.{key}", "portfolio.max_leverage", "portfolio.kind"),
                    value,
                )
        if self.sizing.round_to_lot or self.risk.enabled:
            missing = [s for s in self.symbols if s not in self.markets]
            if missing:
                why = "sizing.round_to_lot" if self.sizing.round_to_lot else "risk.enabled"
                raise _cross(
                    f"no market rules for {', '.join(missing)}: add "
                    f"{', '.join(f'[markets.{s}]' for s in missing)} tick_size, lot_size, "
                    f"min_notional (the exchange's filters); {why} needs them",
                    ("markets", "symbols", why),
                )
        names = [q.name for q in self.producers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise _cross(f"duplicate producer names {dup}", ("producers",))
        if self.strategy.producer and self.strategy.producer not in names:
            raise _cross(
                f"strategy.producer = {self.strategy.producer!r} is not a [[producers]] name "
                f"(have {names})",
                ("strategy.producer", "producers"),
            )
        r = self.risk
        on_grid = [s for s in self.symbols if s in self.markets and self.markets[s].lot_size > 0]
        if r.enabled and r.lot_tick.enabled and not self.sizing.round_to_lot and on_grid:
            # quantities off the lot grid: lot_tick would refuse every order, closes included
            raise _cross(
                "sizing.round_to_lot = false with [risk.lot_tick] on would refuse every order "
                f"of {', '.join(on_grid)} (off the lot grid), closing orders included; set "
                "sizing.round_to_lot = true, or risk.lot_tick.enabled = false",
                ("sizing.round_to_lot", "risk.lot_tick.enabled"),
            )
        return self


def _cross(message: str, keys: tuple[str, ...], value: object = None) -> PydanticCustomError:
    """An error of a rule between sections, located at its first key (see `explain`)."""
    ctx: dict[str, object] = {"keys": keys}
    if value is not None:
        ctx["value"] = value
    return PydanticCustomError("cross_section", message.replace("{", "{{").replace("}", "}}"), ctx)


class Settings(BaseSettings):
    """Environment overrides (and `.env`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    kafka_bootstrap: str | None = None
    clickhouse_dsn: str | None = None
    cryptoflow_data_dir: str = "var"


class ConfigError(ValueError):
    """A config that does not validate, said in one line: the `section.key`, where it came from
    (the file, a `--set`), the value and what is allowed. `errors()` are pydantic's details."""

    def __init__(self, message: str, errors: Sequence[ErrorDetails] = ()) -> None:
        super().__init__(message)
        self._errors = list(errors)

    def errors(self) -> list[ErrorDetails]:
        return list(self._errors)


def _subsection(annotation: object) -> type[BaseModel] | None:
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _mapping_of(annotation: object) -> type[BaseModel] | None:
    """The value section of a mapping of sections (`markets`: symbol -> MarketConfig), or None."""
    if get_origin(annotation) is not dict:
        return None
    args = get_args(annotation)
    return _subsection(args[1]) if len(args) == 2 else None


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The section model at `loc` (() is the whole config), or None (a dict, list or value). A
    name under a mapping of sections (`markets.BTCUSDT`) is that mapping's section."""
    model: type[BaseModel] | None = Config
    i = 0
    while i < len(loc) and model is not None:
        field = model.model_fields.get(str(loc[i]))
        if field is None:
            return None
        model = _subsection(field.annotation)
        item = _mapping_of(field.annotation)
        if model is None and item is not None and i + 1 < len(loc):
            model, i = item, i + 1  # skip the mapping's key
        i += 1
    return model if i >= len(loc) else None


def _keys_of(model: type[BaseModel], prefix: str, out: dict[str, str]) -> None:
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        out[key] = prefix
        sub = _subsection(field.annotation)
        item = _mapping_of(field.annotation)
        if sub is not None:
            _keys_of(sub, key, out)
        elif item is not None:
            _keys_of(item, f"{key}.<SYMBOL>" if name == "markets" else f"{key}.<NAME>", out)


def _all_keys() -> dict[str, str]:
    """Every valid dotted key, at any depth (`risk.max_position_pct.max_pct`), -> its section
    (\"\" for the top level; `markets.<SYMBOL>` under a mapping of sections)."""
    out: dict[str, str] = {}
    _keys_of(Config, "", out)
    return out


def _section_name(section: Sequence[str | int]) -> str:
    return f"[{'.'.join(str(x) for x in section)}]" if section else "the top level"


def unknown_key_message(key: str, section: Sequence[str | int], where: str = "") -> str:
    """`unknown key `fsat` in [strategy]<where>; did you mean `fast`?`"""
    model = _model_at(section)
    valid = sorted(model.model_fields) if model is not None else []
    head = f"unknown key `{key}` in {_section_name(section)}{where}"
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if near:
        return f"{head}; did you mean `{near[0]}`?"
    # A key of another section (`fee_bps` under [strategy]), or close to one.
    keys = _all_keys()
    elsewhere = [k for k in keys if k.rsplit(".", 1)[-1] == key and keys[k]]
    if not elsewhere:
        short = {k.rsplit(".", 1)[-1]: k for k in keys if keys[k]}
        elsewhere = [short[k] for k in difflib.get_close_matches(key, list(short), n=1)]
    if elsewhere:
        section_of, _, name = elsewhere[0].rpartition(".")
        if name == key:
            others = [f"[{k.rpartition('.')[0]}]" for k in elsewhere[1:]]
            also = ""
            if others:  # `max_pct` is a key of several rules
                more = f" and {len(others) - 3} more" if len(others) > 3 else ""
                also = f" (or {', '.join(others[:3])}{more})"
            return f"{head}; `{key}` belongs in [{section_of}]{also}"
        return f"{head}; did you mean `{name}` in [{section_of}]?"
    return f"{head}; valid keys: {', '.join(valid)}"


def _parse_set(item: str) -> tuple[list[str], object]:
    """`section.key=value` -> (path, value): the value as TOML (1e3, true, "x", [1, 2]); a bare
    word that is not TOML is the string itself."""
    key, eq, text = item.partition("=")
    path = [p.strip() for p in key.strip().split(".")]
    if not eq or not all(path):
        raise ConfigError(
            f"--set {item!r}: want section.key=value, e.g. --set strategy.fast=20 "
            '(the value is TOML: 1e3, true, "x", [1, 2])'
        )
    text = text.strip()
    try:
        value: object = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return path, value


def _check_set_path(item: str, path: Sequence[str]) -> list[str]:
    """The path of a `--set`, checked against the config's sections at any depth (an unknown key
    fails before validation, with the nearest valid key); a name under a mapping (a topic in
    `kafka.partitions`, a set in `feature_sets`) is the rest of the path, dots included; under a
    mapping of sections (`markets.XRPUSDT.tick_size`) it is one part, then the section's keys."""
    model: type[BaseModel] = Config
    i = 0
    while i < len(path):
        part = path[i]
        field = model.model_fields.get(part)
        if field is None:
            raise ConfigError(f"--set {item}: {unknown_key_message(part, path[:i])}")
        here = ".".join(path[: i + 1])
        sub = _subsection(field.annotation)
        if sub is not None:
            model, i = sub, i + 1
            continue
        entry = _mapping_of(field.annotation)
        if entry is not None and i + 2 < len(path):
            model, i = entry, i + 2  # markets.<SYMBOL>.<key>
            continue
        if get_origin(field.annotation) is dict:  # feature_sets, partitions, markets.<SYMBOL>
            name = ".".join(path[i + 1 :]).strip('"')
            return [*path[: i + 1], name] if name else list(path)
        if i < len(path) - 1:
            raise ConfigError(
                f"--set {item}: `{here}` is a value, not a section; use --set {here}=VALUE"
            )
        i += 1
    return list(path)


def apply_sets(raw: dict[str, Any], sets: Sequence[str]) -> list[tuple[tuple[str, ...], str]]:
    """Apply `--set section.key=value` items onto the raw config dict (in place);
    -> [(path, item)] to say where a bad value came from."""
    applied: list[tuple[tuple[str, ...], str]] = []
    for item in sets:
        path, value = _parse_set(item)
        path = _check_set_path(item, path)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
        applied.append((tuple(path), item))
    return applied


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain(
    exc: ValidationError,
    source: str,
    sets: Sequence[tuple[tuple[str, ...], str]] = (),
) -> ConfigError:
    """pydantic's ValidationError -> one line per the first problem (and how many more)."""
    # a typo first: it explains the "required" error of the key it misspells
    errors = sorted(map(_located, exc.errors()), key=lambda e: e["type"] != "extra_forbidden")
    lines = []
    for e in errors:
        loc = tuple(str(x) for x in e["loc"])
        cross = e["type"] == "cross_section"  # a rule between sections: any of its keys
        involved = [tuple(k.split(".")) for k in e.get("ctx", {}).get("keys", ())] or [loc]
        touched = [
            item
            for path, item in sets
            if any(path[: len(k)] == k or k[: len(path)] == path for k in involved)
        ]
        if cross and not touched:
            msg, name = e["msg"], ".".join(loc)
            if "value" in e.get("ctx", {}):
                lines.append(f"{name} = {_show(e['ctx']['value'])} in {source}: {msg}")
            else:
                lines.append(f"[{name}] of {source}: {msg}")
            continue
        if e["type"] == "missing" and loc:  # a key a section must have ([markets.X] lot_size)
            sibling = [item for path, item in sets if path[:-1] == loc[:-1]]
            need = f"{_section_name(loc[:-1])} needs `{loc[-1]}`"
            lines.append(f"--set {sibling[-1]}: {need}" if sibling else f"{need} in {source}")
            continue
        if e["type"] == "extra_forbidden":
            if touched:
                lines.append(f"--set {touched[-1]}: {unknown_key_message(loc[-1], loc[:-1])}")
            else:
                lines.append(unknown_key_message(loc[-1], loc[:-1], f" of {source}"))
            continue
        msg = e["msg"].removeprefix("Value error, ")
        name = ".".join(loc) or "config"
        if touched:  # the --set names the key and the value
            lines.append(f"--set {touched[-1]}: {msg}")
        elif e["type"] == "value_error" and _model_at(loc) is not None:
            lines.append(f"[{name}] of {source}: {msg}")  # a section's rule (fast < slow)
        else:
            lines.append(f"{name} = {_show(e['input'])} in {source}: {msg}")
    more = f" (and {len(lines) - 1} more: {'; '.join(lines[1:])})" if len(lines) > 1 else ""
    return ConfigError(lines[0] + more, errors)


def _located(e: ErrorDetails) -> ErrorDetails:
    """A cross-section error (raised by `Config` at the top level) located at its first key."""
    keys = e.get("ctx", {}).get("keys", ()) if e["type"] == "cross_section" else ()
    return {**e, "loc": tuple(keys[0].split("."))} if keys else e


def load_config(
    path: str | Path | None = None, sets: Sequence[str] = (), **overrides: object
) -> Config:
    """Read a TOML config (or defaults), apply explicit overrides, then `sets` (`--set
    section.key=value`, values as TOML), validate, then apply environment settings. A bad config
    raises `ConfigError` (a ValueError): one line naming the key, the file and the fix."""
    raw: dict[str, Any] = {}
    source = "the built-in defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"--config: config file not found: {p}")
        source = str(p)
        with p.open("rb") as fh:
            try:
                raw = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{p} is not valid TOML: {exc}") from exc
    raw.update({k: v for k, v in overrides.items() if v is not None})
    applied = apply_sets(raw, sets)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise explain(exc, source, applied) from exc
    env = Settings()
    kafka = cfg.kafka.model_copy(update={"bootstrap": env.kafka_bootstrap or cfg.kafka.bootstrap})
    dsn = env.clickhouse_dsn or cfg.clickhouse.dsn
    if not dsn:
        dsn = f"chdb:///{Path(env.cryptoflow_data_dir).resolve().as_posix().lstrip('/')}/clickhouse"
    ch = cfg.clickhouse.model_copy(update={"dsn": dsn})
    return cfg.model_copy(update={"kafka": kafka, "clickhouse": ch})


def data_dir() -> Path:
    return Path(Settings().cryptoflow_data_dir).resolve()
