"""The compiled kernels of the flat forest (operators/models/flat_forest.py, ADR 0013).

Plain Python, compiled by numba once per machine (cache=True) for the signatures below. Two
walks with the same arithmetic, so the same floats:
  rows    per row, all trees descend one level at a time (deepest first, leaves loop onto
          themselves): the trees' walks are independent, so the CPU overlaps them instead of
          waiting on one dependent load chain (a row live, a few rows)
  blocks  per block of rows, one tree at a time in tree order, all the block's rows descend it
          one level at a time: the tree's nodes stay in L1 while the rows' independent walks
          overlap, and each row adds the tree's leaf at once (LightGBM batches)
The block walk stops a tree when every row of the block is at its leaf: it pays for
LightGBM's leaf-wise trees (paths of ~3 steps in trees ~11 deep), not for XGBoost's depth-wise
ones (measured slower there, so XGBoost batches take the row walk). Either way the step is
branch-free, and each row's leaves are added in tree order (so a row's margin never depends on
the rows scored with it, or on the walk).
Loop vectorization is off: the gathers it emits are slower here than scalar loads.
"""

from __future__ import annotations

import functools
import importlib
import math
import types
from collections.abc import Callable
from typing import Any

import numpy as np

BLOCK = 16  # rows per block (measured: 8-32 alike, 4 and 64 slower)
BLOCK_MIN_ROWS = 8  # fewer rows: the row walk (the block walk's one-tree chains are longer)

Kernel = Callable[..., None]


def _xgb_kernel(
    x: Any, rec: Any, recf: Any, sroots: Any, active: Any, pos: Any, group: Any, base: Any,
    link: int, scale: float, margin: Any, proba: Any,
) -> None:  # fmt: skip
    n, g = margin.shape
    t_n = len(sroots)
    nodes = np.empty(t_n, np.int32)
    for i in range(n):
        xi = x[i]
        for o in range(t_n):
            nodes[o] = sroots[o]
        for d in range(len(active)):
            for o in range(active[d]):
                nd = nodes[o]
                w = rec[nd, 0]
                v = xi[w & 0xFFFFFF]
                right = np.int32(v >= recf[nd, 1]) | (np.int32(v != v) & (w >> 24))
                nodes[o] = rec[nd, 2 + (right & 1)]
        for j in range(g):
            margin[i, j] = base[j]
        for t in range(t_n):
            margin[i, group[t]] += recf[nodes[pos[t]], 1]  # float32 + float32, tree order
    _link(margin, link, scale, proba)


def _lgb_kernel(
    x: Any, rec: Any, recf: Any, sroots: Any, active: Any, pos: Any, group: Any, base: Any,
    link: int, scale: float, kzero: float, margin: Any, proba: Any,
) -> None:  # fmt: skip
    n, g = margin.shape
    t_n, f_n = len(sroots), x.shape[1]
    nodes = np.empty(t_n, np.int32)
    xr = np.empty(f_n, np.float64)
    for i in range(n):
        for f in range(f_n):
            v = x[i, f]
            xr[f] = 0.0 if abs(v) <= kzero else v
        for o in range(t_n):
            nodes[o] = sroots[o]
        for d in range(len(active)):
            for o in range(active[d]):
                nd = nodes[o]
                w = rec[nd, 0]
                v = xr[w & 0xFFFFFF]
                isnan = np.int32(v != v)
                zero = np.int32(v == 0.0) & (w >> 25)  # bit 1: 0 goes the default side
                gt = np.int32(v > recf[nd, 2])
                keep = (1 - isnan) & (1 - zero)
                right = (isnan & (w >> 24)) | (zero & (w >> 26)) | (keep & gt)
                nodes[o] = rec[nd, 1 + (right & 1)]
        for j in range(g):
            margin[i, j] = base[j]
        for t in range(t_n):
            margin[i, group[t]] += recf[nodes[pos[t]], 2]
    _link(margin, link, scale, proba)


def _lgb_blocks(
    x: Any, rec: Any, recf: Any, sroots: Any, sdepth: Any, pos: Any, group: Any, base: Any,
    link: int, scale: float, kzero: float, margin: Any, proba: Any,
) -> None:  # fmt: skip
    n, g = margin.shape
    t_n, f_n = len(sroots), x.shape[1]
    xr = np.empty((BLOCK, f_n), np.float64)
    cur = np.empty(BLOCK, np.int32)
    for r0 in range(0, n, BLOCK):
        m = min(BLOCK, n - r0)
        for r in range(m):
            for f in range(f_n):
                v = x[r0 + r, f]
                xr[r, f] = 0.0 if abs(v) <= kzero else v
            for j in range(g):
                margin[r0 + r, j] = base[j]
        for t in range(t_n):
            o = pos[t]
            root, k = sroots[o], group[t]
            for r in range(m):
                cur[r] = root
            for _ in range(sdepth[o]):
                moved = 0
                for r in range(m):
                    nd = cur[r]
                    w = rec[nd, 0]
                    v = xr[r, w & 0xFFFFFF]
                    isnan = np.int32(v != v)
                    zero = np.int32(v == 0.0) & (w >> 25)  # bit 1: 0 goes the default side
                    gt = np.int32(v > recf[nd, 2])
                    keep = (1 - isnan) & (1 - zero)
                    right = (isnan & (w >> 24)) | (zero & (w >> 26)) | (keep & gt)
                    nxt = rec[nd, 1 + (right & 1)]
                    moved |= nxt ^ nd
                    cur[r] = nxt
                if moved == 0:  # every row of the block is at its leaf
                    break
            for r in range(m):
                margin[r0 + r, k] += recf[cur[r], 2]
    _link(margin, link, scale, proba)


def _link(m: Any, code: int, scale: float, out: Any) -> None:
    n, g = m.shape
    for i in range(n):
        if code == 1:
            p = 1.0 / (1.0 + math.exp(-scale * np.float64(m[i, 0])))
            out[i, 0] = 1.0 - p
            out[i, 1] = p
        elif code == 2:
            for j in range(g):
                out[i, j] = 1.0 / (1.0 + math.exp(-scale * np.float64(m[i, j])))
        else:
            top = np.float64(m[i, 0])
            for j in range(1, g):
                top = max(top, np.float64(m[i, j]))
            total = 0.0
            for j in range(g):
                out[i, j] = math.exp(np.float64(m[i, j]) - top)
                total += out[i, j]
            for j in range(g):
                out[i, j] = out[i, j] / total


def _signature(f: str, extra: str = "") -> str:
    a, i = f"{f}[:, ::1]", "int32[::1]"
    inputs = f"{a}, int32[:, ::1], {a}, {i}, {i}, {i}, {i}, {f}[::1], int64, float64, {extra}"
    return f"void({inputs}{a}, float64[:, ::1])"


Kernels = dict[tuple[str, str], Kernel]  # (kind, "rows" | "blocks") -> compiled kernel


@functools.cache
def kernels() -> Kernels:
    try:
        numba: Any = importlib.import_module("numba")
    except ImportError as exc:
        raise ImportError(
            "tree-model scoring compiles its kernel with numba: pip install -e '.[trees]'"
        ) from exc
    cfg = numba.config
    saved = cfg.LOOP_VECTORIZE, cfg.SLP_VECTORIZE
    cfg.LOOP_VECTORIZE = cfg.SLP_VECTORIZE = False
    try:
        jit = functools.partial(numba.njit, cache=True, nogil=True, boundscheck=False)
        # The kernels call the compiled link: the same code objects, seeing it as `_link`.
        names = globals() | {"_link": jit(_link)}
        sigs = {"xgboost": _signature("float32"), "lightgbm": _signature("float64", "float64, ")}
        funcs = {
            ("xgboost", "rows"): _xgb_kernel,
            ("lightgbm", "rows"): _lgb_kernel,
            ("lightgbm", "blocks"): _lgb_blocks,
        }
        return {
            key: jit(sigs[key[0]])(types.FunctionType(f.__code__, names, f.__name__))
            for key, f in funcs.items()
        }
    finally:
        cfg.LOOP_VECTORIZE, cfg.SLP_VECTORIZE = saved
