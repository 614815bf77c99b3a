"""The labeled-set start: the nearest labeled row of every pool row.

This is an N x L nearest-neighbour problem, and never an N x L matrix in
memory. Three ways, chosen by `start_method`:

- "exact": the kernel's direct pass (differences, early exit at the best so
  far) for N * L * C <= EXACT_MAX_WORK;
- "faiss" (when FAISS is installed and the pool is on the CPU): faiss.knn,
  a blocked BLAS search with a k-heap epilogue, for the CANDIDATES nearest
  labeled rows of each row, over row chunks;
- "gemm" (no FAISS, or a CUDA pool): the same candidates from a torch GEMM
  (||x||^2 + ||c||^2 - 2 x.c) and top-k, in row chunks.

Candidates are then refined exactly: the kernel recomputes the distances to
them by direct differences. A GEMM distance is accurate to about
1e-7 * ||x||^2, so the exact nearest row is among the candidates unless
several labeled rows sit within rounding of each other, and then any of them
gives the same minimum distance to that rounding.

Crossover (2-core AMD EPYC, float32, clustered pools, seconds including the
exact refine; measured 2026-11-30 on a machine shared with other jobs, see
benchmarks/RESULTS.md "FAISS and scale"):

    N       C     L     N*L*C   exact  faiss  gemm
    50k     100   20    1e8     0.04   0.14   0.13
    50k     100   100   5e8     0.17   0.35   0.20
    50k     100   400   2e9     0.60   0.43   0.42
    50k     100   2000  1e10    2.78   0.82   1.69
    20k     1000  100   2e9     0.13   0.19   0.25
    20k     1000  500   1e10    1.40   0.66   0.83

The exact pass wins below about 1e9 and the candidate searches above a few
1e9 (FAISS about 2x the torch GEMM at 1e10), so the switch stays at
N * L * C = 2e9, and FAISS is preferred over the GEMM whenever it is there.
"""
from __future__ import annotations


import numpy as np
import torch

from . import _memory
from ._problem import Problem, readonly_tensor

try:
    import faiss
except ImportError:  # optional extra: pip install pcoreset[faiss]
    faiss = None

# Largest N * L * C solved by the exact direct pass (about 1-2 s on 2 cores).
EXACT_MAX_WORK = 2e9
CANDIDATES = _memory.CANDIDATES
_CHUNK_BYTES = 64 << 20


def use_exact(n: int, n_labeled: int, c: int) -> bool:
    return float(n) * n_labeled * c <= EXACT_MAX_WORK


def start_method(n: int, n_labeled: int, c: int, device: str = "cpu") -> str:
    """How the labeled start runs: "exact" (the kernel's direct pass),
    "faiss" (FAISS k-NN candidates, refined exactly) or "gemm" (torch GEMM
    candidates, refined exactly). See the module docstring for the crossover."""
    if use_exact(n, n_labeled, c):
        return "exact"
    if faiss is not None and device == "cpu":
        return "faiss"
    return "gemm"


def torch_pool(problem: Problem) -> torch.Tensor:
    """The pool as a torch tensor (no copy)."""
    x = problem.x
    if isinstance(x, torch.Tensor):
        return x
    t = readonly_tensor(x)
    if problem.dtype == "bfloat16":
        t = t.view(torch.bfloat16)
    return t


def accum_dtype(problem: Problem) -> torch.dtype:
    return torch.float64 if problem.dtype == "float64" else torch.float32


def rows_as_values(problem: Problem, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) as the kernels see them, in the accumulation dtype:
    the stored values, or softmax(row / temperature) for logits."""
    chunk = x[start:stop].to(accum_dtype(problem))
    if problem.from_logits:
        chunk = torch.softmax(chunk / problem.temperature, dim=1)
    return chunk


def chunk_rows(n: int, c: int, other: int = 1) -> int:
    """Rows per chunk so that a chunk x max(c, other) float32 block stays near 64 MiB."""
    return max(1, min(n, _CHUNK_BYTES // (4 * max(c, other, 1))))


def nearest_candidates(problem: Problem, k: int = CANDIDATES, method: str = "auto",
                       centers=None) -> np.ndarray:
    """(N, k) int64: for each row, the indices of its k nearest centers by a
    FAISS or GEMM search (-1 pads when there are fewer than k centers).
    centers: an (L, C) array of center vectors (as the kernel sees rows), or
    None for the labeled rows of the problem (indices then point into
    problem.labeled). method: "auto" (FAISS when installed and the pool is on
    the CPU), "faiss" or "gemm"."""
    if method == "auto":
        method = "faiss" if faiss is not None and problem.device == "cpu" else "gemm"
    x = torch_pool(problem)
    if centers is None:
        labeled = torch.from_numpy(problem.labeled).to(x.device)
        centers = rows_as_values(problem, x[labeled], 0, labeled.numel())
    else:
        centers = torch.as_tensor(np.asarray(centers)).to(device=x.device, dtype=accum_dtype(problem))
    if method == "faiss":
        return _faiss_candidates(problem, centers, k)
    c_norm = (centers * centers).sum(1)
    k_eff = min(k, centers.shape[0])
    out = torch.full((problem.n, k), -1, dtype=torch.int64)
    step = chunk_rows(problem.n, problem.c, centers.shape[0])
    for start in range(0, problem.n, step):
        stop = min(problem.n, start + step)
        rows = rows_as_values(problem, x, start, stop)
        d2 = (rows * rows).sum(1, keepdim=True) + c_norm[None, :] - 2.0 * (rows @ centers.T)
        out[start:stop, :k_eff] = torch.topk(d2, k_eff, dim=1, largest=False).indices.cpu()
        _release(problem, start, stop)
    return out.numpy()


def _release(problem: Problem, start: int, stop: int) -> None:
    if isinstance(problem.x, np.ndarray):
        _memory.release_rows(problem.x, start, stop)


def _faiss_candidates(problem: Problem, centers: torch.Tensor, k: int) -> np.ndarray:
    """FAISS brute-force k-NN (faiss.knn: blocked BLAS with a k-heap epilogue,
    no N x L matrix) over row chunks, in float32."""
    x = torch_pool(problem)
    centers = np.ascontiguousarray(centers.float().cpu().numpy())
    k_eff = min(k, centers.shape[0])
    out = np.full((problem.n, k), -1, dtype=np.int64)
    # Rows per chunk: big enough for BLAS, small enough to bound memory and
    # (file-backed pools) resident pages.
    step = max(4096, min(problem.n, (_CHUNK_BYTES // 4) // (4 * max(problem.c, 1))))
    for start in range(0, problem.n, step):
        stop = min(problem.n, start + step)
        rows = rows_as_values(problem, x, start, stop).float().numpy()
        _, idx = faiss.knn(np.ascontiguousarray(rows), centers, k_eff)
        out[start:stop, :k_eff] = idx
        _release(problem, start, stop)
    return out
