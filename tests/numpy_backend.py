"""A small backend written for the tests: a float64 NumPy running minimum
(dense, no pruning). It is everything a new backend needs: a state with the
protocol's methods and a Backend that makes it and says what it allocates;
`pcoreset.backends.register(NumpyBackend())` makes it selectable by name."""
from __future__ import annotations

from typing import Dict

import numpy as np

from pcoreset._problem import Problem
from pcoreset.backends.base import Backend, KCenterState


def _rows(problem: Problem) -> np.ndarray:
    """The pool as float64 rows as the kernels see them (softmax for logits)."""
    x = np.asarray(problem.numpy_view(), dtype=np.float64)
    if problem.from_logits:
        z = x / problem.temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        x = z / z.sum(axis=1, keepdims=True)
    return x


class NumpyState(KCenterState):
    def __init__(self, problem: Problem) -> None:
        self.x = _rows(problem)
        self.n, self.c = self.x.shape
        self.mind = np.full(self.n, np.inf)
        self.nearest = np.full(self.n, -1, dtype=np.int64)
        self.taken = np.zeros(self.n, dtype=bool)
        self.centers = np.zeros((0, self.c))
        self.steps = 0

    @property
    def num_centers(self) -> int:
        return self.centers.shape[0]

    def _add(self, vecs: np.ndarray, cand=None) -> None:
        first = self.num_centers
        self.centers = np.vstack([self.centers, vecs])
        for j in range(first, self.num_centers):
            if cand is not None:  # only rows that list center j - first as a candidate
                rows = np.flatnonzero((np.asarray(cand) == j - first).any(axis=1))
            else:
                rows = np.arange(self.n)
            d = ((self.x[rows] - self.centers[j]) ** 2).sum(axis=1)
            closer = d < self.mind[rows]
            self.mind[rows[closer]] = d[closer]
            self.nearest[rows[closer]] = j

    def seed_rows(self, rows) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        self.taken[rows] = True
        self._add(self.x[rows])

    def seed_rows_with_candidates(self, rows, cand) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        self.taken[rows] = True
        self._add(self.x[rows], cand)

    def seed_vectors(self, vectors) -> None:
        self._add(np.asarray(vectors, dtype=np.float64))

    def seed_vectors_with_candidates(self, vectors, cand) -> None:
        self._add(np.asarray(vectors, dtype=np.float64), cand)

    def take(self, row: int) -> None:
        self.taken[int(row)] = True

    def exclude(self, rows) -> None:
        self.taken[np.asarray(rows, dtype=np.int64)] = True

    def current_best(self):
        score = np.where(self.taken, -1.0, self.mind)
        if self.n == 0 or score.max() < 0:
            return -1, 0.0
        p = int(np.argmax(score))
        return p, float(self.mind[p])

    def push_row(self, row: int):
        self.taken[int(row)] = True
        self.steps += 1
        self._add(self.x[int(row)][None, :])
        return self.current_best()

    def push_center(self, vector):
        self.steps += 1
        self._add(np.asarray(vector, dtype=np.float64)[None, :])
        return self.current_best()

    def first_pick(self):
        d = ((self.x - self.x.mean(axis=0)) ** 2).sum(axis=1)
        return int(np.argmax(np.where(self.taken, -1.0, d))), float("inf")

    def export_state(self):
        return np.where(self.taken, -1.0, self.mind), self.nearest.copy(), self.centers.copy()

    def load_state(self, mind, nearest, centers) -> None:
        mind = np.asarray(mind, dtype=np.float64)
        self.taken = mind < 0
        self.mind = np.where(self.taken, 0.0, mind)
        self.nearest = np.asarray(nearest, dtype=np.int64).copy()
        self.centers = np.asarray(centers, dtype=np.float64).reshape(-1, self.c).copy()

    def min_dist2(self) -> np.ndarray:
        return np.where(self.taken, 0.0, self.mind)

    def stats(self) -> dict:
        return {"steps": self.steps, "rows_computed": self.steps * self.n, "rows_visited": self.steps * self.n,
                "center_dists": 0}


class NumpyBackend(Backend):
    name = "numpy-test"

    def rejects(self, problem: Problem):
        if problem.device != "cpu" or problem.dtype == "bfloat16":
            return "the numpy-test backend reads float16/32/64 host arrays"
        return None

    def make_state(self, problem: Problem) -> NumpyState:
        return NumpyState(problem)

    def memory_parts(self, n: int, c: int, dtype: str, centers: int, budget: int,
                     from_logits: bool) -> Dict[str, int]:
        return {"float64 copy of the pool": n * c * 8, "running minimum, nearest, taken": n * 17,
                "centers": centers * c * 8}
