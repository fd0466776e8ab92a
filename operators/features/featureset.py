"""A named, versioned set of features updated together, one bar at a time.

The version is a hash of the canonical specs (family, parameters, selected parts, aliases, output
order) and of each family's implementation `version`, so a feature row or a model trained on one
set can never be silently paired with another.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Protocol

from operators.features.base import BATCH_MIN, BarColumns
from operators.features.registry import FeatureSpec, build, output_columns, parse_spec
from schemas.messages import Bar


class UpdateFn(Protocol):
    def __call__(self, bar: Bar, refs: Mapping[str, Bar] | None = None) -> tuple[float, ...]: ...


def _compile(specs: Sequence[FeatureSpec], features: Sequence[Any]) -> UpdateFn:
    """One flat function for the whole set, `(u0(bar), *u1(bar), u2(bar, ref), ...)`: no loop,
    no per-feature branches (a third of the per-bar cost of a 55-column set otherwise). Same
    order of updates and values as a loop over the features."""
    env: dict[str, Any] = {}
    items: list[str] = []
    for i, (spec, feat) in enumerate(zip(specs, features, strict=True)):
        env[f"u{i}"] = feat.update
        ref = getattr(feat, "ref", None)
        call = f"u{i}(bar)"
        if ref is not None:
            call = f"u{i}(bar, None if refs is None else refs.get({ref!r}))"
        idx = output_columns(spec, feat)[0]
        if len(feat.columns) == 1:
            items.append(call)
        elif len(idx) == len(feat.columns):
            items.append("*" + call)
        elif len(idx) == 1:
            items.append(f"{call}[{idx[0]}]")
        else:
            env[f"p{i}"] = itemgetter(*idx)
            items.append(f"*p{i}({call})")
    src = f"def update(bar, refs=None):\n    return ({', '.join(items)},)\n"
    exec(compile(src, "<featureset>", "exec"), env)  # source built from our own specs only
    return env["update"]  # type: ignore[no-any-return]


RowsFn = Callable[..., list[tuple[float, ...]]]


def _compile_rows(specs: Sequence[FeatureSpec], features: Sequence[Any]) -> RowsFn:
    """`rows(o0, o1, ...)`: per-feature output lists (what each `update` returned, bar by bar)
    -> the set's rows, selecting columns exactly as `_compile` does."""
    env: dict[str, Any] = {}
    items: list[str] = []
    for i, (spec, feat) in enumerate(zip(specs, features, strict=True)):
        idx = output_columns(spec, feat)[0]
        if len(feat.columns) == 1:
            items.append(f"a{i}")
        elif len(idx) == len(feat.columns):
            items.append(f"*a{i}")
        elif len(idx) == 1:
            items.append(f"a{i}[{idx[0]}]")
        else:
            env[f"p{i}"] = itemgetter(*idx)
            items.append(f"*p{i}(a{i})")
    names = [f"a{i}" for i in range(len(features))]
    outs = [f"o{i}" for i in range(len(features))]
    src = (
        f"def rows({', '.join(outs)}):\n"
        f"    return [({', '.join(items)},) for {', '.join(names)}, in zip({', '.join(outs)})]\n"
    )
    exec(compile(src, "<featureset-rows>", "exec"), env)  # source built from our own specs only
    return env["rows"]  # type: ignore[no-any-return]


class FeatureSet:
    # Values in `columns` order after one bar. `refs`: reference symbols' bars at the same open
    # time, for pair features (missing ones count as gaps). The compiled function itself, not a
    # method wrapping it: one call less per bar.
    update: UpdateFn

    def __init__(self, specs: Iterable[str | FeatureSpec], name: str = "custom") -> None:
        self.name = name
        self.specs = [s if isinstance(s, FeatureSpec) else parse_spec(s) for s in specs]
        if not self.specs:
            raise ValueError(f"feature set {name!r} is empty")
        self.features: list[Any] = [build(spec) for spec in self.specs]
        self.columns: list[str] = [
            c
            for s, f in zip(self.specs, self.features, strict=True)
            for c in output_columns(s, f)[1]
        ]
        dup = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if dup:
            raise ValueError(f"feature set {name!r}: duplicate columns {dup}")
        self.refs = frozenset(f.ref for f in self.features if getattr(f, "ref", None) is not None)
        self.warmup = max(f.warmup for f in self.features)
        self.version = version_of(self.specs, self.features)
        self.update = _compile(self.specs, self.features)
        self._rows = _compile_rows(self.specs, self.features)

    def update_batch(
        self, bars: Sequence[Bar], refs: Sequence[Mapping[str, Bar]] | None = None
    ) -> list[tuple[float, ...]]:
        """`[update(b, r) for b, r in zip(bars, refs)]` for a run of one symbol's bars (`refs`:
        each bar's reference bars, None: none), one family at a time: those with `update_many`
        take the whole run (equal values and state, tests/operators/test_op_feature_batch.py),
        the others bar by bar. Families never share state, so the order across them is free."""
        if refs is not None and len(refs) != len(bars):
            raise ValueError(f"{len(refs)} reference maps for {len(bars)} bars")
        if len(bars) < BATCH_MIN:  # live, paced or short runs: numpy's per-call cost would lose
            u = self.update
            if refs is None:
                return [u(b) for b in bars]
            return [u(b, r) for b, r in zip(bars, refs, strict=True)]
        cols = BarColumns(bars)
        outs: list[list[Any]] = []
        for f in self.features:
            many = getattr(f, "update_many", None)
            ref = getattr(f, "ref", None)
            u = f.update
            if many is not None:
                outs.append(many(cols))
            elif ref is None:
                outs.append([u(b) for b in bars])
            elif refs is None:
                outs.append([u(b, None) for b in bars])
            else:
                outs.append([u(b, r.get(ref)) for b, r in zip(bars, refs, strict=True)])
        return self._rows(*outs)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["update"]  # generated code does not pickle; rebuilt from the features
        del state["_rows"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.update = _compile(self.specs, self.features)
        self._rows = _compile_rows(self.specs, self.features)

    @property
    def names(self) -> list[str]:
        return self.columns

    def spec_texts(self) -> list[str]:
        return [s.text for s in self.specs]

    def get(self, name: str) -> Any | None:
        """The feature object whose canonical name is `name` (None if absent)."""
        for f in self.features:
            if f.name == name:
                return f
        return None

    def fresh(self) -> FeatureSet:
        """A new set with the same specs and no state (e.g. one per symbol)."""
        return FeatureSet(self.specs, self.name)


def version_of(specs: Sequence[FeatureSpec], features: Sequence[Any]) -> str:
    payload = [
        [s.text, type(f).__module__, getattr(f, "version", 1)]
        for s, f in zip(specs, features, strict=True)
    ]
    blob = json.dumps(payload, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
