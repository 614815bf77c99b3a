"""`cuda`: the CUDA kernel (fused, device-resident k-center greedy).

Takes torch CUDA tensors and runs on the caller's current stream of the
tensor's device; the picks and radii come back as CUDA tensors on that
device. Nothing here touches CUDA at import time: the module import only
loads the extension, and devices are queried when a selection runs.
"""
from __future__ import annotations

import os
from typing import Optional

from .. import _start
from .._problem import Problem
from ..errors import OutOfMemoryError
from . import register
from .base import Backend

try:
    from .. import _C_cuda
    _IMPORT_ERROR = None
except ImportError as exc:  # built without CUDA, or the module failed to load
    _C_cuda = None
    _IMPORT_ERROR = str(exc)

# Largest N * L * C solved by the exact start kernel (a warp per row, every
# labeled row in turn); larger starts take GEMM candidates (_start) and the
# kernel recomputes their distances exactly.
EXACT_MAX_WORK = 1e11

# PCORESET_CUDA_GRAPHS=0 launches every step directly instead of replaying a
# captured CUDA graph (same picks; for debugging and profiling).
def _use_graphs() -> bool:
    return os.environ.get("PCORESET_CUDA_GRAPHS", "1") != "0"


class CudaBackend(Backend):
    name = "cuda"

    def unavailable(self) -> Optional[str]:
        if _C_cuda is None:
            return f"pcoreset was not compiled with CUDA (pcoreset._C_cuda: {_IMPORT_ERROR})"
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device is visible to torch (torch.cuda.is_available() is False)"
        return None

    def rejects(self, problem: Problem) -> Optional[str]:
        if problem.kind != "torch" or not problem.device.startswith("cuda"):
            return f"input is on {problem.device}; the cuda backend takes torch CUDA tensors"
        return None

    def run(self, problem: Problem):
        import torch

        if _C_cuda is None:
            raise RuntimeError(self.unavailable())
        x = problem.x
        dev = x.device
        n, c, budget = problem.n, problem.c, problem.budget
        with torch.cuda.device(dev):
            stream = torch.cuda.current_stream(dev)
            labeled = torch.from_numpy(problem.labeled).to(dev)
            n_lab = int(labeled.numel())
            cand, k = None, 0
            if n_lab and float(n) * n_lab * c > EXACT_MAX_WORK:
                cand = torch.from_numpy(_start.nearest_candidates(problem)).to(dev)
                k = int(cand.shape[1])
            need = int(_C_cuda.workspace_bytes(problem.dtype, n, c, bool(problem.from_logits), n_lab, budget))
            try:
                workspace = torch.empty(max(need, 1), dtype=torch.uint8, device=dev)
                picks = torch.empty(budget, dtype=torch.int64, device=dev)
                radii2 = torch.empty(budget, dtype=torch.float64, device=dev)
                stats = torch.zeros(4, dtype=torch.int64, device=dev)
            except torch.cuda.OutOfMemoryError:
                free, _ = torch.cuda.mem_get_info(dev)
                cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
                raise OutOfMemoryError(
                    f"the cuda backend's state for n={n}, c={c}, labeled={n_lab}, budget={budget} on {dev}",
                    need + 16 * budget, free + cached) from None
            _C_cuda.run(
                x=x.data_ptr(), dtype=problem.dtype, n=n, c=c, from_logits=bool(problem.from_logits),
                temperature=float(problem.temperature), prune=bool(problem.prune),
                labeled=labeled.data_ptr() if n_lab else 0, n_labeled=n_lab,
                candidates=cand.data_ptr() if cand is not None else 0, k=k, budget=budget,
                picks=picks.data_ptr() if budget else 0, radii2=radii2.data_ptr() if budget else 0,
                stats=stats.data_ptr(), workspace=workspace.data_ptr(), workspace_size=need,
                device=dev.index if dev.index is not None else torch.cuda.current_device(),
                stream=stream.cuda_stream, use_graphs=_use_graphs())
            del workspace
        steps = max(budget - 1, 0)
        s = stats.cpu().tolist()  # run() already synchronised: no stall
        self.last_stats = {"steps": steps, "rows_computed": s[1], "rows_visited": steps * n,
                           "center_dists": s[3]}
        if callable(problem.progress):
            problem.progress(budget)
        return picks, radii2


register(CudaBackend())


def build_info() -> dict:
    """What the CUDA module was compiled with (no device query)."""
    if _C_cuda is None:
        return {"built": False, "error": _IMPORT_ERROR}
    info = dict(_C_cuda.build_info())
    info["built"] = True
    return info
