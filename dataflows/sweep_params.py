"""What a sweep is asked for: its in-sample / out-of-sample windows (`START:END`) and its
parameter axes (`--param section.key=v1,v2` or `lo:hi` for Optuna), validated against the
pydantic Config before any backtest runs (dataflows/sweep.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.config import Config, unknown_key_message


def utc_text(ns: int) -> str:
    from dataflows.datalist import utc_text as text

    return text(ns)


@dataclass(frozen=True)
class Window:
    start_ns: int
    end_ns: int  # exclusive

    def text(self) -> str:
        return f"[{utc_text(self.start_ns)}, {utc_text(self.end_ns)}) UTC"


def parse_window(text: str, flag: str) -> Window:
    """`START:END` or `START..END` (UTC dates/times, END exclusive). Times hold colons too, so
    the split is the one colon where both sides read as times."""
    from dataflows.backtest import parse_time

    cuts = [text.split("..", 1)] if ".." in text else []
    cuts += [[text[:i], text[i + 1 :]] for i, ch in enumerate(text) if ch == ":"]
    for lo, hi in cuts:
        try:
            start, end = parse_time(lo.strip()), parse_time(hi.strip())
        except ValueError:
            continue
        if start is None or end is None:
            continue
        if end <= start:
            raise ValueError(f"{flag} {text}: the end must be after the start (END is exclusive)")
        return Window(start, end)
    raise ValueError(
        f"{flag} {text!r}: want START:END as UTC dates/times, e.g. 2024-01-01:2024-01-21"
    )


def check_windows(is_w: Window, oos_w: Window) -> None:
    if is_w.start_ns < oos_w.end_ns and oos_w.start_ns < is_w.end_ns:
        raise ValueError(
            f"--in-sample {is_w.text()} and --out-of-sample {oos_w.text()} overlap: the "
            "out-of-sample window must hold no bar the sweep chose on"
        )


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Axis:
    """One `--param`: grid values, or for Optuna a range (`lo`, `hi`) or the choices."""

    path: str
    values: tuple[Any, ...] = ()
    lo: float | None = None
    hi: float | None = None
    integer: bool = False


def _field_type(path: str) -> Any:
    """The annotation of the config field at dotted `path`; unknown keys fail naming the
    section's valid keys. Past a mapping (`markets.BTCUSDT.lot_size`) pydantic judges the rest."""
    parts = path.split(".")
    model: type[BaseModel] = Config
    for i, part in enumerate(parts):
        f = model.model_fields.get(part)
        if f is None:
            msg = unknown_key_message(part, parts[:i])
            if "valid keys" not in msg:  # a "did you mean": name the neighbours too
                here = ".".join(parts[:i]) or "the top level"
                msg += f" (keys of {here}: {', '.join(sorted(model.model_fields))})"
            raise ValueError(f"--param {path}: {msg}")
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
            continue
        if i < len(parts) - 1:
            if getattr(ann, "__origin__", None) is dict:
                return None
            raise ValueError(
                f"--param {path}: `{'.'.join(parts[: i + 1])}` is a value, not a section"
            )
        return ann
    raise ValueError(
        f"--param {path}: `{path}` is a section; name one of its keys "
        f"({', '.join(sorted(model.model_fields))})"
    )


def _toml(text: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word, as --set reads it


def parse_param(text: str, optuna: bool = False) -> Axis:
    """`PATH=v1,v2,...` (values as TOML); with `optuna`, also `PATH=lo:hi`."""
    path, eq, rest = text.partition("=")
    path = path.strip()
    if not eq or not path or not rest.strip():
        raise ValueError(f"--param {text!r}: want PATH=v1,v2,... e.g. strategy.fast=5,10,20")
    ann = _field_type(path)
    if ":" in rest:
        if not optuna:
            raise ValueError(f"--param {text}: a lo:hi range needs --optuna N; list grid values")
        lo, hi = (_toml(x.strip()) for x in rest.split(":", 1))
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (lo, hi)):
            raise ValueError(f"--param {text}: a range wants numbers, lo:hi")
        if not lo < hi:
            raise ValueError(f"--param {text}: the range lo:hi needs lo < hi")
        if ann is int and not (isinstance(lo, int) and isinstance(hi, int)):
            raise ValueError(f"--param {text}: {path} is an integer; give integer bounds")
        if ann not in (int, float, None):
            raise ValueError(f"--param {text}: {path} is not a number; list its choices")
        return Axis(path, lo=float(lo), hi=float(hi), integer=ann is int)
    values = tuple(_toml(v.strip()) for v in rest.split(",") if v.strip())
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f"--param {text}: a value is listed twice")
    return Axis(path, values=values)


def check_axes(axes: Sequence[Axis]) -> None:
    if not axes:
        raise ValueError("a sweep needs at least one --param PATH=v1,v2,...")
    paths = [a.path for a in axes]
    dup = sorted({p for p in paths if paths.count(p) > 1})
    if dup:
        raise ValueError(f"--param {', '.join(dup)} given twice: one --param per path")


def _get(obj: Any, parts: Sequence[str]) -> Any:
    for p in parts:
        obj = obj[p] if isinstance(obj, dict) else getattr(obj, p)
    return obj


def point_config(base: Config, params: dict[str, Any]) -> tuple[Config | None, dict[str, Any], str]:
    """-> (config, the values as the config holds them, "") or (None, params, why rejected)."""
    raw = base.model_dump()
    for path, value in params.items():
        node = raw
        *head, last = path.split(".")
        for p in head:
            node = node.setdefault(p, {})
        node[last] = value
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        named = not loc or loc.rsplit(".", 1)[-1] in msg  # a rule's message names its keys
        return None, params, msg if named else f"{loc}: {msg}"
    return cfg, {p: _get(cfg, p.split(".")) for p in params}, ""


# --------------------------------------------------------------------------- running
