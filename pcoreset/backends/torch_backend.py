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
        if problem.n_centers:
            mind = self._start(problem, x, acc, step, mind)
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
    def _start(problem, x, acc, step, mind):
        """Squared distance of every row to its nearest initial center: every
        center in turn for small products, else the certified candidates."""
        values = _start.torch_values(problem)
        centers = _start.initial_centers(problem, values)
        if _start.use_exact(problem.n, problem.n_centers, problem.c):
            for a in range(centers.shape[0]):
                mind = torch.minimum(mind, _sq_dist(problem, x, centers[a], step))
            return mind
        cand = torch.from_numpy(_start.certified_candidates(problem, centers, values)).to(x.device)
        for s in range(0, problem.n, step):
            rows = _start.rows_as_values(problem, x, s, min(problem.n, s + step))
            for t in range(cand.shape[1]):
                d = ((rows - centers[cand[s:s + step, t]]) ** 2).sum(1)
                mind[s:s + step] = torch.minimum(mind[s:s + step], d)
        return mind

    @staticmethod
    def _greedy(problem, x, acc, step, mind, taken, picks, radii2, neg, center, callback):
        n, dev = problem.n, x.device
        for t in range(problem.budget):
            if t == 0 and problem.n_centers == 0:
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
