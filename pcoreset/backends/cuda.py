"""`cuda`: the CUDA kernel (fused, device-resident k-center greedy).

Takes torch CUDA tensors. The state lives in device memory; every call runs
on a private stream joined to the caller's current stream of the pool's
device at both ends (work the caller queued before, such as the writes that
filled the pool, comes first; the caller's later work waits for it). Nothing
here touches CUDA at import time: the module import only loads the
extension, and devices are queried when a state is made.

Environment (debugging and benchmarks; none changes a pick):
  PCORESET_CUDA_STEPS=auto|persistent|graph|launches  how run() launches its
      steps (auto: one persistent cooperative kernel per segment of steps
      where the device allows it, else a captured CUDA graph of the three
      kernels of a step)
  PCORESET_CUDA_GRAPHS=0      graph steps launched one by one (as steps=launches)
"""
from __future__ import annotations

import importlib.util
import os
from typing import Dict, Optional

import numpy as np

from .. import _memory
from .._problem import Problem
from ..errors import InvalidInputError, OutOfMemoryError
from .base import Backend, KCenterState

try:
    from .. import _C_cuda
    _IMPORT_ERROR = None
    if not hasattr(_C_cuda, "KCenterState"):  # an extension built from older sources
        _IMPORT_ERROR = "pcoreset._C_cuda predates the state interface: rebuild the extension"
        _C_cuda = None
except ImportError as exc:  # built without CUDA, or the module failed to load
    _C_cuda = None
    if importlib.util.find_spec(f"{__package__.rpartition('.')[0]}._C_cuda") is None:
        _IMPORT_ERROR = "this install was built without CUDA (no nvcc, or PCORESET_CUDA=OFF)"
    else:  # the file is there but does not load: its own error says why (e.g. a missing libcudart)
        _IMPORT_ERROR = str(exc)

# Largest N * M * C (rows x initial centers x columns) whose start is the kernel's
# exact pass (a warp per row, every center in turn, early exit); larger
# starts take certified candidates (pcoreset._start) whose distances the
# kernel recomputes exactly. The GPU's exact pass is far cheaper than the
# CPU's, hence a larger threshold than base.EXACT_MAX_WORK.
EXACT_MAX_WORK = 1e11

_STEPS = ("auto", "persistent", "graph", "launches")


def _options():
    """The step mode from the environment, checked."""
    steps = os.environ.get("PCORESET_CUDA_STEPS", "auto")
    if steps not in _STEPS:
        raise InvalidInputError(f"PCORESET_CUDA_STEPS={steps!r}: choose one of {_STEPS}")
    if os.environ.get("PCORESET_CUDA_GRAPHS", "1") == "0" and steps in ("auto", "graph"):
        steps = "launches"
    return steps


class CudaState(KCenterState):
    """The k-center state of a pool in CUDA memory, mirroring the CPU
    `pcoreset._C.KCenterState` method for method.

    problem: a validated Problem whose `x` is a contiguous torch CUDA tensor
        (borrowed: it must stay unchanged while the state exists; the state
        keeps a reference).
    steps: as PCORESET_CUDA_STEPS (the environment by default).
    pass_variant: "prefetch" (the default); "plain" (no loads issued ahead
        across chunks) exists for benchmarks/gpu_bench.py's side-by-side
        comparison only. Both give the same picks and radii, bit for bit.

    Row indices are int64; vectors are float64 (C,) or (M, C) NumPy arrays.
    Methods return NumPy arrays and Python numbers, after one host
    synchronisation each (run(): one at the end, and one per segment of
    steps for progress and Ctrl-C, never one per step).

    Raises OutOfMemoryError when device memory runs out (after emptying
    torch's cache and retrying once; the state is unchanged then).
    """

    # run() has no stop radius: run_state steps it one pick at a time then
    supports_stop = False

    def __init__(self, problem: Problem, *, steps: Optional[str] = None, pass_variant: Optional[str] = None):
        import torch

        if _C_cuda is None:
            raise RuntimeError(f"no usable CUDA module: {_IMPORT_ERROR}")
        x = problem.x
        if not (isinstance(x, torch.Tensor) and x.is_cuda and x.is_contiguous()):
            raise InvalidInputError("the cuda backend's state needs a contiguous torch CUDA tensor as the pool")
        env_steps = _options()
        self._x = x  # keeps the pool alive
        self._device = x.device
        self._index = x.device.index if x.device.index is not None else torch.cuda.current_device()
        self._accum = torch.float64 if problem.dtype == "float64" else torch.float32
        self.problem = problem
        self._what = (f"the cuda backend's state for n={problem.n}, c={problem.c}, dtype={problem.dtype} "
                      f"on {x.device}")
        self._state = self._call(
            lambda stream: _C_cuda.KCenterState(
                x.data_ptr(), problem.dtype, problem.n, problem.c, bool(problem.from_logits),
                float(problem.temperature), bool(problem.prune), self._index, stream,
                steps or env_steps, pass_variant or "prefetch"),
            extra_centers=0)

    # ---- plumbing ----------------------------------------------------------

    def _call(self, fn, extra_centers: int = 0, budget: int = 0):
        """fn(stream) on the pool's device and the caller's current stream;
        a device allocation failure empties torch's cache and retries once."""
        import torch

        with torch.cuda.device(self._device):
            stream = torch.cuda.current_stream(self._device).cuda_stream
            try:
                return fn(stream)
            except _C_cuda.DeviceOutOfMemory:
                torch.cuda.empty_cache()
                try:
                    return fn(stream)
                except _C_cuda.DeviceOutOfMemory:
                    free, _ = torch.cuda.mem_get_info(self._device)
                    have = getattr(self, "_state", None)
                    centers = (have.num_centers if have is not None else 0) + extra_centers
                    need = _C_cuda.state_bytes(self.problem.dtype, self.problem.n, self.problem.c,
                                               bool(self.problem.from_logits), centers, budget)
                    raise OutOfMemoryError(self._what, need, free) from None

    @staticmethod
    def _rows(rows) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(rows, dtype=np.int64).reshape(-1))

    @staticmethod
    def _cand(cand) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(cand, dtype=np.int64))

    @staticmethod
    def _vecs(vecs) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(vecs, dtype=np.float64))

    @property
    def n(self) -> int:
        return self._state.n

    @property
    def c(self) -> int:
        return self._state.c

    @property
    def num_centers(self) -> int:
        return self._state.num_centers

    # ---- the state interface ------------------------------------------------

    def seed_rows(self, rows) -> None:
        """Labeled rows (int64) become centers, never picked; exact nearest center."""
        rows = self._rows(rows)
        self._call(lambda s: self._state.seed_rows(rows, s), extra_centers=rows.size)

    def seed_rows_with_candidates(self, rows, cand) -> None:
        """As seed_rows, the nearest center chosen among cand[i] ((N, k) int64
        indices into `rows`, -1 = none), distances recomputed exactly."""
        rows, cand = self._rows(rows), self._cand(cand)
        self._call(lambda s: self._state.seed_rows_with_candidates(rows, cand, s), extra_centers=rows.size)

    def seed_vectors(self, vectors) -> None:
        """External centers ((M, C) float64) that are not pool rows; exact nearest."""
        vecs = self._vecs(vectors)
        self._call(lambda s: self._state.seed_vectors(vecs, s), extra_centers=vecs.shape[0] if vecs.ndim else 0)

    def seed_vectors_with_candidates(self, vectors, cand) -> None:
        vecs, cand = self._vecs(vectors), self._cand(cand)
        self._call(lambda s: self._state.seed_vectors_with_candidates(vecs, cand, s),
                   extra_centers=vecs.shape[0] if vecs.ndim else 0)

    def take(self, row: int) -> None:
        """Row becomes ineligible (not a center)."""
        self._call(lambda s: self._state.take(int(row), s))

    def exclude(self, rows) -> None:
        """Rows become ineligible (not centers)."""
        rows = self._rows(rows)
        self._call(lambda s: self._state.exclude(rows, s))

    def push_row(self, row: int):
        """Row becomes a center (and taken); one fused step. Returns (row, dist2)
        of the next farthest eligible row ((-1, 0.0) when none is left, as on the CPU)."""
        return self._call(lambda s: self._state.push_row(int(row), s), extra_centers=1)

    def push_center(self, vector):
        """An external center vector (C,) float64; one fused step; (row, dist2)."""
        vec = self._vecs(vector)
        return self._call(lambda s: self._state.push_center(vec, s), extra_centers=1)

    def current_best(self):
        """(row, dist2) of the farthest eligible row now."""
        return self._call(lambda s: self._state.current_best(s))

    def farthest_from(self, vector):
        """(row, dist2) of the eligible row farthest from a vector (C,) float64."""
        vec = self._vecs(vector)
        return self._call(lambda s: self._state.farthest_from(vec, s))

    def row_vector(self, row: int) -> np.ndarray:
        """Row as the kernel sees it (probabilities for logits), float64 (C,)."""
        return self._call(lambda s: self._state.row_vector(int(row), s))

    def rows_values(self, rows):
        """Rows as the kernel sees them in its accumulation dtype (float32, or
        float64 for float64 pools): a (len(rows), C) torch tensor on the pool's
        device (what the start's candidate search compares)."""
        import torch

        rows = self._rows(rows.cpu().numpy() if isinstance(rows, torch.Tensor) else rows)
        out = torch.empty((rows.size, self.c), dtype=self._accum, device=self._device)
        self._call(lambda s: self._state.rows_values(rows, out.data_ptr() if rows.size else 0, s))
        return out

    def mean_vector(self) -> np.ndarray:
        """Mean of the rows as the kernel sees them (the CPU kernel's order), float64 (C,)."""
        return self._call(lambda s: self._state.mean_vector(s))

    def run(self, budget: int, progress=None):
        """`budget` greedy picks continuing from the current state: (picks int64,
        radii2 float64) NumPy arrays. With no center at all the first pick is
        the row farthest from the pool mean (radius +inf). The last pick is not
        pushed: call push_row(picks[-1]) before continuing. progress(done) is
        called between segments of steps; Ctrl-C stops at the next segment.

        A run that raises (Ctrl-C, progress raised, the pool ran out of
        eligible rows) keeps the steps that finished: last_run() gives their
        picks, and the state is the one an uninterrupted run of them leaves."""
        budget = int(budget)
        return self._call(lambda s: self._state.run(budget, progress, s), extra_centers=max(budget - 1, 0),
                          budget=budget)

    def last_run(self):
        """(picks, radii2) of the latest run(), also of one that raised: every
        pick but possibly the last is a center (the last is one unless the
        budget ended the run; num_centers tells)."""
        return self._state.last_run()

    def export_state(self):
        """(mind (N,) float64 with -1 for taken rows, nearest (N,) int64 with -1
        for none, centers (K, C) float64): the state as arrays, as the CPU
        state exports it."""
        return self._call(lambda s: self._state.export_state(s))

    def load_state(self, mind, nearest, centers) -> None:
        """Restores a state exported by export_state (this or the CPU backend's)."""
        mind = np.ascontiguousarray(mind, dtype=np.float64)
        nearest, centers = self._cand(nearest), self._vecs(centers)
        self._call(lambda s: self._state.load_state(mind, nearest, centers, s),
                   extra_centers=max(0, (centers.shape[0] if centers.ndim == 2 else 0) - self.num_centers))

    def min_dist2(self) -> np.ndarray:
        """Squared distance of every row to its nearest center (0 for taken rows), float64 (N,)."""
        return self._call(lambda s: self._state.min_dist2(s))

    def stats(self) -> dict:
        """Counters (steps, rows_computed, rows_visited, center_dists, as the CPU
        state's) and how the last run went: step_mode ("persistent", "graph",
        "launches"; "none" before a run with steps), cuda_graph (its steps
        ran as replays of a captured CUDA graph), pass ("prefetch"/"plain"), segments,
        grid_blocks, note (why a requested mode was not used)."""
        return self._call(lambda s: self._state.stats(s))


def make_state(problem: Problem, **options) -> CudaState:
    """A CudaState over the problem's pool (borrowed, not copied)."""
    return CudaState(problem, **options)


class CudaBackend(Backend):
    name = "cuda"
    exact_max_work = EXACT_MAX_WORK

    def unavailable(self) -> Optional[str]:
        if _C_cuda is None:
            return f"no usable CUDA module: {_IMPORT_ERROR}"
        try:  # the module is built but the install has no torch (NumPy-only, nvcc present)
            import torch
        except ImportError:
            from .._deps import install_hint

            return f"torch is not installed: {install_hint('torch')}"
        if not torch.cuda.is_available():
            return "no CUDA device is visible to torch (torch.cuda.is_available() is False)"
        return None

    def rejects(self, problem: Problem) -> Optional[str]:
        if problem.kind != "torch" or not problem.device.startswith("cuda"):
            return f"input is on {problem.device}; the cuda backend takes torch CUDA tensors"
        return None

    def make_state(self, problem: Problem) -> "CudaState":
        return make_state(problem)

    def start_values(self, state: CudaState, problem: Problem):
        # rows exactly as this kernel sees them (its own softmax for logits),
        # searched on the GPU
        return state.rows_values

    def memory_parts(self, n: int, c: int, dtype: str, centers: int, budget: int,
                     from_logits: bool) -> Dict[str, int]:
        # device memory, as pcoreset._C_cuda.state_bytes counts it
        acc = 8 if dtype == "float64" else 4
        slots = max(64, centers)
        parts = {"running minimum, nearest center, center vector": n * (acc + 4) + c * acc}
        if from_logits:
            parts["softmax row constants"] = n * 2 * acc
        parts["centers (values, radius, center distances)"] = slots * (c + 2) * acc
        parts["picks, radii, step slots"] = max(64, budget + 1) * (16 + (16 if acc == 8 else 8))
        # the control block (struct Ctl, 64 bytes) and, for float64, one
        # argmax slot per block of the pass (kMaxGridBlocks = 4096, 16 bytes)
        parts["control block, argmax slots"] = 64 + (4096 * 16 if acc == 8 else 0)
        parts["row chunk temporaries (start)"] = 3 * min(n * c * acc, _memory.CHUNK_BYTES)
        return parts

    def build_info(self) -> dict:
        """What the CUDA module was compiled with (no device query)."""
        if _C_cuda is None:
            return {"built": False, "error": _IMPORT_ERROR}
        info = dict(_C_cuda.build_info())
        info["built"] = True
        return info


BACKEND = CudaBackend()



def build_info() -> dict:
    return BACKEND.build_info()
