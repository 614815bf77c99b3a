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

from typing import Dict, Optional

import numpy as np
import torch

from .._problem import Problem, chunk_rows, rows_as_values, torch_pool
from .base import Backend, KCenterState, Start

try:
    import faiss
    _IMPORT_ERROR = None
except ImportError as exc:
    faiss = None
    _IMPORT_ERROR = str(exc)

# can_skip_row of row_math.h: skip when dcc2 >= 4 (1 + 1e-3) * mind2 + 2^-100
# (float32), 4 (1 + 1e-9) * mind2 + 2^-960 (float64); the relative slack covers
# rounding of both distances, the absolute floor squared distances so small
# that they round to multiples of the smallest subnormal.
_PRUNE_SLACK = {np.float32: np.float32(4.0 * (1.0 + 1e-3)), np.float64: 4.0 * (1.0 + 1e-9)}
_PRUNE_FLOOR = {np.float32: np.float32(2.0 ** -100), np.float64: 2.0 ** -960}


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
            if problem.centers is not None:
                return "the faiss GPU path takes labeled rows only, not centers= vectors"
            return None
        return f"input is on {problem.device}; faiss reads host memory or CUDA devices"

    def run(self, problem: Problem, start: Start):
        if problem.device != "cpu":  # pragma: no cover - needs faiss-gpu and a GPU
            return _run_gpu(problem)
        return super().run(problem, start)

    def state_unsupported(self, problem: Problem) -> Optional[str]:
        if problem.device != "cpu":
            return (f"the faiss backend keeps no state for input on {problem.device}; "
                    "use backend='cuda' (or move the pool to the CPU)")
        return None

    def make_state(self, problem: Problem) -> FaissState:
        return FaissState(problem)

    def memory_parts(self, n: int, c: int, dtype: str, centers: int, budget: int,
                     from_logits: bool) -> Dict[str, int]:
        acc = 8 if dtype == "float64" else 4
        parts = {}
        if dtype != "float32" or from_logits:
            parts["float32 copy of the pool"] = n * c * (8 if dtype == "float64" else 4)
        parts["running minimum, nearest center, step temporaries"] = n * (acc + 8 + 1 + 8 + 8 + 4)
        parts["centers"] = centers * (c + 3) * 4
        return parts


def _pool_matrix(problem: Problem) -> np.ndarray:
    """The rows as the kernels see them, as one contiguous float32 (float64
    for float64 pools) matrix: a view when no conversion is needed."""
    if problem.dtype in ("float32", "float64") and not problem.from_logits:
        return np.ascontiguousarray(problem.numpy_view())
    x = torch_pool(problem)
    dt = np.float64 if problem.dtype == "float64" else np.float32
    out = np.empty((problem.n, problem.c), dtype=dt)
    step = chunk_rows(problem.n, problem.c)
    for start in range(0, problem.n, step):
        stop = min(problem.n, start + step)
        out[start:stop] = rows_as_values(problem, x, start, stop).numpy()
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
        step = chunk_rows(ny, self.c)
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
        step = chunk_rows(ny, self.c)
        for s in range(0, ny, step):
            d = self.x[rows[s:s + step]] - v
            out[s:s + step] = np.einsum("ij,ij->i", d, d)
        return out

    def pairs(self, centers: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """(N,): d^2(x[i], centers[ids[i]]) for every row (all ids valid):
        one routine for every caller, so a distance never depends on which
        other rows were computed with it (labeled rows or centers= vectors
        give the same bits)."""
        n = self.x.shape[0]
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.f32:
            out = np.empty(n, dtype=np.float32)
            if n:
                faiss.fvec_L2sqr_by_idx(faiss.swig_ptr(out), faiss.swig_ptr(self.x), faiss.swig_ptr(centers),
                                        faiss.swig_ptr(ids), self.c, n, 1)
            return out
        out = np.empty(n, dtype=self.x.dtype)
        step = chunk_rows(n, self.c)
        for s in range(0, n, step):
            d = self.x[s:s + step] - centers[ids[s:s + step]]
            out[s:s + step] = np.einsum("ij,ij->i", d, d)
        return out


class FaissState(KCenterState):
    """The running-minimum state of a pool for the faiss backend (CPU), with
    the methods of the C++ state, so `pcoreset.Selector` can continue a
    selection on it. Taken rows (labeled, picked, excluded) hold -1 in mind."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.x = _pool_matrix(problem)
        self.dist = _Distances(self.x)
        self.dt = self.x.dtype.type
        self.slack = _PRUNE_SLACK[self.dt]
        self.floor = _PRUNE_FLOOR[self.dt]
        self.n, self.c = problem.n, problem.c
        self._centers = np.empty((16, self.c), dtype=self.dt)
        self.k = 0
        self.mind = np.full(self.n, np.inf, dtype=self.dt)
        self.nearest = np.full(self.n, -1, dtype=np.int64)
        self._steps = 0
        self._computed = 0
        self._undo = None

    @property
    def num_centers(self) -> int:
        self._settle()
        return self.k

    @property
    def centers(self) -> np.ndarray:
        return self._centers[:self.k]

    def _append(self, vecs: np.ndarray) -> int:
        first = self.k
        need = first + vecs.shape[0]
        if need > self._centers.shape[0]:
            grown = np.empty((max(need, 2 * self._centers.shape[0]), self.c), dtype=self.dt)
            grown[:first] = self._centers[:first]
            self._centers = grown
        self._centers[first:need] = vecs
        self.k = need
        return first

    def _assign_exact(self, first: int) -> None:
        for a in range(first, self.k):
            d = self.dist.to_all(self._centers[a], self.x)
            closer = d < self.mind
            self.mind[closer] = d[closer]
            self.nearest[closer] = a

    def _assign_candidates(self, first: int, cand) -> None:
        cand = np.asarray(cand, dtype=np.int64)
        count = self.k - first
        for t in range(cand.shape[1]):
            ok = (cand[:, t] >= 0) & (cand[:, t] < count) & (self.mind >= 0)
            rows = np.flatnonzero(ok)
            if rows.size == 0:
                continue
            d = self.dist.pairs(self._centers, first + np.clip(cand[:, t], 0, count - 1))[rows]
            ids = first + cand[rows, t]
            cur, cur_id = self.mind[rows], self.nearest[rows]
            closer = (d < cur) | ((d == cur) & (ids < cur_id))
            self.mind[rows[closer]] = d[closer]
            self.nearest[rows[closer]] = ids[closer]

    def _take(self, rows: np.ndarray, first: int) -> None:
        self.mind[rows] = -1
        self.nearest[rows] = first + np.arange(rows.size)

    def seed_rows(self, rows) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        first = self._append(self.x[rows])
        self._take(rows, first)
        self._assign_exact(first)

    def seed_rows_with_candidates(self, rows, cand) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        first = self._append(self.x[rows])
        self._take(rows, first)
        self._assign_candidates(first, cand)

    def seed_vectors(self, vectors) -> None:
        first = self._append(np.asarray(vectors, dtype=np.float64).astype(self.dt))
        self._assign_exact(first)

    def seed_vectors_with_candidates(self, vectors, cand) -> None:
        first = self._append(np.asarray(vectors, dtype=np.float64).astype(self.dt))
        self._assign_candidates(first, cand)

    def take(self, row: int) -> None:
        self._settle()
        self.mind[int(row)] = -1

    def exclude(self, rows) -> None:
        self._settle()
        self.mind[np.asarray(rows, dtype=np.int64)] = -1

    def current_best(self):
        self._settle()
        if self.n == 0:
            return -1, 0.0
        p = int(np.argmax(self.mind))
        if self.mind[p] < 0:
            return -1, 0.0
        return p, float(self.mind[p])

    # A step is all-or-nothing, so that an exception inside it (Ctrl-C, out
    # of memory) leaves the state of the steps before: the new distances are
    # computed aside, the old values of the rows that change are kept in
    # _undo while they are written, and _settle() (at every entry, and when
    # the write raised) puts them back if the write did not finish. Putting
    # back is idempotent.

    def _settle(self) -> None:
        undo = self.__dict__.get("_undo")
        if undo is not None:
            k, rows, old_mind, old_nearest = undo
            self.mind[rows] = old_mind
            self.nearest[rows] = old_nearest
            self.k = k
            self._undo = None

    def _push(self, v: np.ndarray, row=None) -> int:
        self._settle()
        k = self.k
        if k == self._centers.shape[0]:  # grow the buffer (rows < k unchanged)
            grown = np.empty((2 * k + 16, self.c), dtype=self.dt)
            grown[:k] = self._centers[:k]
            self._centers = grown
        self._centers[k] = v  # slot k is unused until self.k moves
        if k == 0:  # the first center: every eligible row moves
            d = self.dist.to_all(self._centers[0], self.x)
            moved = np.flatnonzero(self.mind >= 0)
            new = d[moved]
            computed = self.n
        else:
            dcc2 = self.dist.to_all(self._centers[k], self._centers[:k])
            rows = np.flatnonzero(dcc2[np.maximum(self.nearest, 0)] < self.slack * self.mind + self.floor)
            d = self.dist.to_rows(self._centers[k], rows)
            closer = d < self.mind[rows]
            moved = rows[closer]
            new = d[closer]
            computed = rows.size
        changed = moved if row is None else np.append(moved, row)
        undo = (k, changed, self.mind[changed], self.nearest[changed])
        self._undo = undo
        try:
            self.mind[moved] = new
            self.nearest[moved] = k
            if row is not None:
                self.mind[row] = -1
                self.nearest[row] = k
            self.k = k + 1
            self._undo = None
        except BaseException:
            self._settle()
            raise
        self._computed += computed
        self._steps += 1
        return k

    def push_row(self, row: int):
        row = int(row)
        self._push(self.x[row].copy(), row)
        return self.current_best()

    def push_center(self, vector):
        self._push(np.asarray(vector, dtype=np.float64).astype(self.dt))
        return self.current_best()

    def first_pick(self):
        """(row, +inf): the eligible row farthest from the pool mean."""
        mean = np.zeros(self.c, dtype=np.float64)
        step = chunk_rows(self.n, self.c)
        for s in range(0, self.n, step):
            mean += self.x[s:s + step].sum(axis=0, dtype=np.float64)
        d = self.dist.to_all((mean / self.n).astype(self.dt), self.x)
        d[self.mind < 0] = -1
        return int(np.argmax(d)), float("inf")

    def min_dist2(self) -> np.ndarray:
        self._settle()
        return np.maximum(self.mind, 0).astype(np.float64)

    def export_state(self):
        self._settle()
        return self.mind.astype(np.float64), self.nearest.copy(), self.centers.astype(np.float64)

    def load_state(self, mind, nearest, centers) -> None:
        self.mind = np.asarray(mind, dtype=np.float64).astype(self.dt)
        self.mind[np.asarray(mind) < 0] = -1
        self.nearest = np.asarray(nearest, dtype=np.int64).copy()
        self.k = 0
        self._append(np.asarray(centers, dtype=np.float64).astype(self.dt).reshape(-1, self.c))

    def stats(self) -> dict:
        return {"steps": self._steps, "rows_computed": self._computed,
                "rows_visited": self._steps * self.n, "center_dists": 0}


def _run_gpu(problem: Problem):  # pragma: no cover - needs faiss-gpu and a GPU
    import faiss.contrib.torch_utils  # noqa: F401  (faiss functions take torch tensors)

    res = faiss.StandardGpuResources()
    xt = torch_pool(problem)
    dev = xt.device
    n, c = problem.n, problem.c
    step = chunk_rows(n, c)
    x = torch.cat([rows_as_values(problem, xt, s, min(n, s + step)).float()
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


BACKEND = FaissBackend()
