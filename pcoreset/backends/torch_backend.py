"""`torch`: the readable reference. A vectorised running minimum in PyTorch on
any device: per step, the squared distance of every row to the new center
(direct differences, in row chunks), a min into the running distance, and an
argmax (torch.argmax returns the first maximum: lowest index on ties)."""
from __future__ import annotations

import torch

from .. import _start
from .._problem import Problem
from . import register
from .base import Backend
from .cpu import _progress_callback


def _sq_dist(problem, x, center, step):
    parts = []
    for start in range(0, problem.n, step):
        rows = _start.rows_as_values(problem, x, start, min(problem.n, start + step))
        parts.append(((rows - center) ** 2).sum(1))
    return torch.cat(parts)


class TorchBackend(Backend):
    name = "torch"

    def run(self, problem: Problem):
        x = _start.torch_pool(problem)
        acc = _start.accum_dtype(problem)
        n, dev = problem.n, x.device
        step = _start.chunk_rows(n, problem.c)
        mind = torch.full((n,), float("inf"), dtype=acc, device=dev)
        taken = torch.zeros(n, dtype=torch.bool, device=dev)

        def center(i):
            return _start.rows_as_values(problem, x, i, i + 1)[0]

        labeled = problem.labeled
        if labeled.size:
            taken[torch.from_numpy(labeled).to(dev)] = True
            if _start.use_exact(n, labeled.size, problem.c):
                for i in labeled.tolist():
                    mind = torch.minimum(mind, _sq_dist(problem, x, center(i), step))
            else:
                cand = torch.from_numpy(_start.nearest_candidates(problem)).to(dev)
                lab = torch.from_numpy(labeled).to(dev)
                for t in range(cand.shape[1]):
                    ok = cand[:, t] >= 0
                    idx = torch.nonzero(ok).flatten()
                    for s in range(0, idx.numel(), step):
                        rows_i = idx[s:s + step]
                        rows = _start.rows_as_values(problem, x[rows_i], 0, rows_i.numel())
                        ctrs = _start.rows_as_values(problem, x[lab[cand[rows_i, t]]], 0, rows_i.numel())
                        mind[rows_i] = torch.minimum(mind[rows_i], ((rows - ctrs) ** 2).sum(1))
            mind[taken] = 0

        picks = torch.empty(problem.budget, dtype=torch.int64, device=dev)
        radii2 = torch.empty(problem.budget, dtype=torch.float64, device=dev)
        neg = torch.tensor(-1.0, dtype=acc, device=dev)
        callback, close = _progress_callback(problem)
        try:
            self._greedy(problem, x, acc, step, mind, taken, picks, radii2, neg, center, callback)
        finally:
            close()
        return picks, radii2

    @staticmethod
    def _greedy(problem, x, acc, step, mind, taken, picks, radii2, neg, center, callback):
        n, dev, labeled = problem.n, x.device, problem.labeled
        for t in range(problem.budget):
            if t == 0 and labeled.size == 0:
                mean = torch.zeros(problem.c, dtype=torch.float64, device=dev)
                for start in range(0, n, step):
                    mean += _start.rows_as_values(problem, x, start, min(n, start + step)).sum(0, dtype=torch.float64)
                d = _sq_dist(problem, x, (mean / n).to(acc), step)
                p = int(torch.argmax(d))
                r2 = float("inf")
            else:
                score = torch.where(taken, neg, mind)
                p = int(torch.argmax(score))
                r2 = float(mind[p])
            picks[t] = p
            radii2[t] = r2
            taken[p] = True
            if t + 1 < problem.budget:
                mind = torch.minimum(mind, _sq_dist(problem, x, center(p), step))
                mind[p] = 0
            if callback:
                callback(t + 1)


register(TorchBackend())
