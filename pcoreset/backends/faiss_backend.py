"""`faiss`: k-center greedy through FAISS, for machines where the C++
extension cannot be built (or to cross-check it).

CPU (faiss-cpu): the pool as one float32 matrix (a view when it already is
float32 probabilities; otherwise a float32 copy of the rows as the kernels
see them, softmax included). Per step, with the new center v:

  1. dcc2 = d^2(v, every center so far)             faiss.fvec_L2sqr_ny
  2. rows that may move: not can_skip_row(dcc2[nearest[i]], mind[i]), the
     per-row triangle-inequality test of the C++ kernel with the same slack
     (a row whose nearest center is at least 2 * mind away from v cannot get
     closer to v), so pruning never changes a pick;
  3. their exact squared distances to v              faiss.fvec_L2sqr_by_idx
     (direct differences, float32 accumulation, not the GEMM identity);
  4. running minimum, then np.argmax (first maximum: lowest row index on
     ties; taken rows hold -1 and never win).

float64 pools keep float64 arithmetic (NumPy for steps 1 and 3: FAISS only
computes in float32). The labeled start is a FAISS k-NN search for a few
candidate centers per row whose distances are then recomputed exactly
(pcoreset._start), or the exact pass for small N x L x C.

GPU (a faiss build with GPU support, input a CUDA tensor): distances with
faiss.pairwise_distance_gpu on the caller's tensors (GEMM form), running
minimum and argmax in torch on the device, one host read at the end. This
path cannot be tested on the CPU-only CI machines.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .. import _start
from .._problem import Problem
from . import register
from .base import Backend
from .cpu import _progress_callback

try:
    import faiss
    _IMPORT_ERROR = None
except ImportError as exc:
    faiss = None
    _IMPORT_ERROR = str(exc)

# can_skip_row of row_math.h: skip when dcc2 >= 4 (1 + 1e-3) * mind2 (float32),
# 4 (1 + 1e-9) * mind2 (float64); the slack covers rounding of both distances.
_PRUNE_SLACK = {np.float32: np.float32(4.0 * (1.0 + 1e-3)), np.float64: 4.0 * (1.0 + 1e-9)}


def _gpu_count() -> int:
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:
        return 0


class FaissBackend(Backend):
    name = "faiss"

    def unavailable(self) -> Optional[str]:
        if faiss is None:
            return ("faiss is not installed (pip install pcoreset[faiss] for faiss-cpu, "
                    f"faiss-gpu for CUDA) [{_IMPORT_ERROR}]")
        return None

    def rejects(self, problem: Problem) -> Optional[str]:
        if problem.device == "cpu":
            return None
        if problem.device.startswith("cuda"):
            if _gpu_count() == 0:
                return (f"input is on {problem.device} but this faiss build has no GPU support "
                        "(faiss-cpu); install faiss-gpu or move the input to the CPU")
            return None
        return f"input is on {problem.device}; faiss reads host memory or CUDA devices"

    def run(self, problem: Problem):
        if problem.device != "cpu":  # pragma: no cover - needs faiss-gpu and a GPU
            return _run_gpu(problem)
        return _run_cpu(problem)


def _pool_matrix(problem: Problem) -> np.ndarray:
    """The rows as the kernels see them, as one contiguous float32 (float64
    for float64 pools) matrix: a view when no conversion is needed."""
    if problem.dtype in ("float32", "float64") and not problem.from_logits:
        return np.ascontiguousarray(problem.numpy_view())
    x = _start.torch_pool(problem)
    dt = np.float64 if problem.dtype == "float64" else np.float32
    out = np.empty((problem.n, problem.c), dtype=dt)
    step = _start.chunk_rows(problem.n, problem.c)
    for start in range(0, problem.n, step):
        stop = min(problem.n, start + step)
        out[start:stop] = _start.rows_as_values(problem, x, start, stop).numpy()
    return out


class _Distances:
    """Squared distances from one vector to rows of a matrix, exact
    (direct differences), float32 through FAISS or float64 through NumPy."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.c = x.shape[1]
        self.f32 = x.dtype == np.float32

    def to_all(self, v: np.ndarray, y: np.ndarray) -> np.ndarray:
        """d^2(v, y[j]) for every row of y."""
        ny = y.shape[0]
        if self.f32:
            out = np.empty(ny, dtype=np.float32)
            if ny:
                faiss.fvec_L2sqr_ny(faiss.swig_ptr(out), faiss.swig_ptr(v), faiss.swig_ptr(y), self.c, ny)
            return out
        out = np.empty(ny, dtype=np.float64)
        step = _start.chunk_rows(ny, self.c)
        for s in range(0, ny, step):
            d = y[s:s + step] - v
            out[s:s + step] = np.einsum("ij,ij->i", d, d)
        return out

    def to_rows(self, v: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """d^2(v, x[rows[j]]) (rows int64)."""
        ny = rows.size
        if self.f32:
            out = np.empty(ny, dtype=np.float32)
            if ny:
                faiss.fvec_L2sqr_by_idx(faiss.swig_ptr(out), faiss.swig_ptr(v), faiss.swig_ptr(self.x),
                                        faiss.swig_ptr(rows), self.c, 1, ny)
            return out
        out = np.empty(ny, dtype=np.float64)
        step = _start.chunk_rows(ny, self.c)
        for s in range(0, ny, step):
            d = self.x[rows[s:s + step]] - v
            out[s:s + step] = np.einsum("ij,ij->i", d, d)
        return out

    def pairs(self, rows: np.ndarray, centers: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """(N, k): d^2(x[rows[i]], centers[cand[i, t]]), all ids valid."""
        n, k = cand.shape
        if self.f32 and rows.size == self.x.shape[0]:
            out = np.empty((n, k), dtype=np.float32)
            faiss.fvec_L2sqr_by_idx(faiss.swig_ptr(out), faiss.swig_ptr(self.x), faiss.swig_ptr(centers),
                                    faiss.swig_ptr(np.ascontiguousarray(cand)), self.c, n, k)
            return out
        out = np.empty((n, k), dtype=self.x.dtype)
        step = _start.chunk_rows(n, self.c)
        for t in range(k):
            for s in range(0, n, step):
                d = self.x[rows[s:s + step]] - centers[cand[s:s + step, t]]
                out[s:s + step, t] = np.einsum("ij,ij->i", d, d)
        return out


def _run_cpu(problem: Problem):
    x = _pool_matrix(problem)
    dist = _Distances(x)
    dt = x.dtype.type
    slack = _PRUNE_SLACK[dt]
    n, c, budget = problem.n, problem.c, problem.budget
    labeled = problem.labeled
    m0 = problem.n_centers
    cap = m0 + budget
    centers = np.empty((max(cap, 1), c), dtype=dt)
    n_centers = 0
    # taken rows (labeled or picked) hold -1: below every eligible distance
    mind = np.full(n, np.inf, dtype=dt)
    nearest = np.zeros(n, dtype=np.int64)

    if m0:
        centers[:labeled.size] = x[labeled]
        if problem.centers is not None:
            centers[labeled.size:m0] = problem.centers.astype(dt)
        n_centers = m0
        if _start.use_exact(n, m0, c):
            for a in range(m0):
                d = dist.to_all(centers[a], x)
                closer = d < mind
                mind[closer] = d[closer]
                nearest[closer] = a
        else:
            values = _start.torch_values(problem)
            cand = _start.certified_candidates(problem, torch.from_numpy(centers[:m0]), values)
            d = dist.pairs(np.arange(n), centers, cand)
            best = np.argmin(d, axis=1)
            mind = np.take_along_axis(d, best[:, None], axis=1)[:, 0].astype(dt, copy=False)
            nearest = np.take_along_axis(cand, best[:, None], axis=1)[:, 0]
        mind[labeled] = -1
        nearest[labeled] = np.arange(labeled.size)

    picks = np.empty(budget, dtype=np.int64)
    radii2 = np.empty(budget, dtype=np.float64)
    callback, close = _progress_callback(problem)
    try:
        if n_centers == 0:
            # no labeled rows: the row farthest from the pool mean
            mean = np.zeros(c, dtype=np.float64)
            step = _start.chunk_rows(n, c)
            for s in range(0, n, step):
                mean += x[s:s + step].sum(axis=0, dtype=np.float64)
            d = dist.to_all((mean / n).astype(dt), x)
            p, r2 = int(np.argmax(d)), np.inf
        else:
            p = int(np.argmax(mind))
            r2 = float(mind[p])
        for t in range(budget):
            picks[t] = p
            radii2[t] = r2
            if t + 1 == budget:
                break
            v = centers[n_centers]
            v[:] = x[p]
            if n_centers == 0:  # the first center: every row moves
                mind = dist.to_all(v, x)
                nearest[:] = 0
            else:
                dcc2 = dist.to_all(v, centers[:n_centers])
                rows = np.flatnonzero(dcc2[nearest] < slack * mind)
                d = dist.to_rows(v, rows)
                closer = d < mind[rows]
                moved = rows[closer]
                mind[moved] = d[closer]
                nearest[moved] = n_centers
            mind[p] = -1
            nearest[p] = n_centers
            n_centers += 1
            p = int(np.argmax(mind))
            r2 = float(mind[p])
            if callback is not None:
                callback(t + 1)
        if callback is not None:
            callback(budget)
    finally:
        close()
    return picks, radii2


def _run_gpu(problem: Problem):  # pragma: no cover - needs faiss-gpu and a GPU
    import faiss.contrib.torch_utils  # noqa: F401  (faiss functions take torch tensors)

    res = faiss.StandardGpuResources()
    xt = _start.torch_pool(problem)
    dev = xt.device
    n, c = problem.n, problem.c
    step = _start.chunk_rows(n, c)
    x = torch.cat([_start.rows_as_values(problem, xt, s, min(n, s + step)).float()
                   for s in range(0, n, step)]).contiguous()

    def dist_all(v):
        return faiss.pairwise_distance_gpu(res, v.reshape(1, c).contiguous(), x)[0].clamp_min_(0)

    mind = torch.full((n,), float("inf"), dtype=torch.float32, device=dev)
    taken = torch.zeros(n, dtype=torch.bool, device=dev)
    labeled = problem.labeled
    if labeled.size:
        lab = torch.from_numpy(labeled).to(dev)
        taken[lab] = True
        dists, _ = faiss.knn_gpu(res, x, x[lab].contiguous(), 1)
        mind = dists[:, 0].clamp_min(0)
    picks = torch.empty(problem.budget, dtype=torch.int64, device=dev)
    radii2 = torch.empty(problem.budget, dtype=torch.float64, device=dev)
    neg = torch.tensor(-1.0, device=dev)
    if labeled.size == 0:
        mean = x.sum(0, dtype=torch.float64) / n
        p = torch.argmax(dist_all(mean.float()))
        r2 = torch.tensor(float("inf"), dtype=torch.float64, device=dev)
    else:
        score = torch.where(taken, neg, mind)
        p = torch.argmax(score)
        r2 = mind[p].double()
    for t in range(problem.budget):
        picks[t] = p
        radii2[t] = r2
        taken[p] = True
        if t + 1 == problem.budget:
            break
        mind = torch.minimum(mind, dist_all(x[p]))
        score = torch.where(taken, neg, mind)
        p = torch.argmax(score)
        r2 = mind[p].double()
    return picks, radii2


register(FaissBackend())
