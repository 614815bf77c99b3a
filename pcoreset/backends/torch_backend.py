"""`torch`: the readable reference. A vectorised running minimum in PyTorch on
any device: per step, the squared distance of every row to the new center
(direct differences, in row chunks), a min into the running distance, and an
argmax (torch.argmax returns the first maximum: lowest index on ties).

`TorchState` holds that running minimum between calls, with the same methods
as the C++ state (`pcoreset._C.KCenterState`), so `pcoreset.Selector` can
continue a selection on this backend too.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from .. import _memory
from .._problem import Problem, accum_dtype, chunk_rows, rows_as_values, torch_pool
from .base import Backend, KCenterState


def _sq_dist(problem, x, center, step):
    parts = []
    for start in range(0, problem.n, step):
        rows = rows_as_values(problem, x, start, min(problem.n, start + step))
        parts.append(((rows - center) ** 2).sum(1))
    return torch.cat(parts)


class TorchState(KCenterState):
    """The running-minimum state of a pool, in torch tensors on its device.

    mind: squared distance of each row to its nearest center (accumulation
    dtype); taken: labeled, picked or excluded rows (never picked again);
    nearest: the index of each row's nearest center (-1: none yet).
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.x = torch_pool(problem)
        self.acc = accum_dtype(problem)
        self.dev = self.x.device
        n = problem.n
        self.n, self.c = n, problem.c
        self.step = chunk_rows(n, problem.c)
        self.mind = torch.full((n,), float("inf"), dtype=self.acc, device=self.dev)
        self.taken = torch.zeros(n, dtype=torch.bool, device=self.dev)
        self.nearest = torch.full((n,), -1, dtype=torch.int64, device=self.dev)
        self.centers = torch.zeros((0, problem.c), dtype=self.acc, device=self.dev)
        self._steps = 0
        self._undo = None

    # ---- centers -------------------------------------------------------------

    @property
    def num_centers(self) -> int:
        self._settle()
        return int(self.centers.shape[0])

    def _values(self, rows) -> torch.Tensor:
        rows = torch.as_tensor(np.asarray(rows, dtype=np.int64)).to(self.dev)
        return rows_as_values(self.problem, self.x[rows], 0, int(rows.numel()))

    def _append(self, vecs: torch.Tensor) -> int:
        first = self.num_centers
        self.centers = torch.cat([self.centers, vecs.to(device=self.dev, dtype=self.acc)])
        return first

    def _assign_exact(self, first: int) -> None:
        for a in range(first, self.num_centers):
            d = _sq_dist(self.problem, self.x, self.centers[a], self.step)
            closer = d < self.mind
            self.mind = torch.where(closer, d, self.mind)
            self.nearest = torch.where(closer, torch.full_like(self.nearest, a), self.nearest)

    def _assign_candidates(self, first: int, cand) -> None:
        cand = torch.as_tensor(np.asarray(cand, dtype=np.int64)).to(self.dev)
        count = self.num_centers - first
        for s in range(0, self.n, self.step):
            e = min(self.n, s + self.step)
            rows = rows_as_values(self.problem, self.x, s, e)
            for t in range(cand.shape[1]):
                a = cand[s:e, t]
                ok = (a >= 0) & (a < count)
                ids = first + a.clamp(0, max(count - 1, 0))
                d = ((rows - self.centers[ids]) ** 2).sum(1)
                closer = ok & ((d < self.mind[s:e]) | ((d == self.mind[s:e]) & (ids < self.nearest[s:e])))
                self.mind[s:e] = torch.where(closer, d, self.mind[s:e])
                self.nearest[s:e] = torch.where(closer, ids, self.nearest[s:e])

    def _take(self, rows, first: int) -> None:
        idx = torch.as_tensor(np.asarray(rows, dtype=np.int64)).to(self.dev)
        self.taken[idx] = True
        self.nearest[idx] = first + torch.arange(idx.numel(), device=self.dev)

    def seed_rows(self, rows) -> None:
        first = self._append(self._values(rows))
        self._take(rows, first)
        self._assign_exact(first)

    def seed_rows_with_candidates(self, rows, cand) -> None:
        first = self._append(self._values(rows))
        self._take(rows, first)
        self._assign_candidates(first, cand)

    def seed_vectors(self, vectors) -> None:
        first = self._append(torch.as_tensor(np.asarray(vectors, dtype=np.float64)))
        self._assign_exact(first)

    def seed_vectors_with_candidates(self, vectors, cand) -> None:
        first = self._append(torch.as_tensor(np.asarray(vectors, dtype=np.float64)))
        self._assign_candidates(first, cand)

    def take(self, row: int) -> None:
        self._settle()
        self.taken[int(row)] = True

    def exclude(self, rows) -> None:
        self._settle()
        self.taken[torch.as_tensor(np.asarray(rows, dtype=np.int64)).to(self.dev)] = True

    # ---- steps ---------------------------------------------------------------

    def current_best(self):
        self._settle()
        score = torch.where(self.taken, torch.tensor(-1.0, dtype=self.acc, device=self.dev), self.mind)
        if score.numel() == 0:
            return -1, 0.0
        p = int(torch.argmax(score))
        if bool(self.taken[p]):
            return -1, 0.0
        return p, float(self.mind[p])

    # A step is all-or-nothing, so that an exception inside it (Ctrl-C, out
    # of memory) leaves the state of the steps before: the new tensors are
    # computed aside, the old ones are kept in _undo while they are swapped
    # in, and _settle() (at every entry, and when the swap raised) puts them
    # back if the swap did not finish. Putting back is idempotent.

    def _settle(self) -> None:
        undo = self.__dict__.get("_undo")
        if undo is not None:
            self.centers, self.mind, self.nearest, row, was_taken = undo
            if row is not None:
                self.taken[row] = was_taken
            self._undo = None

    def _push(self, vec: torch.Tensor, row=None):
        self._settle()
        k = self.num_centers
        centers = torch.cat([self.centers, vec[None, :].to(device=self.dev, dtype=self.acc)])
        d = _sq_dist(self.problem, self.x, centers[k], self.step)
        closer = d < self.mind
        mind = torch.where(closer, d, self.mind)
        nearest = torch.where(closer, torch.full_like(self.nearest, k), self.nearest)
        if row is not None:
            mind[row] = 0
            nearest[row] = k
        undo = (self.centers, self.mind, self.nearest, row, None if row is None else bool(self.taken[row]))
        self._undo = undo
        try:
            self.centers, self.mind, self.nearest = centers, mind, nearest
            if row is not None:
                self.taken[row] = True
            self._undo = None
        except BaseException:
            self._settle()
            raise
        self._steps += 1
        return k

    def push_row(self, row: int):
        self._push(self._values([int(row)])[0], int(row))
        return self.current_best()

    def push_center(self, vector):
        self._push(torch.as_tensor(np.asarray(vector, dtype=np.float64)))
        return self.current_best()

    def first_pick(self):
        """(row, +inf): the eligible row farthest from the pool mean."""
        n, dev = self.n, self.dev
        mean = torch.zeros(self.c, dtype=torch.float64, device=dev)
        for s in range(0, n, self.step):
            mean += rows_as_values(self.problem, self.x, s, min(n, s + self.step)).sum(0, dtype=torch.float64)
        d = _sq_dist(self.problem, self.x, (mean / n).to(self.acc), self.step)
        d = torch.where(self.taken, torch.tensor(-1.0, dtype=self.acc, device=dev), d)
        return int(torch.argmax(d)), float("inf")

    # ---- arrays --------------------------------------------------------------

    def min_dist2(self) -> np.ndarray:
        self._settle()
        return torch.where(self.taken, torch.zeros_like(self.mind), self.mind).double().cpu().numpy()

    def export_state(self):
        self._settle()
        mind = torch.where(self.taken, torch.full_like(self.mind, -1), self.mind).double().cpu().numpy()
        return mind, self.nearest.cpu().numpy().copy(), self.centers.double().cpu().numpy()

    def load_state(self, mind, nearest, centers) -> None:
        mind = torch.as_tensor(np.asarray(mind, dtype=np.float64))
        self.taken = (mind < 0).to(self.dev)
        self.mind = mind.clamp_min(0).to(device=self.dev, dtype=self.acc)
        self.mind[self.taken] = 0
        self.nearest = torch.as_tensor(np.asarray(nearest, dtype=np.int64)).to(self.dev)
        self.centers = torch.as_tensor(np.asarray(centers, dtype=np.float64)).to(device=self.dev, dtype=self.acc)

    def stats(self) -> dict:
        return {"steps": self._steps, "rows_computed": self._steps * self.n, "rows_visited": self._steps * self.n,
                "center_dists": 0}


class TorchBackend(Backend):
    name = "torch"

    def make_state(self, problem: Problem) -> TorchState:
        return TorchState(problem)

    def memory_parts(self, n: int, c: int, dtype: str, centers: int, budget: int,
                     from_logits: bool) -> Dict[str, int]:
        acc = 8 if dtype == "float64" else 4
        return {"running minimum, taken": n * (acc + 1),
                "row chunk temporaries": 3 * min(n * c * acc, _memory.CHUNK_BYTES)}


BACKEND = TorchBackend()
