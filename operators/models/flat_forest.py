"""A booster's trees as flat arrays, evaluated by one compiled kernel: the scoring path of
`TreeModel` for a batch and for one row live (ADR 0013).

Exactness, not closeness: the kernel repeats each library's own arithmetic, so margins equal
the stock booster's bit for bit (checked on probe rows whenever a forest meets its booster):
  xgboost   inputs cast to float32; `x < threshold` in float32, NaN -> the node's default
            side; margin = base_score (margin space) + leaves, summed in float32, tree order
  lightgbm  inputs as float64, |x| <= 1e-35 read as 0 (its dense-row reader does that);
            NaN -> default side when missing_type is NaN, else read as 0; missing_type Zero
            sends 0 to the default side; `x <= threshold` in float64; leaves summed in float64
            from 0, tree order
The link (softmax, sigmoid, one-vs-rest sigmoids) is ours, in float64 from the margin, inside
the same kernel call, so a row's probabilities never depend on the rows scored with it.

Nodes of all trees share arrays: `feature`, `threshold` (the leaf value at a leaf), `left` and
`right` (absolute node indices; left = -1 marks a leaf), `flags` (bit 0: missing goes left,
bits 1-2: lightgbm missing type), `roots` and `group` (the class a tree adds to) per tree.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from operators.models.forest_kernels import BLOCK_MIN_ROWS, kernels

FOREST_FILE = "forest.npz"
FORMAT = 1
Link = Literal["softmax", "sigmoid", "ova"]  # ova: one sigmoid per class, not normalized
LINKS: dict[str, int] = {"softmax": 0, "sigmoid": 1, "ova": 2}
KZERO = float(np.float32(1e-35))  # lightgbm's kZeroThreshold (a float, compared as double)
MISSING_TYPES = {"None": 0, "Zero": 1, "NaN": 2}
ARRAYS = ("feature", "threshold", "left", "right", "flags", "roots", "group", "base")
PROBE_ROWS = 256


class ForestError(ValueError):
    """A forest that cannot be built, loaded or trusted; the message names what to fix."""


class StaleForest(ForestError):
    """A forest artifact that was not built from the model file beside it."""


class FlatForest:
    """Immutable once built; `proba(x)` is the scoring function for any number of rows."""

    def __init__(
        self,
        kind: Literal["xgboost", "lightgbm"],
        n_features: int,
        link: Link,
        scale: float,
        arrays: dict[str, np.ndarray],
    ) -> None:
        fdt: type[np.generic] = np.float32 if kind == "xgboost" else np.float64
        i32: type[np.generic] = np.int32
        dtypes = dict(feature=i32, threshold=fdt, left=i32, right=i32, roots=i32, group=i32)
        dtypes |= dict(flags=np.uint8, base=fdt)
        missing = [k for k in ARRAYS if k not in arrays]
        if missing:
            raise ForestError(f"a {kind} forest needs arrays {missing}")
        a: dict[str, Any] = {k: np.ascontiguousarray(arrays[k], dtype=dtypes[k]) for k in ARRAYS}
        for v in a.values():
            v.setflags(write=False)
        n, t, g = len(a["feature"]), len(a["roots"]), len(a["base"])
        inner = a["left"] >= 0
        if not (
            t > 0
            and g > 0
            and all(len(a[k]) == n for k in ("threshold", "left", "right", "flags"))
            and len(a["group"]) == t
            and ((a["roots"] >= 0) & (a["roots"] < n)).all()
            and ((a["group"] >= 0) & (a["group"] < g)).all()
            and (a["left"][inner] < n).all()
            and ((a["right"][inner] >= 0) & (a["right"][inner] < n)).all()
            and ((a["feature"][inner] >= 0) & (a["feature"][inner] < n_features)).all()
        ):
            raise ForestError(f"inconsistent {kind} forest arrays (indices out of range)")
        if link not in LINKS or (link == "sigmoid") != (g == 1):
            raise ForestError(f"link {link!r} with {g} class groups")
        self.kind = kind
        self.n_features = n_features
        self.link: Link = link
        self.scale = float(scale)
        self.arrays = a
        self.n_classes = 2 if link == "sigmoid" else g
        self._layout = _Layout(kind, a)

    def __deepcopy__(self, memo: dict[int, Any]) -> FlatForest:
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_layout"}  # derived

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._layout = _Layout(self.kind, self.arrays)

    @property
    def n_trees(self) -> int:
        return len(self.arrays["roots"])

    @property
    def n_nodes(self) -> int:
        return len(self.arrays["feature"])

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Raw scores, shape (n, class groups), float64 (xgboost's are float32 values)."""
        return self._score(x)[0].astype(np.float64)

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), float64; row i depends on x[i] only."""
        return self._score(x)[1]

    def _score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One kernel call: margins (the kernel's own dtype) and probabilities."""
        n, lay = self._rows(x).shape[0], self._layout
        link, ft = LINKS[self.link], lay.recf.dtype
        margin = np.empty((n, len(lay.base)), dtype=ft)
        proba = np.empty((n, self.n_classes), dtype=np.float64)
        # the same floats either way (forest_kernels.py says which walk pays where)
        walk = "blocks" if n >= BLOCK_MIN_ROWS and self.kind == "lightgbm" else "rows"
        levels = lay.sdepth if walk == "blocks" else lay.active
        args = (lay.rec, lay.recf, lay.sroots, levels, lay.pos, lay.group, lay.base)
        kernel = kernels()[self.kind, walk]
        if self.kind == "xgboost":
            with np.errstate(over="ignore"):  # xgboost's static_cast: beyond float32 is inf
                x32 = np.ascontiguousarray(x, dtype=np.float32)
            kernel(x32, *args, link, self.scale, margin, proba)
        else:
            x64 = np.ascontiguousarray(x, dtype=np.float64)
            kernel(x64, *args, link, self.scale, KZERO, margin, proba)
        return margin, proba

    def _rows(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"want rows of {self.n_features} features, got shape {x.shape}")
        return x

    # --- checks against the booster ------------------------------------------------------

    def probe(self, n: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
        """Rows that hit every split's edge: each feature drawn from its thresholds, their
        neighbours in the compared precision, 0, +-1e-36, +-inf and NaN."""
        a: dict[str, Any] = self.arrays
        rng = np.random.default_rng(seed)
        ft = a["threshold"].dtype.type
        inner = a["left"] >= 0
        specials = np.array([0.0, -0.0, 1e-36, -1e-36, np.inf, -np.inf, np.nan])
        x = np.empty((n, self.n_features), dtype=np.float64)
        for f in range(self.n_features):
            thr = a["threshold"][inner & (a["feature"] == f)]
            up, down = np.nextafter(thr, ft(np.inf)), np.nextafter(thr, ft(-np.inf))
            pool = np.concatenate([thr, up, down]).astype(np.float64)
            pick = pool[rng.integers(0, len(pool), n)] if len(pool) else np.zeros(n)
            odd = rng.random(n) < 0.15
            pick[odd] = specials[rng.integers(0, len(specials), int(odd.sum()))]
            x[:, f] = pick
        return x

    def check(self, booster: Any, x: np.ndarray | None = None) -> None:
        """Raise unless the margins equal the booster's own on probe rows (and on `x`)."""
        rows = self.probe() if x is None else np.vstack([self.probe(), x])
        want = booster_margin(self.kind, booster, rows)
        got = self.margin(rows)
        if want.shape != got.shape or not np.array_equal(want, got, equal_nan=True):
            bad = int((want != got).any(axis=1).sum()) if want.shape == got.shape else -1
            raise ForestError(
                f"the flattened {self.kind} forest disagrees with its booster on {bad} of "
                f"{len(rows)} probe rows (shapes {got.shape} vs {want.shape}): this model uses "
                "something flat_forest.py does not reproduce; report it with the model file"
            )

    # --- artifact --------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "n_features": self.n_features,
            "link": self.link,
            "scale": self.scale,
        }

    def digest(self) -> str:
        """sha256 over the header and every array's dtype, shape and bytes."""
        h = hashlib.sha256(json.dumps(self.header(), sort_keys=True).encode())
        for k in ARRAYS:
            v = self.arrays[k]
            h.update(f"{k}:{v.dtype.str}:{v.shape}".encode())
            h.update(v.tobytes())
        return h.hexdigest()

    def save(self, path: Path, model_sha256: str) -> None:
        """An .npz (byte-deterministic: fixed zip timestamps) tied to the model file's sha256."""
        meta = self.header() | {"model_sha256": model_sha256, "digest": self.digest()}
        blobs = {k: self.arrays[k] for k in ARRAYS}
        blobs["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for k, v in blobs.items():
                npy = io.BytesIO()
                np.save(npy, v, allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{k}.npy", (1980, 1, 1, 0, 0, 0)), npy.getvalue())
        path.write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: Path, model_sha256: str) -> FlatForest:
        """The forest in `path`; StaleForest unless it was built from the model whose file has
        `model_sha256`, ForestError if it is corrupt."""
        try:
            with np.load(path, allow_pickle=False) as z:
                blobs = {k: z[k] for k in z.files}
            meta = json.loads(blobs.pop("meta").tobytes())
            forest = cls(meta["kind"], meta["n_features"], meta["link"], meta["scale"], blobs)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            if isinstance(exc, ForestError):
                raise ForestError(f"{path}: {exc}; delete it to rebuild from the model") from None
            raise ForestError(f"{path}: unreadable ({exc}); delete it to rebuild") from None
        if meta.get("format") != FORMAT:
            raise StaleForest(f"{path}: format {meta.get('format')}, this code reads {FORMAT}")
        if meta.get("model_sha256") != model_sha256:
            raise StaleForest(
                f"{path} was built from a model file with sha256 "
                f"{str(meta.get('model_sha256'))[:12]}..., the model file beside it has "
                f"{model_sha256[:12]}...: stale; delete it (or promote the version) to rebuild"
            )
        if meta.get("digest") != forest.digest():
            raise ForestError(f"{path}: its arrays do not match its digest (corrupt); delete it")
        return forest


class _Layout:
    """What the kernel walks, derived from the canonical arrays: one record per node (xgboost
    16 bytes: word, threshold, left, right; lightgbm 32: word, left, right, -, threshold), the
    word being feature | direction bits << 24; a leaf's children are itself, its threshold its
    value. Trees are walked deepest first: `active[d]` trees still descend at level d."""

    def __init__(self, kind: str, a: dict[str, np.ndarray]) -> None:
        left, right, flags = a["left"], a["right"], a["flags"]
        n, roots = len(left), a["roots"]
        if roots[0] != 0 or (np.diff(roots) <= 0).any() or (a["feature"] >= 1 << 24).any():
            raise ForestError("trees must be contiguous node runs and features < 2**24")
        leaf, idx = left < 0, np.arange(n, dtype=np.int32)
        lo, hi = np.where(leaf, idx, left), np.where(leaf, idx, right)
        default_right = (1 - (flags & 1)).astype(np.int32)
        if kind == "xgboost":
            word = default_right  # NaN goes the default side
            rec = np.zeros((n, 4), dtype=np.int32)
            recf = rec.view(np.float32)
            rec[:, 2], rec[:, 3] = lo, hi
            recf[:, 1] = a["threshold"]
        else:
            mt = flags.astype(np.int32) >> 1
            # NaN: the default side when missing_type is NaN or Zero, else where 0 would go
            zero_right = (~(a["threshold"] >= 0.0)).astype(np.int32)
            nan_right = np.where(mt == 0, zero_right, default_right)
            word = nan_right | (mt == 1).astype(np.int32) << 1 | default_right << 2
            rec = np.zeros((n, 8), dtype=np.int32)
            recf = rec.view(np.float64)
            rec[:, 1], rec[:, 2] = lo, hi
            recf[:, 2] = a["threshold"]
        rec[:, 0] = np.where(leaf, 0, a["feature"] | word << 24)
        depth = np.zeros(n, dtype=np.int32)
        level = roots.astype(np.intp)
        while len(level):  # breadth first: each node's depth
            level = level[~leaf[level]]
            kids = np.concatenate([left[level], right[level]])
            depth[kids] = np.repeat(depth[level] + 1, 2)
            level = kids
        tree_depth = np.maximum.reduceat(depth, roots)
        order = np.argsort(-tree_depth, kind="stable")
        self.rec, self.recf = rec, recf
        self.sroots = np.ascontiguousarray(roots[order], dtype=np.int32)
        self.active = np.array([(tree_depth > d).sum() for d in range(tree_depth.max())])
        self.active = self.active.astype(np.int32)
        self.sdepth = np.ascontiguousarray(tree_depth[order], dtype=np.int32)  # per slot
        self.pos = np.empty(len(order), dtype=np.int32)
        self.pos[order] = np.arange(len(order), dtype=np.int32)
        self.group = a["group"].copy()  # writable: the kernel's signatures take plain arrays
        self.base = a["base"].copy()


# --------------------------------------------------------------------------- building


def from_booster(kind: str, booster: Any) -> FlatForest:
    if kind == "xgboost":
        return from_xgboost(booster)
    if kind == "lightgbm":
        return from_lightgbm(booster)
    raise ForestError(f"no flat forest for model kind {kind!r}")


def booster_margin(kind: str, booster: Any, x: np.ndarray) -> np.ndarray:
    """The stock library's raw scores, shape (n, groups), float64: what the forest must equal."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if kind == "xgboost":
        m = booster.inplace_predict(x, predict_type="margin", validate_features=False)
    else:
        m = booster.predict(x, raw_score=True, num_threads=1)
    m = np.asarray(m).astype(np.float64)
    return m.reshape(len(x), -1)


def _scalars(text: str) -> list[float]:
    # xgboost >= 3.1 writes a vector "[a,b,c]", older versions one number "5E-1"
    return [float(s) for s in text.strip("[]").split(",") if s.strip()]


def from_xgboost(booster: Any) -> FlatForest:
    """From the booster's JSON model (float32 values print round-trip exact)."""
    learner = json.loads(bytes(booster.save_raw("json")))["learner"]
    lmp, obj = learner["learner_model_param"], learner["objective"]["name"]
    gb = learner["gradient_booster"]
    if gb.get("name") != "gbtree":
        raise ForestError(f"xgboost booster {gb.get('name')!r}: only gbtree is flattened")
    if int(lmp.get("num_target", "1")) != 1:
        raise ForestError("multi-target xgboost models are not flattened")
    n_features = int(lmp["num_feature"])
    base = np.array(_scalars(lmp["base_score"]), dtype=np.float32)
    if obj == "multi:softprob":
        k = int(lmp["num_class"])
        base = np.broadcast_to(base, (k,)).copy() if len(base) == 1 else base
        link: Link = "softmax"
    elif obj == "binary:logistic":  # stored as a probability; xgboost's float32 logit
        one = np.float32(1.0)
        base = np.array([-math.log(float(one / base[0] - one))], dtype=np.float32)
        link, k = "sigmoid", 1
    else:
        raise ForestError(
            f"xgboost objective {obj!r}: flat scoring knows multi:softprob and binary:logistic"
        )
    if len(base) != k:
        raise ForestError(f"xgboost base_score has {len(base)} values for {k} classes")
    model = gb["model"]
    trees, info = model["trees"], [int(g) for g in model["tree_info"]]
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "left", "right")}
    flags, roots, offset = [], [], 0
    for t in trees:
        if any(int(s) != 0 for s in t["split_type"]):
            raise ForestError("xgboost categorical splits are not flattened")
        if int(t["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise ForestError("xgboost vector-leaf trees are not flattened")
        left = np.asarray(t["left_children"], dtype=np.int64)
        right = np.asarray(t["right_children"], dtype=np.int64)
        leaf = left < 0
        cols["feature"].append(np.where(leaf, 0, np.asarray(t["split_indices"], np.int64)))
        cols["threshold"].append(np.asarray(t["split_conditions"], dtype=np.float32))
        cols["left"].append(np.where(leaf, -1, left + offset))
        cols["right"].append(np.where(leaf, -1, right + offset))
        flags.append(np.asarray(t["default_left"], dtype=np.uint8) & 1)
        roots.append(offset)
        offset += len(left)
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    arrays |= {"flags": np.concatenate(flags), "roots": np.array(roots), "group": np.array(info)}
    return FlatForest("xgboost", n_features, link, 1.0, arrays | {"base": base})


def _objective(text: str) -> tuple[str, dict[str, str]]:
    name, *rest = text.split()
    return name, dict(p.split(":", 1) for p in rest if ":" in p)


def from_lightgbm(booster: Any) -> FlatForest:
    """From `dump_model()` (doubles print round-trip exact), best iteration as predict uses."""
    d = booster.dump_model()
    if d.get("average_output"):
        raise ForestError("lightgbm random-forest mode (average_output) is not flattened")
    obj, params = _objective(str(d["objective"]))
    per_iter = int(d["num_tree_per_iteration"])
    link: Link
    if obj == "binary" and per_iter == 1:
        link = "sigmoid"
    elif obj == "multiclass":
        link = "softmax"
    elif obj == "multiclassova":
        link = "ova"
    else:
        raise ForestError(
            f"lightgbm objective {obj!r}: flat scoring knows binary, multiclass, multiclassova"
        )
    scale = float(params.get("sigmoid", "1"))
    n_features = int(d["max_feature_idx"]) + 1
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    flags: list[int] = []
    roots, group = [], []
    for i, info in enumerate(d["tree_info"]):
        roots.append(len(feature))
        group.append(i % per_iter)
        stack: list[tuple[dict[str, Any], int]] = [(info["tree_structure"], -1)]
        while stack:  # preorder; a child patches its parent's pointer when it gets its index
            node, parent = stack.pop()
            me = len(feature)
            if parent >= 0:
                (left if left[parent] == -2 else right)[parent] = me
            if "leaf_value" in node:
                if "leaf_coeff" in node:
                    raise ForestError("lightgbm linear trees are not flattened")
                feature.append(0)
                threshold.append(float(node["leaf_value"]))
                left.append(-1)
                right.append(-1)
                flags.append(0)
                continue
            if node["decision_type"] != "<=":
                raise ForestError(f"lightgbm {node['decision_type']!r} (categorical) splits")
            feature.append(int(node["split_feature"]))
            threshold.append(float(node["threshold"]))
            left.append(-2)  # patched by the left child, then the right
            right.append(-2)
            mt = MISSING_TYPES[node["missing_type"]]
            flags.append(int(bool(node["default_left"])) | (mt << 1))
            stack.append((node["right_child"], me))
            stack.append((node["left_child"], me))
    arrays = {
        "feature": np.array(feature),
        "threshold": np.array(threshold, dtype=np.float64),
        "left": np.array(left),
        "right": np.array(right),
        "flags": np.array(flags),
        "roots": np.array(roots),
        "group": np.array(group),
        "base": np.zeros(per_iter),
    }
    return FlatForest("lightgbm", n_features, link, scale, arrays)
