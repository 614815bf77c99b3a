"""`cpu`: the C++ kernel (OpenMP, SIMD, exact pruning)."""
from __future__ import annotations

import os
from typing import Dict, Optional

from .. import _memory
from .._problem import Problem
from .base import Backend, KCenterState

try:
    from .. import _C
    _IMPORT_ERROR = None
except ImportError as exc:  # the extension was not built
    _C = None
    _IMPORT_ERROR = str(exc)

if _C is not None:
    KCenterState.register(_C.KCenterState)


def _projection_rule():
    """(min C, dims below 256 values, dims from 256) of the kernel's projection
    bound (csrc/cpu/projection.h), as the built kernel states them: its cost
    model considers the bound only from min C values a row, and a forced
    bound (PCORESET_PROJECTION=1) runs at any C."""
    info = _C.build_info()
    small, large = info["projection_dims"]
    return int(info["projection_min_c"]), int(small), int(large)


def _projection_mode() -> str:
    """PCORESET_PROJECTION: '0' never, '1' always (any C), else the cost model."""
    return os.environ.get("PCORESET_PROJECTION", "").strip()[:1]


def make_state(problem: Problem):
    """A C++ KCenterState over the problem's pool (borrowed, not copied)."""
    x = problem.numpy_view()
    return _C.KCenterState(x, problem.dtype, problem.from_logits, problem.temperature,
                           problem.prune, problem.num_threads,
                           release_pages=_memory.file_backed(x))


def kernel_values(state):
    """values(rows) for the start's search: rows exactly as this kernel sees
    them (its own softmax for logits), as a NumPy array."""
    import numpy as np

    def values(rows):
        return state.rows_values(np.asarray(rows, dtype=np.int64))

    return values


class CpuBackend(Backend):
    name = "cpu"
    # The kernel's exact start costs about 10 ns per pair of row and center
    # plus a little per value (its early exit reads few of a long row's
    # values), the certified search a few tens of milliseconds plus well under
    # a microsecond per row. Measured on 2 cores, best of 3 Selector starts,
    # exact / certified: 200k x 3, 100 centers: 0.19 / 0.11 s; 100k x 10, 1k
    # centers: 1.22 / 0.08 s; 12k x 25 (the real pool's rows), 309: 0.064 /
    # 0.047 s; 50k x 100, 60: 0.066 / 0.061 s; 20k x 1000, 20: 0.055 /
    # 0.082 s, 200: 0.33 / 0.17 s. The two meet near 3e6 pairs whatever C.
    exact_max_pairs = 3e6

    def unavailable(self) -> Optional[str]:
        if _C is None:
            return f"the C++ extension pcoreset._C is not built ({_IMPORT_ERROR})"
        return None

    def rejects(self, problem: Problem) -> Optional[str]:
        if problem.device != "cpu":
            return f"input is on {problem.device}, the cpu backend reads host memory"
        return None

    def make_state(self, problem: Problem):
        return make_state(problem)

    def start_values(self, state, problem: Problem):
        return kernel_values(state)

    def memory_parts(self, n: int, c: int, dtype: str, centers: int, budget: int,
                     from_logits: bool) -> Dict[str, int]:
        # the kernel: mind_ (acc) and nearest_ (int32) per row; the cells keep
        # each row once as a member (row uint32 + running minimum, padded to
        # 8 or 16 bytes), with its values for C <= 16; while a step runs, at
        # most every row in its scratch: the rows it computes (two pointer
        # lists for their radix sort) and the rows that move (members, two
        # 16-byte sort keys and an index each)
        acc = 8 if dtype == "float64" else 4
        member = 8 if acc == 4 else 16
        parts = {
            "running minimum, nearest center": n * (acc + 4),
            "cells (members, short rows' values, step scratch)": n * member + (n * c * acc if c <= 16 else 0) + n * (16 + member + 36),
            "centers (values, radius, heap, anchor index)": centers * (c * acc + 64),
        }
        min_c, small, large = _projection_rule()
        mode = _projection_mode()
        if (c >= min_c and mode != "0") or mode == "1":
            dims = small if c < 256 else large
            parts["projection bound (rows projected, error bounds)"] = n * 4 * (dims + 3)
        if from_logits:
            parts["softmax row constants"] = n * 2 * acc
        return parts

    def build_info(self) -> dict:
        if _C is None:
            return {"built": False, "error": _IMPORT_ERROR}
        info = dict(_C.build_info())
        info["built"] = True
        return info


BACKEND = CpuBackend()


def build_info() -> dict:
    return BACKEND.build_info()
