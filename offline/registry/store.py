"""The registry on disk: versioned model folders, the promoted pointer and its history.

  <root>/<name>/v<N>/            model files (`TreeModel.save`) + meta.json
  <root>/<name>/PROMOTED         JSON naming the promoted version (replaced atomically)
  <root>/<name>/promotions.jsonl one line per promotion: version, previous, ts_ns (UTC)

Writers never leave a half-written version or pointer: a version is built in a temp folder
inside `<root>/<name>/` and renamed into place (a rename onto an existing, non-empty `v<N>` fails,
so two registrations racing for one number end on two numbers), and PROMOTED is written beside
itself and `os.replace`d. Readers verify the model file against meta.json's sha256 before any
booster is built: an edited or corrupted model is refused, never scored. Each version also
holds forest.npz, the flattened trees it is scored with (written at registration; rebuilt at
promotion if missing or stale, so versions registered before it existed get one), tied to the
model file's sha256: loading refuses a stale one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from operators.models.tree import MODEL_FILES, TreeModel, ensure_forest, spec_json

META_FILE = "meta.json"
PROMOTED_FILE = "PROMOTED"
PROMOTIONS_FILE = "promotions.jsonl"
# What register() writes itself; a caller's meta may not set them.
REGISTRY_KEYS = (
    "name",
    "version",
    "registered_ns",
    "model_sha256",
    "spec",
    "libraries",
    "git_revision",
)
LIBRARIES = ("numpy", "xgboost", "lightgbm", "scikit-learn")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
VERSION_RE = re.compile(r"v([1-9][0-9]*)")
REPO = Path(__file__).resolve().parents[2]
PROMOTE_HINT = "cryptoflow models promote NAME VERSION"


class RegistryError(ValueError):
    """A registry request that cannot be met; the message names what to fix."""


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()  # diff(): the key is absent on that side


def default_root() -> Path:
    """$CRYPTOFLOW_REGISTRY if set, else <CRYPTOFLOW_DATA_DIR>/registry."""
    env = os.environ.get("CRYPTOFLOW_REGISTRY")
    if env:
        return Path(env).expanduser().resolve()
    from schemas.config import data_dir

    return data_dir() / "registry"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    meta: dict[str, Any]

    @property
    def number(self) -> int:
        return _number(self.version)

    @property
    def model_file(self) -> Path:
        kind = self.meta.get("spec", {}).get("kind")
        if kind not in MODEL_FILES:
            raise RegistryError(f"{self.path / META_FILE}: spec.kind {kind!r} is no model kind")
        return self.path / MODEL_FILES[kind]

    def verify(self) -> None:
        """Raise unless the model file's sha256 is the one registered."""
        path = self.model_file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the model file of {self.name} {self.version} is gone")
        got, want = sha256_file(path), self.meta.get("model_sha256")
        if got != want:
            raise RegistryError(
                f"{path}: sha256 {got[:12]}... differs from meta.json's {str(want)[:12]}...: the "
                f"model file was changed after registration; register the model again"
            )

    def load(self) -> TreeModel:
        """The model, after checking its file and spec against meta.json."""
        self.verify()
        model = TreeModel.load(self.path)
        if spec_json(model.spec) != self.meta.get("spec"):
            raise RegistryError(
                f"{self.path / 'model.json'}: the spec differs from meta.json's: the model was "
                "changed after registration; register the model again"
            )
        return model


# --------------------------------------------------------------------------- reading


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RegistryError(
            f"model name {name!r}: use lower-case letters, digits, '_', '.', '-', starting "
            "with a letter or digit (e.g. xgb-trend)"
        )
    return name


def names(root: Path) -> list[str]:
    """Registered model names, sorted (folders holding at least one version)."""
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and NAME_RE.fullmatch(p.name) and _numbers(p)
    )


def versions(root: Path, name: str) -> list[ModelVersion]:
    """Every version of `name`, v1, v2, ... in numeric order."""
    folder = _model_dir(root, name)
    return [_read(folder, n) for n in _numbers(folder)]


def resolve(root: Path, name: str, version: str = "promoted") -> ModelVersion:
    """`promoted`, `latest` or `v<N>` of `name`."""
    folder = _model_dir(root, name)
    if version == "promoted":
        mv = promoted(root, name)
        if mv is None:
            raise RegistryError(
                f"model {name!r} has no promoted version in {root}; run `{PROMOTE_HINT}` "
                f"(versions: {_known(folder)}) or ask for latest / v<N>"
            )
        return mv
    nums = _numbers(folder)
    if version == "latest":
        return _read(folder, nums[-1])
    m = VERSION_RE.fullmatch(version)
    if m is None:
        hint = f" (did you mean v{version}?)" if version.isdigit() else ""
        raise RegistryError(f"version {version!r}: want promoted, latest or v<N>{hint}")
    if int(m.group(1)) not in nums:
        raise RegistryError(f"model {name!r} has no {version}; known versions: {_known(folder)}")
    return _read(folder, int(m.group(1)))


def promoted(root: Path, name: str) -> ModelVersion | None:
    """The promoted version of `name`, or None if none was promoted."""
    folder = _model_dir(root, name)
    pointer = folder / PROMOTED_FILE
    try:
        text = pointer.read_text()
    except FileNotFoundError:
        return None
    try:
        version = json.loads(text)["version"]
    except (ValueError, KeyError, TypeError):
        raise RegistryError(
            f'{pointer}: unreadable (want {{"version": "v<N>"}}); run `{PROMOTE_HINT}` '
            "to rewrite it"
        ) from None
    m = VERSION_RE.fullmatch(str(version))
    if m is None or int(m.group(1)) not in _numbers(folder):
        raise RegistryError(
            f"{pointer} names {version!r}, which is not a version of {name!r} "
            f"({_known(folder)}); run `{PROMOTE_HINT}`"
        )
    return _read(folder, int(m.group(1)))


def promotions(root: Path, name: str) -> list[dict[str, Any]]:
    """The promotion history of `name`, oldest first."""
    path = _model_dir(root, name) / PROMOTIONS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- writing


def register(root: Path, name: str, model: TreeModel, meta: dict[str, Any]) -> ModelVersion:
    """Store `model` as the next version of `name`, with `meta` plus the registry's own keys."""
    check_name(name)
    if not isinstance(meta, dict):
        raise RegistryError(f"meta must be a dict, got {type(meta).__name__}")
    taken = [k for k in REGISTRY_KEYS if k in meta]
    if taken:
        raise RegistryError(
            f"meta sets {', '.join(taken)}: the registry writes these itself; remove them"
        )
    _check_json(meta, "meta")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{uuid.uuid4().hex}"
    try:
        model.save(tmp)
        model.save_forest(tmp)
        model_file = tmp / MODEL_FILES[model.spec.kind]
        full = {
            **meta,
            "name": name,
            "registered_ns": time.time_ns(),
            "model_sha256": sha256_file(model_file),
            "spec": spec_json(model.spec),
            "libraries": libraries(),
            "git_revision": git_revision(),
        }
        n = _next_number(folder)
        while True:
            full["version"] = f"v{n}"
            _write_durably(tmp / META_FILE, _dumps(full, indent=2))
            try:
                os.rename(tmp, folder / f"v{n}")
                break
            except OSError as exc:
                # A non-empty target (another registration won v<N>): EEXIST or ENOTEMPTY.
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                n = max(n + 1, _next_number(folder))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _read(folder, n)


def promote(root: Path, name: str, version: str) -> ModelVersion:
    """Point PROMOTED of `name` at `version` (`v<N>` or `latest`); returns that version."""
    if version == "promoted":
        raise RegistryError("promote takes a version (v<N> or latest), not 'promoted'")
    mv = resolve(root, name, version)
    mv.verify()  # never promote a model that would be refused when loaded
    ensure_forest(mv.path)  # the scoring artifact: (re)built here if missing or stale
    folder = mv.path.parent
    before = promoted(root, name)
    ts = time.time_ns()
    pointer = folder / PROMOTED_FILE
    tmp = folder / f"{PROMOTED_FILE}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        _write_durably(tmp, _dumps({"name": name, "version": mv.version, "promoted_ns": ts}) + "\n")
        os.replace(tmp, pointer)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    line = {"version": mv.version, "previous": before.version if before else None, "ts_ns": ts}
    with (folder / PROMOTIONS_FILE).open("a") as fh:  # one short write: appends do not interleave
        fh.write(_dumps(line) + "\n")
    return mv


# --------------------------------------------------------------------------- diff


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {dotted.key: leaf}; lists of dicts/lists by index (folds.0.auc)."""
    items: list[tuple[str, Any]]
    if isinstance(value, dict) and value:
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list | tuple) and any(isinstance(v, dict | list | tuple) for v in value):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:  # scalars, and lists of scalars (feature columns, calibration points) as one value
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
    return out


def _key_order(key: str) -> tuple[tuple[int, int | str], ...]:
    # Numeric parts compare as numbers: folds.2 before folds.10.
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in key.split("."))


def diff(a: ModelVersion, b: ModelVersion) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every metadata/metric leaf that differs, sorted;
    MISSING where one side lacks the key."""
    fa, fb = flatten(a.meta), flatten(b.meta)
    keys = sorted(set(fa) | set(fb), key=_key_order)
    out = []
    for k in keys:
        va, vb = fa.get(k, MISSING), fb.get(k, MISSING)
        if va is MISSING or vb is MISSING or type(va) is not type(vb) or va != vb:
            out.append((k, va, vb))
    return out


# --------------------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def libraries() -> dict[str, str]:
    """Versions of python and the model libraries that are installed."""
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        with contextlib.suppress(PackageNotFoundError):
            out[lib] = package_version(lib)
    return out


def git_revision(repo: Path = REPO) -> str:
    """HEAD of the code's checkout, "+dirty" with uncommitted changes; "unknown" without git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return f"{head}+dirty" if status else head


def _check_json(value: Any, where: str) -> None:
    """Strict JSON only (no NaN, no numpy ints, str keys), failing on the first bad leaf."""
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RegistryError(f"{where} is {value}: JSON has no NaN/inf; store null instead")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise RegistryError(f"{where}: key {k!r} is not a string; JSON keys are strings")
            _check_json(v, f"{where}[{k!r}]")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
        return
    raise RegistryError(
        f"{where} is a {type(value).__name__}, not JSON-serializable; convert it "
        "(float()/int()/.tolist()/str())"
    )


def _dumps(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, sort_keys=True, allow_nan=False)


def _write_durably(path: Path, text: str) -> None:
    with path.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _number(version: str) -> int:
    m = VERSION_RE.fullmatch(version)
    if m is None:
        raise RegistryError(f"version {version!r}: want v<N>")
    return int(m.group(1))


def _numbers(folder: Path) -> list[int]:
    """Version numbers present in a model folder, ascending (temp folders are ignored)."""
    if not folder.is_dir():
        return []
    nums = []
    for p in folder.iterdir():
        m = VERSION_RE.fullmatch(p.name)
        if m is not None and p.is_dir():
            nums.append(int(m.group(1)))
    return sorted(nums)


def _next_number(folder: Path) -> int:
    nums = _numbers(folder)
    return nums[-1] + 1 if nums else 1


def _known(folder: Path) -> str:
    return ", ".join(f"v{n}" for n in _numbers(folder)) or "none"


def _model_dir(root: Path, name: str) -> Path:
    folder = root / check_name(name)
    if not _numbers(folder):
        known = names(root)
        listed = f"known: {', '.join(known)}" if known else "it holds no models yet"
        raise RegistryError(
            f"no model {name!r} in the registry {root} ({listed}); `cryptoflow models list` "
            "shows them, --registry / $CRYPTOFLOW_REGISTRY picks another registry"
        )
    return folder


def _read(folder: Path, n: int) -> ModelVersion:
    path = folder / f"v{n}"
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{meta_path}: missing; this version folder is broken") from None
    except ValueError as exc:
        raise RegistryError(f"{meta_path}: not valid JSON ({exc}); the folder is broken") from None
    if not isinstance(meta, dict):
        raise RegistryError(f"{meta_path}: want a JSON object")
    return ModelVersion(folder.name, f"v{n}", path, meta)
