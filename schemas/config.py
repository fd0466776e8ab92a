"""Run configuration (pydantic: validated once at startup, so bad config fails loudly and early).

A config file is TOML. Connection settings may be overridden by environment variables or a `.env`
file (`KAFKA_BOOTSTRAP`, `CLICKHOUSE_DSN`, `CRYPTOFLOW_DATA_DIR`); secrets never live in the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BarsConfig(_Section):
    interval_s: int = Field(60, gt=0)
    grace_ms: int = Field(2_000, ge=0)  # out-of-order tolerance before a bar closes


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

    @model_validator(mode="after")
    def _fast_below_slow(self) -> StrategyConfig:
        if self.fast >= self.slow:
            raise ValueError(f"strategy.fast ({self.fast}) must be < strategy.slow ({self.slow})")
        return self


class SizingConfig(_Section):
    fraction: float = Field(1.0, gt=0, le=1.0)  # of sleeve equity per entry; 1.0 = all-in


class RiskConfig(_Section):
    max_position_notional: float = Field(1e12, gt=0)


class ExecutionConfig(_Section):
    fee_bps: float = Field(10.0, ge=0)
    slippage_bps: float = Field(0.0, ge=0)


class PortfolioConfig(_Section):
    initial_cash: float = Field(1_000_000.0, gt=0)
    currency: str = "USDT"


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


class Config(_Section):
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    bars: BarsConfig = BarsConfig()
    features: FeaturesConfig = FeaturesConfig()
    feature_sets: dict[str, list[str]] = Field(default_factory=dict)
    strategy: StrategyConfig = StrategyConfig()
    sizing: SizingConfig = SizingConfig()
    risk: RiskConfig = RiskConfig()
    execution: ExecutionConfig = ExecutionConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    validation: ValidationConfig = ValidationConfig()
    paper: PaperConfig = PaperConfig()
    kafka: KafkaConfig = KafkaConfig()
    clickhouse: ClickHouseConfig = ClickHouseConfig()

    def sleeve_cash(self, n_symbols: int) -> float:
        """Capital of each sleeve: initial cash split evenly over the traded symbols."""
        return self.portfolio.initial_cash / n_symbols

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


class Settings(BaseSettings):
    """Environment overrides (and `.env`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    kafka_bootstrap: str | None = None
    clickhouse_dsn: str | None = None
    cryptoflow_data_dir: str = "var"


def load_config(path: str | Path | None = None, **overrides: object) -> Config:
    """Read a TOML config (or defaults), then apply environment settings and explicit overrides."""
    raw: dict[str, object] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        with p.open("rb") as fh:
            raw = tomllib.load(fh)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    cfg = Config.model_validate(raw)
    env = Settings()
    kafka = cfg.kafka.model_copy(update={"bootstrap": env.kafka_bootstrap or cfg.kafka.bootstrap})
    dsn = env.clickhouse_dsn or cfg.clickhouse.dsn
    if not dsn:
        dsn = f"chdb:///{Path(env.cryptoflow_data_dir).resolve().as_posix().lstrip('/')}/clickhouse"
    ch = cfg.clickhouse.model_copy(update={"dsn": dsn})
    return cfg.model_copy(update={"kafka": kafka, "clickhouse": ch})


def data_dir() -> Path:
    return Path(Settings().cryptoflow_data_dir).resolve()
