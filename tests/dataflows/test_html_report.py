"""The HTML report and comparison pages: rendered from a realistic document (real January 2024
BTCUSDT/ETHUSDT 1m closes, synthetic trades), loaded in headless Chromium (no console errors,
the charts drew, the numbers in the page are the document's), and self-contained."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from plotly.offline import get_plotlyjs

from dataflows.html_report import (
    fmt_duration,
    fmt_value,
    render_compare,
    render_report,
    state_spans,
    write_compare,
    write_report,
)
from tests.dataflows.browser import load_page, require_chromium
from tests.paths import BARS_2024_01

MIN = 60 * 10**9
REASONS = ("signal", "stop_loss", "take_profit", "halt")


def _closes(step: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    df = pl.read_parquet(BARS_2024_01).sort("symbol", "open_time")
    out = {}
    for sym in ("BTCUSDT", "ETHUSDT"):
        d = df.filter(pl.col("symbol") == sym)
        ts = d["open_time"].dt.epoch("ns").to_numpy()[::step]
        out[sym] = (ts, d["close"].to_numpy()[::step])
    return out


def _trades(closes: dict[str, tuple[np.ndarray, np.ndarray]], n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    trades = []
    for i in range(n):
        sym = ("BTCUSDT", "ETHUSDT")[i % 2]
        ts, px = closes[sym]
        a = int(rng.integers(0, len(ts) - 30))
        b = a + int(rng.integers(1, 30))
        side = "long" if rng.random() < 0.6 else "short"
        qty = 1000.0 / px[a]
        sign = 1 if side == "long" else -1
        fees = 0.002 * qty * px[a]
        pnl = sign * qty * (px[b] - px[a]) - fees
        trades.append(
            {
                "trip_id": i + 1,
                "symbol": sym,
                "side": side,
                "ts_entry": int(ts[a]),
                "ts_exit": int(ts[b]),
                "qty": float(qty),
                "entry_price": float(px[a]),
                "exit_price": float(px[b]),
                "pnl": float(pnl),
                "ret": float(pnl / (qty * px[a])),
                "fees": float(fees),
                "duration_ns": int(ts[b] - ts[a]),
                "exit_reason": REASONS[i % 4],
                "producer": "sma_cross",
                "model_version": None,
            }
        )
    return sorted(trades, key=lambda t: t["ts_entry"])


def _mc(method: str, n: int) -> dict[str, Any]:
    x = list(range(n))
    base = np.linspace(10_000, 10_400, n)
    fan = {
        q: (base * (1 + k)).tolist()
        for q, k in (("p5", -0.08), ("p25", -0.03), ("p50", 0.0), ("p75", 0.03), ("p95", 0.08))
    }
    bands = {
        "total_return": {"p5": -0.12, "p25": -0.03, "p50": 0.021, "p75": 0.07, "p95": 0.15},
        "sharpe": {"p5": -1.3, "p25": -0.2, "p50": 0.61, "p75": 1.4, "p95": 2.2},
        "max_drawdown": {"p5": -0.21, "p25": -0.14, "p50": -0.09, "p75": -0.06, "p95": -0.04},
    }
    for b in bands.values():
        b["mean"] = b["p50"] + 0.001
    return {"method": method, "n_runs": 1000, "seed": 0, "bands": bands, "fan": {"x": x, **fan}}


def make_doc(n_trades: int = 1200, run_id: str = "bt-0123456789abcdef", step: int = 10) -> dict:
    """A report document shaped like `analyze`'s: closes are real, the strategy is made up."""
    closes = _closes(step)
    ts = closes["BTCUSDT"][0]
    norm = np.mean([c[1] / c[1][0] for c in closes.values()], axis=0)
    bench = 10_000 * norm
    rng = np.random.default_rng(3)
    eq = 10_000 * np.cumprod(
        1 + 0.4 * np.diff(norm, prepend=norm[0]) + rng.normal(0, 4e-4, len(ts))
    )
    warm = min(50, len(ts))  # rolling Sharpe is n/a while its window fills
    sharpe = [None] * warm + list(rng.normal(0.5, 1.0, len(ts) - warm))
    strategy = {
        "total_return": float(eq[-1] / 10_000 - 1),
        "annual_return": 0.3141592653589793,
        "cagr": 0.2718281828,
        "volatility": 0.4567,
        "sharpe": 1.23456789,
        "sortino": 1.9,
        "calmar": 0.87,
        "max_drawdown": -0.1734,
        "max_drawdown_duration_ns": 9 * 86400 * 10**9,
        "exposure": 0.61,
        "turnover": 42.5,
        "psr": 0.7123,
        "dsr": None,
        "n_trades": n_trades,
        "win_rate": 0.4875,
        "profit_factor": 1.07,
        "expectancy": 1.234,
        "avg_win": 25.5,
        "avg_loss": -21.25,
        "avg_holding_ns": 75 * MIN,
        "fees": 2400.0,
        "gross_pnl": 2612.3456,
        "fees_share": 0.9187,
        "final_equity": float(eq[-1]),
        "initial_equity": 10_000.0,
        "custom_score": 3.5,
    }
    benchmark = {k: strategy[k] * 0.5 for k in ("total_return", "sharpe", "volatility", "cagr")}
    benchmark.update(max_drawdown=-0.2012, n_trades=2, dsr=None, final_equity=float(bench[-1]))
    months = [
        {"period": "2023-11", "ret": 0.051},
        {"period": "2023-12", "ret": -0.032},
        {"period": "2024-01", "ret": strategy["total_return"]},
    ]
    days = [
        {"period": f"2024-01-{d:02d}", "ret": float(r)}
        for d, r in zip(range(1, 32), rng.normal(0, 0.02, 31), strict=True)
    ]
    return {
        "run": {
            "run_id": run_id,
            "mode": "backtest",
            "source": "file:examples/data/binance_spot_btc_eth_1m_2024-01.parquet",
            "symbols": ["BTCUSDT", "ETHUSDT"],
            "start_ns": int(ts[0]),
            "end_ns": int(ts[-1]),
            "config": {
                "strategy": {"producer": "sma_cross", "fast": 10, "slow": 50},
                "execution": {"fee_bps": 10.0},
                "risk": {"max_gross": 1.0},
            },
            "feature_set": {"name": "core", "version": "f3a9c0de"},
            "models": [
                {
                    "producer": "xgb",
                    "model": "xgb-trend",
                    "version": "v2",
                    "feature_version": "f3a9c0de",
                }
            ],
            "generated_by": "cryptoflow 0.1.0",
        },
        "metrics": {"strategy": strategy, "benchmark": benchmark},
        "per_symbol": [
            {
                "symbol": "BTCUSDT",
                "n_trades": n_trades // 2,
                "pnl": 120.5,
                "win_rate": 0.51,
                "fees": 1200.0,
                "benchmark_return": 0.0123,
            },
            {
                "symbol": "ETHUSDT",
                "n_trades": n_trades - n_trades // 2,
                "pnl": -95.25,
                "win_rate": None,
                "fees": 1200.0,
                "benchmark_return": -0.0456,
            },
        ],
        "periods": {"month": months, "day": days},
        "series": {
            "ts": ts.tolist(),
            "equity": eq.tolist(),
            "benchmark": bench.tolist(),
            "drawdown": (eq / np.maximum.accumulate(eq) - 1).tolist(),
            "benchmark_drawdown": (bench / np.maximum.accumulate(bench) - 1).tolist(),
            "exposure": rng.uniform(0, 1, len(ts)).tolist(),
            "rolling_sharpe": sharpe,
        },
        "prices": {s: {"ts": c[0].tolist(), "close": c[1].tolist()} for s, c in closes.items()},
        "trades": _trades(closes, n_trades),
        "montecarlo": {
            "trade_shuffle": _mc("trade_shuffle", n_trades + 1),
            "block_bootstrap": _mc("block_bootstrap", 400),
        },
        "warnings": ["positions still open at the end (BTCUSDT): <marked> at the last close"],
    }


class _Cells(HTMLParser):
    """Every element's attributes, and the text of elements carrying data-metric."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[dict[str, str | None]] = []
        self.text: dict[int, str] = {}
        self._open: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(dict(attrs))
        if "data-metric" in dict(attrs):
            self._open = len(self.elements) - 1
            self.text[self._open] = ""

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.text[self._open] += data


def _parse(dom: str) -> _Cells:
    p = _Cells()
    p.feed(dom)
    return p


def _plots(cells: _Cells) -> list[dict[str, str | None]]:
    return [e for e in cells.elements if "js-plotly-plot" in (e.get("class") or "").split()]


def _metric_cells(cells: _Cells, side_key: str) -> dict[tuple[str, str], tuple[str | None, str]]:
    return {
        (str(e["data-metric"]), str(e[side_key])): (e.get("data-value"), cells.text[i])
        for i, e in enumerate(cells.elements)
        if "data-metric" in e and side_key in e
    }


def _check_metrics(found: dict, metrics: dict[str, Any], column: str) -> None:
    for key, v in metrics.items():
        value, text = found[(key, column)]
        if v is None:
            assert value is None and text == "n/a", key
        else:
            assert float(str(value)) == v, key  # exact: the repr round-trips


# --------------------------------------------------------------------------- in the browser


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_chromium()


def test_report_loads_without_errors_and_shows_the_runs_numbers(
    tmp_path: Path, chromium: str
) -> None:
    doc = make_doc()
    page = load_page(write_report(doc, tmp_path / "report.html"))
    assert page.console_errors == []
    assert doc["run"]["run_id"] in page.dom
    cells = _parse(page.dom)
    found = _metric_cells(cells, "data-side")
    _check_metrics(found, doc["metrics"]["strategy"], "strategy")
    _check_metrics(found, doc["metrics"]["benchmark"], "benchmark")
    assert found[("total_return", "strategy")][1] == fmt_value(
        doc["metrics"]["strategy"]["total_return"], "spct"
    )
    assert found[("custom_score", "strategy")][1] == "3.5"  # unknown keys shown raw
    # equity, 2 prices, monthly, daily, rolling Sharpe, exposure, trades, 2 Monte Carlo fans
    plots = _plots(cells)
    assert len(plots) == 10
    assert all(p.get("id") for p in plots)
    # plotly drew every trade's entry and exit as a marker (tables are capped, plots are not)
    chunk = page.dom.split('id="fig-price-0"')[1].split('id="fig-price-1"')[0]
    btc = [t for t in doc["trades"] if t["symbol"] == "BTCUSDT"]
    assert len(re.findall(r'class="point[ "]', chunk)) == 2 * len(btc)
    assert "1,200 trades: the first and last 250 shown" in page.dom
    table = page.dom.split('class="trades"')[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + 500 and table.count('class="gap"') == 1  # head, capped
    assert "&lt;marked&gt;" in page.dom  # warnings escaped, at the top
    assert page.dom.index('id="warnings"') < page.dom.index('id="metrics"')
    assert "f3a9c0de" in page.dom and "xgb-trend" in page.dom  # lineage


def test_report_without_trades_monte_carlo_or_models(tmp_path: Path, chromium: str) -> None:
    doc = make_doc(n_trades=0, run_id="bt-empty", step=2000)  # 23 points per series
    doc["prices"].pop("ETHUSDT")
    doc["per_symbol"] = doc["per_symbol"][:1]
    doc["montecarlo"] = {"trade_shuffle": None, "block_bootstrap": None}
    doc["run"].update(models=[], feature_set=None, symbols=["BTCUSDT"])
    doc["warnings"] = []
    page = load_page(write_report(doc, tmp_path / "empty.html"))
    assert page.console_errors == []
    assert "bt-empty" in page.dom
    assert "No trades." in page.dom and "No Monte Carlo results" in page.dom
    assert 'id="warnings"' not in page.dom
    # equity, 1 price, monthly, daily, rolling Sharpe, exposure: no trade or fan charts
    assert len(_plots(_parse(page.dom))) == 6


def test_compare_shows_both_runs(tmp_path: Path, chromium: str) -> None:
    a, b = make_doc(run_id="bt-aaaa", n_trades=40), make_doc(run_id="bt-bbbb", n_trades=60)
    b["metrics"]["strategy"]["sharpe"] = -0.4321
    b["run"]["config"]["strategy"]["fast"] = 20
    page = load_page(write_compare([a, b], tmp_path / "compare.html"))
    assert page.console_errors == []
    assert "bt-aaaa" in page.dom and "bt-bbbb" in page.dom
    cells = _parse(page.dom)
    found = _metric_cells(cells, "data-run")
    _check_metrics(found, a["metrics"]["strategy"], "bt-aaaa")
    _check_metrics(found, b["metrics"]["strategy"], "bt-bbbb")
    assert {run for _, run in found} == {"bt-aaaa", "bt-bbbb"}
    assert len(_plots(cells)) == 2  # overlaid equity, overlaid drawdown
    assert "strategy.fast" in page.dom  # the config difference


def test_console_capture_catches_a_broken_script(tmp_path: Path, chromium: str) -> None:
    """The no-errors checks above can fail: a throwing script and a console.error are seen."""
    html = render_report(make_doc(n_trades=5, step=500))
    broken = "<script>console.error('cf-broken'); notAFunctionAnywhere();</script></body>"
    path = tmp_path / "broken.html"
    path.write_text(html.replace("</body>", broken), encoding="utf-8")
    errors = load_page(path).console_errors
    assert any("cf-broken" in e for e in errors)
    assert any("notAFunctionAnywhere" in e for e in errors)


# --------------------------------------------------------------------------- without a browser


def test_pages_are_self_contained() -> None:
    for html in (render_report(make_doc(n_trades=20, step=200)), render_compare([make_doc()])):
        tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", html, flags=re.IGNORECASE)
        assert not [t for t in tags if re.search(r"(src|href)\s*=", t, flags=re.IGNORECASE)]
        assert "@import" not in html and "url(http" not in html
        assert html.count(get_plotlyjs()[:300]) == 1  # plotly.js inlined exactly once


def test_text_is_escaped() -> None:
    doc = make_doc(n_trades=3, step=500, run_id="<script>alert(1)</script>")
    doc["trades"][0]["exit_reason"] = "<img src=x onerror=alert(2)>"
    html = render_report(doc)
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_short_trade_lists_are_shown_whole() -> None:
    html = render_report(make_doc(n_trades=30, step=200))
    table = html.split('class="trades"')[1].split("</table>")[0]
    assert "All 30 trades." in html and table.count("<tr>") == 1 + 30 and "gap" not in table


def test_sparse_documents_render() -> None:
    assert render_report({}).startswith("<!DOCTYPE html>")  # nothing to show, but a page
    one = {"run": {"run_id": "r1", "symbols": []}, "series": {"ts": [0], "equity": [1.0]}}
    assert "r1" in render_report(one)
    assert "r1" in render_compare([one, {"run": {"run_id": "r2"}}])


def test_formatting() -> None:
    assert fmt_duration((3 * 86400 + 4 * 3600 + 12 * 60) * 10**9) == "3d 4h 12m"
    assert fmt_duration(90 * MIN) == "1h 30m" and fmt_duration(45 * 10**9) == "45s"
    assert fmt_value(0.123456, "spct") == "+12.35%" and fmt_value(-0.05, "pct") == "-5.00%"
    assert fmt_value(1234567.891, "money") == "1,234,567.89"
    assert fmt_value(1.23456, "ratio") == "1.23" and fmt_value(1234, "int") == "1,234"
    assert fmt_value(None, "pct") == "n/a" and fmt_value("x", "pct") == "x"
    assert fmt_value(float("inf"), "ratio") == "∞"


def _risk_doc() -> tuple[dict[str, Any], list[int]]:
    doc = make_doc(n_trades=20, step=200)
    ts = doc["series"]["ts"]
    at = [ts[len(ts) // 5], ts[len(ts) // 3], ts[len(ts) // 2], ts[2 * len(ts) // 3]]
    doc["risk"] = {
        "state_changes": [
            {"ts_event": at[0], "symbol": "", "old": "active", "new": "reducing", "reason": "vol"},
            {
                "ts_event": at[1],
                "symbol": "ETHUSDT",
                "old": "active",
                "new": "reducing",
                "reason": "stale <data>",
            },
            {"ts_event": at[2], "symbol": "", "old": "reducing", "new": "active", "reason": "ok"},
            {
                "ts_event": at[3],
                "symbol": "",
                "old": "active",
                "new": "halted",
                "reason": "drawdown 5.1% from peak exceeds 5.00%",
            },
        ],
        "denials": {"trading_state": 1234, "price_band": 2},
    }
    return doc, at


def test_state_spans_follow_the_account_wide_changes() -> None:
    doc, at = _risk_doc()
    end = doc["series"]["ts"][-1]
    # the per-symbol change (ETHUSDT) is not the account's state
    assert state_spans(doc["risk"]["state_changes"], end) == [
        (at[0], at[2], "reducing"),
        (at[3], end, "halted"),
    ]
    assert state_spans([], end) == []


def test_report_shows_the_risk_engine(tmp_path: Path, chromium: str) -> None:
    """The risk engine's section lists every state change and the denials by rule, and the
    equity chart shades the reduce-only and halted stretches (in both panels)."""
    doc, _ = _risk_doc()
    page = load_page(write_report(doc, tmp_path / "report.html"))
    assert page.console_errors == []
    states = page.dom.split('class="states"')[1].split("</table>")[0]
    assert states.count("<tr>") == 1 + 4 and "stale &lt;data&gt;" in states
    assert "drawdown 5.1% from peak exceeds 5.00%" in states and "ETHUSDT" in states
    denials = page.dom.split('class="denials"')[1].split("</table>")[0]
    assert "trading_state" in denials and "1,234" in denials and "price_band" in denials
    chart = page.dom.split('id="fig-equity"')[1].split('id="fig-price-0"')[0]
    assert chart.count('class="shape-group"') == 2 * 2  # 2 stretches x 2 panels
    quiet = render_report(make_doc(n_trades=20, step=200))
    assert "The risk engine changed no trading state and denied no order." in quiet
