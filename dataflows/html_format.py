"""Formatting for the HTML report (dataflows/html_report.py): the page's CSS and how one value
becomes a cell's text (%, ratios, money, durations, UTC times). Presentation only."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

import numpy as np

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0;color:#1d2733;background:#f5f7fa}
main{max-width:1320px;margin:0 auto;padding:18px 28px 60px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:30px 0 8px;
 border-bottom:1px solid #d5dbe3;padding-bottom:4px}h3{font-size:14px;margin:16px 0 6px}
.sub{color:#5a6675;font-size:13px}.mode{display:inline-block;padding:1px 8px;border-radius:9px;
 background:#2c6fbb;color:#fff;font-size:12px;margin-left:6px;vertical-align:middle}
.mode.live{background:#d73027}.mode.paper{background:#e08214}
.warn{background:#fff4e0;border:1px solid #f0b45c;border-left:6px solid #e08214;
 padding:8px 14px;margin:12px 0;border-radius:4px}.warn ul{margin:4px 0;padding-left:20px}
nav{font-size:13px;margin:10px 0}nav a{margin-right:12px;color:#2c6fbb;text-decoration:none}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}.card{background:#fff;
 border:1px solid #d5dbe3;border-radius:6px;padding:10px 16px;min-width:150px}
.card .v{font-size:22px;font-weight:600}.card .l,.card .b{font-size:12px;color:#5a6675}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:4px 0}
th,td{border:1px solid #dde3ea;padding:3px 9px;text-align:right;white-space:nowrap}
th{background:#eef2f6;font-weight:600}td.l,th.l{text-align:left}
.pos{color:#1a7f3c}.neg{color:#c0392b}.na{color:#9aa5b1}.gap td{text-align:center;
 color:#5a6675;background:#f5f7fa;font-style:italic}.scroll{overflow-x:auto}
.plot{background:#fff;border:1px solid #d5dbe3;border-radius:6px;margin:8px 0;padding:4px}
pre{background:#fff;border:1px solid #d5dbe3;padding:10px;font-size:12px;overflow:auto;
 max-height:480px}.note{color:#5a6675;font-size:12px;margin:4px 0}
.tall{max-height:640px;overflow-y:auto;border:1px solid #d5dbe3}
.tall th{position:sticky;top:0;z-index:1}
"""


# --------------------------------------------------------------------------- formatting


def fmt_duration(ns: float) -> str:
    """`3d 4h 12m`; under a minute in seconds."""
    secs = float(ns) / 1e9
    if abs(secs) < 60:
        return f"{secs:.0f}s"
    mins = round(secs / 60)
    d, rem = divmod(mins, 1440)
    h, m = divmod(rem, 60)
    parts = [f"{d}d"] if d else []
    if d or h:
        parts.append(f"{h}h")
    parts.append(f"{m}m")
    return " ".join(parts)


_FORMATS: dict[str, Any] = {
    "spct": lambda f: f"{f * 100:+,.2f}%",
    "pct": lambda f: f"{f * 100:,.2f}%",
    "ratio": lambda f: f"{f:,.2f}",
    "times": lambda f: f"{f:,.2f}×",
    "money": lambda f: f"{f:,.2f}",
    "int": lambda f: f"{int(f):,}",
    "dur": fmt_duration,
    "time": lambda f: utc(int(f)),
    "price": lambda f: f"{f:,.2f}" if abs(f) >= 1 else f"{f:.6g}",  # sub-unit coins keep digits
    "qty": lambda f: f"{f:.6g}",
}


def fmt_value(v: Any, kind: str = "raw") -> str:
    """One cell's text: None is n/a; `kind` picks %, ratio, money, duration, ... or raw."""
    if v is None:
        return "n/a"
    if isinstance(v, bool) or not isinstance(v, int | float) or kind not in _FORMATS:
        return str(v)
    f = float(v)
    if not math.isfinite(f):
        return "n/a" if math.isnan(f) else ("∞" if f > 0 else "−∞")
    return str(_FORMATS[kind](f))


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _sign(v: Any) -> str:
    if not _num(v) or not math.isfinite(float(v)) or v == 0:
        return ""
    return "pos" if v > 0 else "neg"


def _cell(v: Any, kind: str, attrs: dict[str, str], colour: bool = False) -> str:
    """A <td> with data-* attributes; numeric values also get data-value = repr(value)."""
    a = dict(attrs)
    if _num(v):
        a["data-value"] = repr(v if isinstance(v, int) else float(v))
    cls = "na" if v is None else (_sign(v) if colour else "")
    attr = "".join(f' {k}="{escape(str(x))}"' for k, x in a.items())
    cls_attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}{cls_attr}>{escape(fmt_value(v, kind))}</td>"


def utc(ns: int | None, seconds: bool = False) -> str:
    if ns is None:
        return "n/a"
    t = _EPOCH + timedelta(microseconds=int(ns) // 1000)
    return t.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _x(ts: list[int]) -> list[str]:
    """Plotly date axis values from int ns (ISO strings, UTC)."""
    if not ts:
        return []
    arr = np.asarray(ts, dtype=np.int64).astype("datetime64[ns]")
    return np.datetime_as_string(arr, unit="s").tolist()  # type: ignore[no-any-return]


def _esc(v: Any) -> str:
    return escape("" if v is None else str(v))


NOTE = '<p class="note">{}</p>'.format


def _table(head: list[str], rows: list[str], cls: str = "") -> str:
    ths = "".join(
        f'<th class="l">{h}</th>' if i == 0 else f"<th>{h}</th>" for i, h in enumerate(head)
    )
    body = "".join(f"<tr>{r}</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><tr>{ths}</tr>{body}</table></div>'
