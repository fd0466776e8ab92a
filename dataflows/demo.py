"""`cryptoflow demo`: shipped real data -> Kafka -> two strategies replayed through the flow ->
reports, each next to buy-and-hold over the same bars, and one page comparing them.

The story it tells (README "What the demo shows"): the SMA 10/50 crossover on 1m bars, all-in,
trades every few hours and pays more in fees than its crossings earn; the same rule slowed to
4 h / 1 day windows on a margin account with every risk tier on (8% of equity per position,
stops, breakers) trades a handful of times and keeps its drawdown small — neither beats
buy-and-hold in this month, and the report shows why.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from dataflows.cli_common import DEMO_BARS, EXAMPLES, _console
from schemas.config import Config, data_dir, load_config

# (name, example config, overrides, what it is)
STRATEGIES: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("sma", "sma_cross.toml", {}, "SMA 10/50 on 1m closes, long only, all-in (the baseline)"),
    (
        "trend",
        "risk_limits.toml",
        {"strategy": {"fast": 240, "slow": 1440}},
        "SMA 4h/1d, long and short, 8% per position, every risk tier on",
    ),
)


def demo_config(example: str, overrides: dict[str, Any]) -> Config:
    cfg = load_config(EXAMPLES / example)
    if not overrides:
        return cfg
    base = cfg.model_dump()
    upd = {k: {**base[k], **v} for k, v in overrides.items()}
    return Config.model_validate({**base, **upd})


def symbols_to_ingest(
    shipped: dict[str, int], held: Mapping[str, int], bootstrap: str
) -> list[str]:
    """The shipped symbols the topic holds no January bars for (a broker of the user's may
    already hold some). ValueError when it holds part of a symbol's month: replaying it would
    be a demo on gaps, and adding the file again would only add duplicates to the part."""
    part = [
        f"{s}: {held[s]:,} of {n:,}" for s, n in sorted(shipped.items()) if 0 < held.get(s, 0) < n
    ]
    if part:
        raise ValueError(
            f"md.bars.v1 on {bootstrap} holds only part of January 2024 ({'; '.join(part)} "
            "bars); the demo needs the whole month: point KAFKA_BOOTSTRAP at another broker, "
            "or delete the topic"
        )
    return sorted(s for s in shipped if not held.get(s, 0))


def cmd_demo(args: argparse.Namespace) -> int:
    from dataflows.backtest import BacktestSpec, parse_time, run_backtest
    from dataflows.datalist import file_inventory
    from dataflows.ingest import ingest_file
    from dataflows.report_files import write_comparison
    from infra.kafka import broker
    from infra.kafka.client import TimeRangeReader
    from schemas.topics import BARS

    console = _console()
    out = Path(args.out)
    first = demo_config(*STRATEGIES[0][1:3])
    steps = 2 + len(STRATEGIES) + 1
    console.rule(f"1/{steps} Kafka broker")
    broker.up(first.kafka.bootstrap, data_dir(), first.kafka.partitions)
    console.rule(f"2/{steps} ingest real Binance 1m bars (Jan 2024) into md.bars.v1")
    start, end = parse_time("2024-01-01"), parse_time("2024-02-01")
    assert start is not None and end is not None
    # A full read (the topic may have been filled in any order; see docs/replay.md).
    reader = TimeRangeReader(first.kafka.bootstrap, BARS.name, start // 10**6, end // 10**6)
    held: Counter[str] = Counter()
    for _, batch in reader.batches():
        held.update((r.key or b"").decode() for r in batch)
    shipped, _ = file_inventory(str(DEMO_BARS))
    todo = symbols_to_ingest({d.symbol: d.count for d in shipped}, held, first.kafka.bootstrap)
    if not todo:
        console.print("md.bars.v1 already holds January 2024: not ingesting it twice")
    else:
        iv = first.bars.interval_ns
        ingest_file(DEMO_BARS, first.kafka.bootstrap, "bars", symbols=todo, interval_ns=iv)
    spec = BacktestSpec(f"kafka:{BARS.name}", ("BTCUSDT", "ETHUSDT"), start, end)
    docs = []
    for i, (name, example, over, what) in enumerate(STRATEGIES, start=3):
        console.rule(f"{i}/{steps} replay md.bars.v1: {what}")
        cfg = demo_config(example, over)
        run_id, _ = run_backtest(cfg, spec, out / name)
        docs.append((name, what, run_id, _load(out / name)))
    console.rule(f"{steps}/{steps} side by side")
    written = write_comparison([d for *_, d in docs], out / "compare.html")
    _story(console, docs)
    console.print(
        f"reports: {', '.join(str(out / n / 'report.html') for n, *_ in docs)}; "
        f"comparison: {written[0]} (open them in a browser; README: 'What the demo shows')",
        markup=False,
        highlight=False,
    )
    return 0


def _load(folder: Path) -> dict[str, Any]:
    import json

    return json.loads((folder / "report.json").read_text())  # type: ignore[no-any-return]


def _story(console: Any, docs: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    t = Table(title="January 2024, BTCUSDT + ETHUSDT 1m, 1,000,000 USDT")
    cols = ("", "return", "max drawdown", "Sharpe", "round trips", "PnL before fees", "fees")
    for col in cols:
        t.add_column(col, justify="left" if not col else "right")

    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{v * 100:+.2f}%"

    for name, _, run_id, doc in docs:
        m = doc["metrics"]["strategy"]
        t.add_row(
            f"{name} ({run_id})",
            pct(m["total_return"]),
            pct(-m["max_drawdown"]),
            f"{m['sharpe']:.2f}",
            str(m["n_trades"]),
            f"{m['gross_pnl']:+,.0f}",
            f"{m['fees']:,.0f}",
        )
    b = docs[0][3]["metrics"]["benchmark"]
    t.add_row(
        "buy & hold",
        pct(b["total_return"]),
        pct(-b["max_drawdown"]),
        f"{b['sharpe']:.2f}",
        "-",
        "-",
        "-",
    )
    console.print(t)
