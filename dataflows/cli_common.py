"""What the `cryptoflow` verbs share: config and `--set`, symbols checked against the universe,
`--start`/`--end` that name the flag, the topic probe, consoles that do not wrap in pipes."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from rich.console import Console

from schemas.config import Config, load_config

# The demo's inputs live in the repository, wherever the command is run from.
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_BARS = EXAMPLES / "data" / "binance_spot_btc_eth_1m_2024-01.parquet"
DEMO_CONFIG = EXAMPLES / "sma_cross.toml"

TIME_FORMATS = "use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] (optionally +HH:MM)"
# Output to a pipe or a file is not squeezed into 80 columns (rich reads COLUMNS).
PIPE_COLUMNS = 160


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cryptoflow")
    except PackageNotFoundError:  # a checkout that was never installed
        return "unknown (not installed)"


def _console() -> Console:
    """stdout; as wide as the terminal, or PIPE_COLUMNS when it is not one."""
    return Console() if sys.stdout.isatty() else Console(width=PIPE_COLUMNS)


@contextlib.contextmanager
def _wide_pipes() -> Iterator[None]:
    """While a command runs, consoles made elsewhere (the backtest report) are as wide as
    `_console()`'s when stdout is not a terminal."""
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        yield
        return
    os.environ["COLUMNS"] = str(PIPE_COLUMNS)
    try:
        yield
    finally:
        os.environ.pop("COLUMNS", None)


def _cfg(args: argparse.Namespace) -> Config:
    from infra.clickhouse import set_retry_defaults

    cfg = load_config(getattr(args, "config", None), sets=getattr(args, "set", None) or ())
    # Every connect/insert of this command (not only the flow's sink) retries as configured.
    set_retry_defaults(cfg.clickhouse.retries, cfg.clickhouse.retry_backoff_s)
    return cfg


def _symbols(
    args: argparse.Namespace, default: Iterable[str] = (), cfg: Config | None = None
) -> tuple[str, ...]:
    """--symbols as upper-case names; `default` when not given. With `cfg`, each one must be
    in the config's universe: checked here, before anything runs."""
    raw = getattr(args, "symbols", None)
    got = tuple(s.strip().upper() for s in raw.split(",") if s.strip()) if raw else ()
    if cfg is not None:
        unknown = [s for s in got if s not in cfg.symbols]
        if unknown:
            config = getattr(args, "config", None)
            where = f"in {config}" if config else "in a config file (--config FILE)"
            one = len(unknown) == 1
            raise ValueError(
                f"--symbols: {', '.join(unknown)} {'is' if one else 'are'} not in the config's "
                f"universe ({', '.join(cfg.symbols)}); add {'it' if one else 'them'} to "
                f"`symbols = [...]` {where}, or use --set 'symbols=[...]'"
            )
    return got or tuple(default)


def _time(args: argparse.Namespace, name: str) -> int | None:
    """--start / --end as int ns UTC; a value that is no date names the flag and the formats."""
    from dataflows.backtest import parse_time

    raw = getattr(args, name, None)
    try:
        return parse_time(raw)
    except ValueError:
        raise ValueError(
            f"--{name}: cannot read {raw!r} as a UTC date/time; {TIME_FORMATS}"
        ) from None


def _range(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """--start / --end; an empty range fails here, worded as BacktestSpec words it."""
    from dataflows.datalist import utc_text

    start, end = _time(args, "start"), _time(args, "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(
            f"--end ({utc_text(end)} UTC) must be after --start ({utc_text(start)} UTC): "
            "the range [start, end) is empty"
        )
    return start, end


def _probe_topic(cfg: Config, source: str | None, flag: str = "--source") -> None:
    """A Kafka source's broker and topic answer, or fail now in one line (within seconds),
    naming the flag and `cryptoflow infra up` (which starts the broker and creates the
    project topics)."""
    if source is None or not source.startswith("kafka:") or source == "kafka:":
        return
    from infra import faults
    from infra.kafka.client import topic_watermarks
    from schemas.topics import TOPICS

    topic = source.removeprefix("kafka:")
    try:
        topic_watermarks(cfg.kafka.bootstrap, topic, timeout_s=5.0)
    except faults.Fault as fault:
        if "does not exist" not in fault.what:
            raise  # not answering: its check already says `cryptoflow infra up`
        faults.clear()
        name = "the --source topic name" if flag == "--source" else f"the {flag} name"
        fix = (
            "that the project topics exist: cryptoflow infra up creates them"
            if topic in TOPICS
            else f"{name} (cryptoflow infra up creates the project topics: {', '.join(TOPICS)})"
        )
        raise faults.raise_fault("kafka", fault.what, fix) from fault


def _speed(s: str) -> float | None:
    if s == "max":
        return None
    try:
        v = float(s)
    except ValueError:
        v = 0.0
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{s!r}: use a factor > 0 (1, 60, ...) or max")
    return v
