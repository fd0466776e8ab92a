"""The HTML report of a run and the side-by-side comparison of runs: one self-contained file each
(plotly.js inlined once, no network, no external fonts), rendered from the report document that
`dataflows.analytics.analyze` builds (also written as report.json).

Presentation only: every number shown is in the document; this module formats, colours and
scales (e.g. equity / initial equity to overlay runs), it never derives a financial figure.
Each numeric metric cell carries `data-metric`, `data-side` (or `data-run`) and `data-value`
(the exact float repr) so tests and scrapers read the values without parsing formatted text."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from dataflows.html_format import (
    CSS,
    NOTE,
    _cell,
    _esc,
    _sign,
    _table,
    _x,
    fmt_duration,
    fmt_value,
    utc,
)
from dataflows.html_risk import risk_section, state_spans

__all__ = ["fmt_duration", "fmt_value", "render_compare", "render_report", "utc"]

TRADE_ROWS = 500  # all trades up to this many; beyond, the first and last half of it
GREEN, RED, BLUE, GREY, ORANGE = "#1a9850", "#d73027", "#2c6fbb", "#7f7f7f", "#e08214"
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}

# "key kind label" in display order; keys not listed are shown raw after these.
_METRIC_SPEC = (
    "total_return spct Total return; annual_return spct Annual return; cagr spct CAGR; "
    "volatility pct Volatility (ann.); sharpe ratio Sharpe; sortino ratio Sortino; "
    "calmar ratio Calmar; max_drawdown pct Max drawdown; "
    "max_drawdown_duration_ns dur Max drawdown duration; psr pct Probabilistic Sharpe; "
    "dsr pct Deflated Sharpe; dsr_trials int DSR trials; exposure pct Exposure; "
    "turnover times Turnover; n_trades int Trades; win_rate pct Win rate; "
    "profit_factor ratio Profit factor; expectancy money Expectancy / trade; "
    "avg_win money Average win; avg_loss money Average loss; "
    "avg_holding_ns dur Average holding; gross_pnl money Gross PnL; fees money Fees; "
    "fees_share pct Fees / gross PnL; initial_equity money Initial equity; "
    "final_equity money Final equity; net_pnl money Net PnL (closed trades); "
    "n_open int Open trades at the end; avg_return pct Average trade return; "
    "largest_win money Largest win; largest_loss money Largest loss; "
    "annual_turnover times Turnover (annualised); n_bars int Bars; "
    "n_periods_per_year int Bars per year; start_ns time First bar close; "
    "end_ns time Last bar close; max_drawdown_start_ns time Max drawdown: peak; "
    "max_drawdown_trough_ns time Max drawdown: trough; "
    "max_drawdown_end_ns time Max drawdown: recovered"
)


def _spec(text: str) -> list[tuple[str, str, str]]:
    """`"key kind label; ..."` -> [(key, kind, label)]."""
    return [(k, kind, label) for k, kind, label in (i.split(" ", 2) for i in text.split("; "))]


METRICS = _spec(_METRIC_SPEC)
KINDS = {k: kind for k, kind, _ in METRICS}
LABELS = {k: label for k, _, label in METRICS}
HEADLINE = ("total_return", "sharpe", "max_drawdown", "n_trades")
MC_METRICS = (("total_return", "spct"), ("sharpe", "ratio"), ("max_drawdown", "pct"))
QUANTILES = ("p5", "p25", "p50", "p75", "p95", "mean")


def _metric_keys(*dicts: dict[str, Any]) -> list[str]:
    known = [k for k, _, _ in METRICS if any(k in d for d in dicts)]
    extra: list[str] = []
    for d in dicts:
        extra += [k for k in d if k not in KINDS and k not in extra]
    return known + extra


# --------------------------------------------------------------------------- figures

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}
_LEGEND = {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"}
_PCT_HOVER = "%{y:.2%}"
_ENTRY_HOVER = "entry %{y}<br>qty %{customdata[0]}<br>%{customdata[1]}"
_EXIT_HOVER = "exit %{y}<br>%{customdata[0]}<br>pnl %{customdata[1]:,.2f}"


def _layout(fig: go.Figure, height: int, title: str = "", **kw: Any) -> go.Figure:
    # Room at the top for the modebar (right) above the legend, beside the title (left).
    margin = {"l": 60, "r": 20, "t": 64, "b": 36}
    head = {"text": escape(title), "x": 0.01, "font": {"size": 14}}
    fig.update_layout(template="simple_white", height=height, title=head, margin=margin)
    fig.update_layout(hovermode="x unified", legend=_LEGEND, font=_FONT)
    fig.update_layout(**kw)
    return fig


def _plot(fig: go.Figure, div_id: str) -> str:
    opts = {"include_plotlyjs": False, "full_html": False, "config": _PLOT_CONFIG}
    html = pio.to_html(fig, div_id=div_id, **opts)
    return f'<div class="plot">{html}</div>'


def _line(x: Any, y: Any, name: str, color: str, width: float = 1.5, **kw: Any) -> go.Scatter:
    line = {"color": color, "width": width}
    return go.Scatter(x=x, y=y, name=name, mode="lines", line=line, **kw)


def _markers(x: Any, y: Any, name: str, marker: dict[str, Any], **kw: Any) -> go.Scatter:
    return go.Scatter(x=x, y=y, name=name, mode="markers", marker=marker, **kw)


MODE_COLORS = {"reducing": ORANGE, "halted": RED}
MAX_SPANS = 200  # shaded stretches drawn (a flapping state would bury the curve)


def equity_figure(
    series: dict[str, Any], spans: list[tuple[int, int, str]] | None = None
) -> go.Figure:
    """Equity vs buy & hold (with a linear/log toggle) over both drawdowns; the stretches the
    risk engine had the account reduce-only or halted shaded (`spans`)."""
    x = _x(series.get("ts", []))
    rows = {"rows": 2, "cols": 1, "row_heights": [0.68, 0.32], "vertical_spacing": 0.04}
    fig = make_subplots(shared_xaxes=True, **rows)
    fig.add_trace(_line(x, series.get("equity", []), "Strategy", BLUE), 1, 1)
    if series.get("benchmark"):
        fig.add_trace(_line(x, series["benchmark"], "Buy & hold", GREY), 1, 1)
    dd = _line(x, series.get("drawdown", []), "Strategy drawdown", RED, fill="tozeroy")
    fig.add_trace(dd.update(hovertemplate=_PCT_HOVER), 2, 1)
    if series.get("benchmark_drawdown"):
        bdd = _line(x, series["benchmark_drawdown"], "B&H drawdown", GREY)
        fig.add_trace(bdd.update(hovertemplate=_PCT_HOVER), 2, 1)
    for a, b, mode in (spans or [])[:MAX_SPANS]:
        color = MODE_COLORS.get(mode, GREY)
        for row in (1, 2):
            fig.add_vrect(
                x0=_x([a])[0], x1=_x([b])[0], fillcolor=color, opacity=0.12, line_width=0,
                row=row, col=1,
            )  # fmt: skip
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    axis_types = ("linear", "log")
    buttons = [{"label": t, "method": "relayout", "args": [{"yaxis.type": t}]} for t in axis_types]
    menu = {"type": "buttons", "direction": "right", "buttons": buttons, "x": 0, "y": 1.02}
    menu.update(xanchor="left", yanchor="bottom", pad={"r": 4})
    return _layout(fig, 560, "", updatemenus=[menu])


def price_figure(symbol: str, prices: dict[str, Any], trades: list[dict[str, Any]]) -> go.Figure:
    """Close, ▲ long / ▼ short entries and exits (green: won, red: lost); all trades plotted."""
    fig = go.Figure(_line(_x(prices.get("ts", [])), prices.get("close", []), "close", GREY))
    mine = [t for t in trades if t.get("symbol") == symbol]
    for side, shape, color in (("long", "triangle-up", GREEN), ("short", "triangle-down", RED)):
        ts = [t for t in mine if t.get("side") == side and t.get("ts_entry") is not None]
        if ts:
            marker = {"symbol": shape, "size": 10, "color": color}
            xs, ys = _x([t["ts_entry"] for t in ts]), [t.get("entry_price") for t in ts]
            mk = _markers(xs, ys, f"{side} entry", marker, hovertemplate=_ENTRY_HOVER)
            fig.add_trace(
                mk.update(customdata=[[t.get("qty"), _esc(t.get("producer"))] for t in ts])
            )
    ex = [t for t in mine if t.get("ts_exit") is not None and t.get("exit_price") is not None]
    if ex:
        colors = [GREEN if (t.get("pnl") or 0) > 0 else RED for t in ex]
        marker = {"symbol": "x-thin-open", "size": 9, "line": {"width": 2}, "color": colors}
        xs, ys = _x([t["ts_exit"] for t in ex]), [t["exit_price"] for t in ex]
        mk = _markers(xs, ys, "exit", marker, hovertemplate=_EXIT_HOVER)
        fig.add_trace(
            mk.update(customdata=[[_esc(t.get("exit_reason")), t.get("pnl")] for t in ex])
        )
    return _layout(fig, 380, f"{symbol}: close with entries and exits", hovermode="closest")


def monthly_figure(months: list[dict[str, Any]]) -> go.Figure:
    """Year x month heatmap of the document's monthly returns, colours symmetric around 0."""
    years = sorted({m["period"][:4] for m in months})
    z: list[list[Any]] = [[None] * 12 for _ in years]
    for m in months:
        z[years.index(m["period"][:4])][int(m["period"][5:7]) - 1] = m.get("ret")
    vals = [abs(v) for row in z for v in row if v is not None]
    lim = max(vals) if vals and max(vals) > 0 else 0.01
    heat = go.Heatmap(z=z, x=MONTHS, y=years, zmin=-lim, zmax=lim, zmid=0, colorscale="RdYlGn")
    heat.update(texttemplate="%{z:+.1%}", colorbar={"tickformat": ".0%"}, xgap=2, ygap=2)
    heat.update(hovertemplate="%{y} %{x}: %{z:+.2%}<extra></extra>")
    fig = go.Figure(heat)
    fig.update_yaxes(type="category", autorange="reversed")  # oldest year on top
    return _layout(fig, 130 + 46 * len(years), "", hovermode="closest")


def daily_figure(days: list[dict[str, Any]]) -> go.Figure:
    rets = [d.get("ret") for d in days]
    colors = [GREEN if (r or 0) >= 0 else RED for r in rets]
    bar = go.Bar(x=[d["period"] for d in days], y=rets, name="daily", marker_color=colors)
    fig = go.Figure(bar.update(hovertemplate="%{x}: %{y:+.2%}<extra></extra>"))
    fig.update_yaxes(tickformat=".1%")
    return _layout(fig, 300, "Daily returns", hovermode="closest")


def trades_figure(trades: list[dict[str, Any]]) -> go.Figure:
    titles = ("Trade returns", "PnL by exit reason (sum)")
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], subplot_titles=titles)
    rets = [t.get("ret") for t in trades if t.get("ret") is not None]
    hist = go.Histogram(x=rets, name="trades", marker_color=BLUE, nbinsx=60)
    fig.add_trace(hist.update(hovertemplate="%{x}: %{y} trades<extra></extra>"), 1, 1)
    # plotly sums the PnL per reason in the browser (histfunc): no aggregation here.
    reasons = [_esc(t.get("exit_reason") or "?") for t in trades]
    pnl = [t.get("pnl") or 0.0 for t in trades]
    by = go.Histogram(x=reasons, y=pnl, histfunc="sum", name="PnL", marker_color=ORANGE)
    fig.add_trace(by.update(hovertemplate="%{x}: %{y:,.2f}<extra></extra>"), 1, 2)
    fig.update_xaxes(tickformat=".1%", row=1, col=1)
    fig.update_yaxes(title_text="trades", row=1, col=1)
    fig.update_yaxes(title_text="PnL", row=1, col=2)
    return _layout(fig, 360, "", showlegend=False, hovermode="closest", bargap=0.05)


def fan_figure(method: str, fan: dict[str, Any]) -> go.Figure:
    """p5-p95 and p25-p75 bands (each drawn as low edge, then high edge filled to it), median."""
    x, fig = fan.get("x", []), go.Figure()
    for lo, hi, alpha in (("p5", "p95", 0.15), ("p25", "p75", 0.3)):
        edge = {"showlegend": False, "hoverinfo": "skip"}
        fig.add_trace(_line(x, fan.get(lo, []), lo, BLUE, width=0, **edge))
        fill = {"fill": "tonexty", "fillcolor": f"rgba(44,111,187,{alpha})", "hoverinfo": "skip"}
        fig.add_trace(_line(x, fan.get(hi, []), f"{lo}–{hi}", BLUE, width=0, **fill))
    fig.add_trace(_line(x, fan.get("p50", []), "median", BLUE, width=2))
    fig.update_xaxes(title_text="trade #" if "shuffle" in method else "bar")
    fig.update_yaxes(title_text="equity")
    return _layout(fig, 360, f"Monte Carlo fan: {method.replace('_', ' ')}")


# --------------------------------------------------------------------------- sections

_PER_SYMBOL = _spec(
    "n_trades int Trades; pnl money Net PnL; win_rate pct Win rate; fees money Fees; "
    "benchmark_return spct Buy & hold return"
)
TRADE_COLS = _spec(
    "trip_id raw #; symbol raw Symbol; side raw Side; ts_entry time Entry (UTC); "
    "ts_exit time Exit (UTC); qty qty Qty; entry_price price Entry; exit_price price Exit; "
    "pnl money PnL; ret spct Return; fees money Fees; duration_ns dur Held; "
    "exit_reason raw Exit reason; producer raw Producer; model_version raw Model"
)


def _range(start: Any, end: Any) -> str:
    return f"{utc(start)} → {utc(end)} UTC"


def _header(run: dict[str, Any]) -> str:
    mode = _esc(run.get("mode", "?"))
    syms = ", ".join(str(s) for s in run.get("symbols") or []) or "none"
    return (
        f"<h1>Run <code>{_esc(run.get('run_id', '?'))}</code>"
        f'<span class="mode {mode}">{mode}</span></h1><div class="sub">'
        f"{escape(_range(run.get('start_ns'), run.get('end_ns')))} · {escape(syms)} · "
        f"source {_esc(run.get('source', '?'))}</div>"
    )


def _warnings(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{_esc(w)}</li>" for w in warnings)
    return f'<div class="warn" id="warnings"><b>Warnings</b><ul>{items}</ul></div>'


def _cards(strat: dict[str, Any], bench: dict[str, Any]) -> str:
    out = []
    for k in (k for k in HEADLINE if k in strat):
        kind = KINDS[k]
        b = f"buy &amp; hold {escape(fmt_value(bench[k], kind))}" if k in bench else "&nbsp;"
        cls = _sign(strat[k]) if kind == "spct" else ""
        out.append(
            f'<div class="card"><div class="l">{LABELS[k]}</div><div class="v {cls}">'
            f'{escape(fmt_value(strat[k], kind))}</div><div class="b">{b}</div></div>'
        )
    return f'<div class="cards">{"".join(out)}</div>'


def _metric_rows(cols: list[tuple[dict[str, str], dict[str, Any]]]) -> list[str]:
    """One row per metric key; `cols` pairs each column's data-* attributes with its metrics."""
    rows = []
    for k in _metric_keys(*(d for _, d in cols)):
        kind = KINDS.get(k, "raw")
        cells = [f'<td class="l" title="{escape(k)}">{escape(LABELS.get(k, k))}</td>']
        for attrs, d in cols:
            na = '<td class="na">—</td>'  # the key does not apply to this column
            cells.append(_cell(d[k], kind, {"data-metric": k, **attrs}) if k in d else na)
        rows.append("".join(cells))
    return rows


def metrics_table(strat: dict[str, Any], bench: dict[str, Any]) -> str:
    rows = _metric_rows([({"data-side": "strategy"}, strat), ({"data-side": "benchmark"}, bench)])
    return _table(["Metric", "Strategy", "Buy &amp; hold"], rows, "metrics")


def _per_symbol(rows_in: list[dict[str, Any]]) -> str:
    rows = []
    for r in rows_in:
        sym = str(r.get("symbol", "?"))
        cells = [f'<td class="l">{escape(sym)}</td>']
        for key, kind, _ in _PER_SYMBOL:
            attrs = {"data-symbol": sym, "data-field": key}
            cells.append(_cell(r.get(key), kind, attrs, colour=key in ("pnl", "benchmark_return")))
        rows.append("".join(cells))
    return _table(["Symbol", *(escape(h) for _, _, h in _PER_SYMBOL)], rows, "per-symbol")


def _trade_row(t: dict[str, Any]) -> str:
    cells = []
    for key, kind, _ in TRADE_COLS:
        v = t.get(key)
        if kind == "time":
            cells.append(f"<td>{escape(utc(v, seconds=True))}</td>")
        elif kind == "raw":
            cells.append(f'<td class="l">{_esc(v)}</td>')
        else:
            cls = _sign(v) if key in ("pnl", "ret") else ("na" if v is None else "")
            cells.append(f'<td class="{cls}">{escape(fmt_value(v, kind))}</td>')
    return "".join(cells)


def trades_table(trades: list[dict[str, Any]], limit: int = TRADE_ROWS) -> str:
    """All trades up to `limit`; beyond, the first and last limit/2 around a gap row."""
    if not trades:
        return NOTE("No trades.")
    half, cut = limit // 2, len(trades) > limit
    note = f"All {len(trades):,} trades."
    if cut:
        note = f"{len(trades):,} trades: the first and last {half:,} shown (all are plotted)."
    gap = f"… {len(trades) - 2 * half:,} trades not shown …"
    gap_row = f'<tr class="gap"><td colspan="{len(TRADE_COLS)}">{gap}</td></tr>'
    shown = [*trades[:half], None, *trades[-half:]] if cut else trades
    rows = "".join(gap_row if t is None else f"<tr>{_trade_row(t)}</tr>" for t in shown)
    head = "".join(f"<th>{h}</th>" for _, _, h in TRADE_COLS)
    return (
        f'<p class="note" id="trades-note">{escape(note)}</p><div class="scroll tall">'
        f'<table class="trades"><thead><tr>{head}</tr></thead>{rows}</table></div>'
    )


def _mc_section(mc: dict[str, Any], strat: dict[str, Any]) -> str:
    """Per method: its fan plot and its percentile bands next to this run's own value."""
    present = {k: v for k, v in (mc or {}).items() if v}
    if not present:
        return NOTE("No Monte Carlo results (too few trades or returns).")
    parts = []
    for method, m in present.items():
        bands = m.get("bands") or {}
        rows = []
        for key, kind in (mk for mk in MC_METRICS if mk[0] in bands):
            cells = [f'<td class="l">{escape(LABELS.get(key, key))}</td>']
            for q in (*QUANTILES, "actual"):
                v = strat.get(key) if q == "actual" else bands[key].get(q)
                cells.append(_cell(v, kind, {"data-mc": method, "data-metric": key, "data-q": q}))
            rows.append("".join(cells))
        n_runs = m.get("n_runs")
        runs = f"{n_runs:,} runs" if isinstance(n_runs, int) else ""
        title = f"{_esc(m.get('method', method))} · {runs} · seed {_esc(m.get('seed'))}"
        fan = m.get("fan") or {}
        plot = _plot(fan_figure(method, fan), f"fig-mc-{method}") if fan.get("x") else ""
        parts.append(f"<h3>{title}</h3>{plot}" + _table(["", *QUANTILES, "this run"], rows, "mc"))
    return "".join(parts)


def _lineage(run: dict[str, Any], series: dict[str, Any]) -> str:
    fs = run.get("feature_set")
    rows = [
        ("Run", run.get("run_id")),
        ("Mode", run.get("mode")),
        ("Source", run.get("source")),
        ("Symbols", ", ".join(str(s) for s in run.get("symbols") or [])),
        ("Data range", _range(run.get("start_ns"), run.get("end_ns"))),
        ("Feature set", f"{fs.get('name')} (version {fs.get('version')})" if fs else "none"),
        ("Generated by", run.get("generated_by")),
    ]
    if run.get("requested_start_ns") or run.get("requested_end_ns"):
        req = _range(run.get("requested_start_ns"), run.get("requested_end_ns"))
        rows.insert(5, ("Requested range", req))
    if series.get("decimated"):
        rows.append(("Series", f"{series.get('n_points')} points, plotted decimated"))
    body = "".join(
        f'<tr><th class="l">{_esc(k)}</th><td class="l">{_esc(v)}</td></tr>' for k, v in rows
    )
    cols = ("producer", "model", "version", "feature_version")
    models = [
        "".join(f'<td class="l">{_esc(m.get(c))}</td>' for c in cols)
        for m in run.get("models") or []
    ]
    mt = _table(["Producer", "Model", "Version", "Feature version"], models, "models")
    mt = mt if models else NOTE("No models: rule-based producers only.")
    return f'<table class="lineage">{body}</table><h3>Models</h3>{mt}'


def _page(title: str, sections: list[tuple[str, str, str]], head: str) -> str:
    """The page: plotly.js once in <head>, so every figure's inline script finds `Plotly`."""
    nav = "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t, _ in sections)
    body = "".join(f'<section id="{a}"><h2>{escape(t)}</h2>{c}</section>' for a, t, c in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body><main>{head}<nav>{nav}</nav>{body}</main></body></html>\n"
    )


# --------------------------------------------------------------------------- public API


def render_report(doc: dict[str, Any]) -> str:
    """The run's report as one self-contained HTML page."""
    run = doc.get("run") or {}
    metrics = doc.get("metrics") or {}
    strat, bench = metrics.get("strategy") or {}, metrics.get("benchmark") or {}
    series, trades = doc.get("series") or {}, doc.get("trades") or []
    prices, periods = doc.get("prices") or {}, doc.get("periods") or {}
    none = NOTE("No data.")
    x = _x(series.get("ts") or [])

    risk_doc = doc.get("risk") or {}
    end_ns = int((series.get("ts") or [0])[-1])
    spans = state_spans(risk_doc.get("state_changes") or [], end_ns)
    equity = _plot(equity_figure(series, spans), "fig-equity") if x else none
    price = "".join(
        _plot(price_figure(s, prices[s], trades), f"fig-price-{i}")
        for i, s in enumerate(sorted(prices))
        if prices[s].get("ts")
    )
    per = ""
    if periods.get("month"):
        per += "<h3>Monthly returns</h3>" + _plot(monthly_figure(periods["month"]), "fig-monthly")
    if periods.get("day"):
        per += _plot(daily_figure(periods["day"]), "fig-daily")
    risk = none
    if x:
        window = series.get("rolling_window")
        title = f"Rolling Sharpe ({window} bars, annualised)" if window else "Rolling Sharpe"
        rs = go.Figure(_line(x, series.get("rolling_sharpe") or [], "rolling Sharpe", BLUE))
        rs.add_hline(y=0, line={"color": GREY, "width": 1})
        ex = _line(x, series.get("exposure") or [], "exposure", ORANGE, fill="tozeroy")
        ex_fig = go.Figure(ex.update(hovertemplate="%{y:.1%}"))
        ex_fig.update_yaxes(tickformat=".0%")
        risk = _plot(_layout(rs, 300, title), "fig-rolling-sharpe")
        risk += _plot(_layout(ex_fig, 260, "Gross exposure / equity"), "fig-exposure")
    dist = _plot(trades_figure(trades), "fig-trades") if trades else NOTE("No trades.")
    cfg = json.dumps(run.get("config") or {}, indent=2, sort_keys=True, default=str)

    sections = [
        ("metrics", "Metrics vs buy & hold", _cards(strat, bench) + metrics_table(strat, bench)),
        ("equity", "Equity and drawdown", equity),
        ("prices", "Prices, entries and exits", price or none),
        ("periods", "Returns by period", per or none),
        ("risk", "Rolling Sharpe and exposure", risk),
        ("engine", "Risk engine", risk_section(risk_doc)),
        ("distribution", "Trade distribution", dist),
        ("montecarlo", "Monte Carlo", _mc_section(doc.get("montecarlo") or {}, strat)),
        ("symbols", "Per symbol", _per_symbol(doc.get("per_symbol") or [])),
        ("trades", "Trades", trades_table(trades)),
        ("lineage", "Lineage", _lineage(run, series)),
        ("config", "Config", f"<pre>{escape(cfg)}</pre>"),
    ]
    head = _header(run) + _warnings(doc.get("warnings") or [])
    return _page(f"cryptoflow report {run.get('run_id', '')}", sections, head)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _config_diff(ids: list[str], configs: list[dict[str, Any]]) -> str:
    """The config keys (dotted) whose values differ between the runs."""
    flats = [_flat(c) for c in configs]
    keys = sorted({k for f in flats for k in f})
    diff = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1]
    if not diff:
        return NOTE("The configs are identical.")
    rows = [
        f'<td class="l">{escape(k)}</td>'
        + "".join(f'<td class="l">{_esc(f.get(k, "—"))}</td>' for f in flats)
        for k in diff
    ]
    return _table(["Config key", *map(escape, ids)], rows)


def _scaled(values: list[Any], base: float) -> list[Any]:
    return [None if v is None else v / base for v in values]


def render_compare(docs: list[dict[str, Any]]) -> str:
    """Runs side by side: metrics (one column per run), overlaid equity (normalised to each
    run's initial equity; its buy & hold dashed), overlaid drawdowns, config differences."""
    runs = [d.get("run") or {} for d in docs]
    ids = [str(r.get("run_id", f"run {i + 1}")) for i, r in enumerate(runs)]
    names = [escape(i) for i in ids]  # plotly renders trace names as (a subset of) HTML
    strats = [(d.get("metrics") or {}).get("strategy") or {} for d in docs]
    rows = _metric_rows([({"data-run": i}, s) for i, s in zip(ids, strats, strict=True)])
    heads = [
        f"{escape(i)}<br><span class='sub'>{_esc(r.get('mode'))} · "
        f"{escape(_range(r.get('start_ns'), r.get('end_ns')))}</span>"
        for i, r in zip(ids, runs, strict=True)
    ]
    colors = [BLUE, RED, GREEN, "#8e44ad", ORANGE, "#17becf", GREY]
    eq, dd = go.Figure(), go.Figure()
    for i, (rid, d, s) in enumerate(zip(names, docs, strats, strict=True)):
        ser = d.get("series") or {}
        e = ser.get("equity") or []
        base = s.get("initial_equity") or (e[0] if e else None)
        if not e or not base:
            continue
        c, x = colors[i % len(colors)], _x(ser.get("ts") or [])
        eq.add_trace(_line(x, _scaled(e, base), rid, c))
        if ser.get("benchmark"):
            b = _line(x, _scaled(ser["benchmark"], base), f"{rid} buy & hold", c, opacity=0.6)
            eq.add_trace(b.update(line_dash="dash"))
        dd.add_trace(_line(x, ser.get("drawdown") or [], rid, c, hovertemplate=_PCT_HOVER))
    dd.update_yaxes(tickformat=".0%")
    eq.update_yaxes(title_text="equity / initial")
    plots = _plot(_layout(eq, 480, "Equity, normalised to initial equity"), "cmp-equity")
    plots += _plot(_layout(dd, 300, "Drawdown"), "cmp-drawdown")
    sections = [
        ("metrics", "Metrics", _table(["Metric", *heads], rows, "compare")),
        ("curves", "Equity and drawdown", plots),
        ("config", "Config differences", _config_diff(ids, [r.get("config") or {} for r in runs])),
    ]
    head = f"<h1>Comparing {len(docs)} runs</h1><div class='sub'>{escape(', '.join(ids))}</div>"
    return _page("cryptoflow compare " + " vs ".join(ids), sections, head)


def write_report(doc: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_report(doc), encoding="utf-8")
    return p


def write_compare(docs: list[dict[str, Any]], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_compare(docs), encoding="utf-8")
    return p
