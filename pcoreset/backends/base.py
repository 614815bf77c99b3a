"""The interface every selection backend implements."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .._problem import Problem


class Backend:
    """One way to run k-center greedy on a validated `Problem`.

    Subclasses set `name` and implement:
      - `unavailable()`: why this backend cannot run at all here (not built,
        library missing), or None;
      - `rejects(problem)`: why it cannot take this particular input (wrong
        device, unsupported dtype), or None;
      - `run(problem)`: the picks (int64, greedy order) and the squared radii
        (float64, +inf for a first pick made from the pool mean), as NumPy
        arrays or torch tensors on the problem's device.
    """

    name = "?"

    def unavailable(self) -> Optional[str]:
        return None

    def rejects(self, problem: Problem) -> Optional[str]:
        return None

    def run(self, problem: Problem) -> Tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError
