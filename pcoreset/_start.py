"""The labeled-set start: the nearest labeled row of every pool row.

This is an N x L nearest-neighbour problem. Small products are solved
exactly by the kernels (direct differences with early exit). Large ones use
a GEMM search for each row's k nearest candidates (||x||^2 + ||c||^2 - 2 x.c,
in row chunks so that no N x L matrix is ever held), after which the kernel
recomputes the distances to the candidates exactly. A GEMM distance is
accurate to about 1e-7 * ||x||^2, so the exact nearest row is among the
candidates unless several labeled rows sit within rounding of each other,
and then any of them gives the same minimum distance to that rounding.
"""
from __future__ import annotations

import numpy as np
import torch

from . import _memory
from ._problem import Problem

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
    t = torch.from_numpy(x)
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


def nearest_candidates(problem: Problem, k: int = CANDIDATES, method: str = "auto") -> np.ndarray:
    """(N, k) int64: for each row, indices into problem.labeled of its k
    nearest labeled rows by a FAISS or GEMM search (-1 pads when L < k).
    method: "auto" (FAISS when installed and the pool is on the CPU), "faiss"
    or "gemm"."""
    if method == "auto":
        method = "faiss" if faiss is not None and problem.device == "cpu" else "gemm"
    if method == "faiss":
        return _faiss_candidates(problem, k)
    x = torch_pool(problem)
    labeled = torch.from_numpy(problem.labeled).to(x.device)
    centers = rows_as_values(problem, x[labeled], 0, labeled.numel())
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


def _faiss_candidates(problem: Problem, k: int) -> np.ndarray:
    """FAISS brute-force k-NN (faiss.knn: blocked BLAS with a k-heap epilogue,
    no N x L matrix) over row chunks, in float32."""
    x = torch_pool(problem)
    labeled = torch.from_numpy(problem.labeled)
    centers = np.ascontiguousarray(
        rows_as_values(problem, x[labeled], 0, labeled.numel()).float().numpy())
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
