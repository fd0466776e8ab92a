"""A named, versioned set of features updated together, one bar at a time.

The version is a hash of the canonical specs (family, parameters, selected parts, aliases, output
order) and of each family's implementation `version`, so a feature row or a model trained on one
set can never be silently paired with another.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from operators.features.registry import FeatureSpec, build, output_columns, parse_spec
from schemas.messages import Bar

NAN = float("nan")

# Update kinds (precomputed so the per-bar loop is one branch per feature).
_ONE, _MANY, _PICK = 0, 1, 2


class FeatureSet:
    def __init__(self, specs: Iterable[str | FeatureSpec], name: str = "custom") -> None:
        self.name = name
        self.specs = [s if isinstance(s, FeatureSpec) else parse_spec(s) for s in specs]
        if not self.specs:
            raise ValueError(f"feature set {name!r} is empty")
        self.features: list[Any] = []
        self.columns: list[str] = []
        self._plan: list[tuple[Any, int, bool, str | None, tuple[int, ...]]] = []
        refs: set[str] = set()
        for spec in self.specs:
            feat = build(spec)
            idx, names = output_columns(spec, feat)
            self.features.append(feat)
            self.columns += names
            ref = getattr(feat, "ref", None)
            if ref is not None:
                refs.add(ref)
            if len(feat.columns) == 1:
                kind = _ONE
            elif len(idx) == len(feat.columns):
                kind = _MANY
            else:
                kind = _PICK
            self._plan.append((feat.update, kind, ref is not None, ref, tuple(idx)))
        dup = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if dup:
            raise ValueError(f"feature set {name!r}: duplicate columns {dup}")
        self.refs = frozenset(refs)
        self.warmup = max(f.warmup for f in self.features)
        self.version = version_of(self.specs, self.features)

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

    def update(self, bar: Bar, refs: Mapping[str, Bar] | None = None) -> tuple[float, ...]:
        """Values in `columns` order after one bar. `refs`: reference symbols' bars at the same
        open time, for pair features (missing ones count as gaps)."""
        row: list[float] = []
        for upd, kind, pair, ref, idx in self._plan:
            if pair:
                v = upd(bar, refs.get(ref) if refs is not None and ref is not None else None)
            else:
                v = upd(bar)
            if kind == _ONE:
                row.append(v)
            elif kind == _MANY:
                row.extend(v)
            else:
                row.extend([v[i] for i in idx])
        return tuple(row)

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
