"""The report's risk-engine pieces: the account's halted / reduce-only stretches (shaded on the
equity plot) and the section of trading-state changes and denials by rule."""

from __future__ import annotations

from html import escape
from typing import Any

from dataflows.html_format import NOTE, _esc, _table, utc

STATE_ROWS = 100


def risk_section(risk: dict[str, Any]) -> str:
    """The risk engine's trading-state changes (time, scope, old -> new, reason) and its
    denials by rule."""
    changes, denials = risk.get("state_changes") or [], risk.get("denials") or {}
    if not changes and not denials:
        return NOTE("The risk engine changed no trading state and denied no order.")
    out = ""
    if changes:
        rows = [
            f"<td>{escape(utc(c['ts_event']))}</td><td>{_esc(c.get('symbol') or 'account')}</td>"
            f"<td>{_esc(c['old'])} → {_esc(c['new'])}</td><td>{_esc(c['reason'])}</td>"
            for c in changes[:STATE_ROWS]
        ]
        more = len(changes) - STATE_ROWS
        out += "<h3>Trading state changes</h3>" + _table(
            ["time (UTC)", "scope", "state", "reason"], rows, "states"
        )
        if more > 0:
            out += NOTE(f"{more:,} more in the trading_state table.")
    if denials:
        rows = [f"<td>{_esc(r)}</td><td>{n:,}</td>" for r, n in denials.items()]
        out += "<h3>Orders denied, by rule</h3>" + _table(["rule", "orders"], rows, "denials")
    return out


def state_spans(changes: list[dict[str, Any]], end_ns: int) -> list[tuple[int, int, str]]:
    """The account's not-ACTIVE stretches as (from, to, mode), from its account-wide trading
    state changes in event order; the last runs to `end_ns`."""
    spans: list[tuple[int, int, str]] = []
    since, mode = 0, "active"
    for c in changes:
        if c.get("symbol"):
            continue
        if mode != "active":
            spans.append((since, int(c["ts_event"]), mode))
        since, mode = int(c["ts_event"]), str(c["new"])
    if mode != "active":
        spans.append((since, max(end_ns, since), mode))
    return spans
