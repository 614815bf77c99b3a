"""The distributed greedy loop: every rank updates its shard, one collective
names the global winner (larger distance, then lower global index: the
kernels' tie rule), and the rank that holds it broadcasts its exact values."""
from __future__ import annotations

import contextlib
import time
from typing import Optional

import numpy as np
import torch

from .._problem import Problem
from ..backends.base import KEY_INDEX_LIMIT, pack_key, unpack_key
from ._agree import Layout
from ._comm import Comm
from ._local import global_mean

_NO_KEY = -1  # a rank with no eligible row (empty shard, or all taken)


class Argmax:
    """The global winner of one step from every rank's local best.

    float32 distances: one all_reduce(MAX) of the kernels' int64 key (the
    distance's bits, order-preserving for non-negative floats, above the
    inverted global index). float64 distances (or pools of 2^32 - 1 rows or
    more) do not fit one 64-bit key; there every rank's (distance bits,
    index) pair is all-gathered (16 bytes per rank, still one collective) and
    the same winner is chosen on every rank.
    """

    def __init__(self, comm: Comm, layout: Layout) -> None:
        self.comm = comm
        self.packed = layout.dtype != "float64" and layout.n < KEY_INDEX_LIMIT
        self.key = torch.zeros(1 if self.packed else 2, dtype=torch.int64, device=comm.device)

    def __call__(self, row: int, dist2: float, offset: int):
        if self.packed:
            self.key.fill_(_NO_KEY if row < 0 else pack_key(dist2, offset + row))
            self.comm.all_reduce_max(self.key)
            best = int(self.key.item())
            if best < 0:
                raise AssertionError("no eligible row on any rank")
            return unpack_key(best)
        if row < 0:
            pair = [_NO_KEY, _NO_KEY]
        else:
            pair = [int(np.float64(dist2).view(np.int64)), offset + row]
        self.key.copy_(torch.tensor(pair, dtype=torch.int64))
        table = self.comm.all_gather(self.key).tolist()
        bits, g = max(((b, -i) for b, i in table if i >= 0), default=(None, None))
        if bits is None:
            raise AssertionError("no eligible row on any rank")
        return -g, float(np.int64(bits).view(np.float64))


def progress_callback(progress, total: int, rank: int):
    """(report, close): a tqdm bar on rank 0 for progress=True, the caller's
    function on every rank, else nothing."""
    if not progress:
        return lambda done: None, lambda: None
    if callable(progress):
        return progress, lambda: None
    if rank != 0:
        return lambda done: None, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="pcoreset select (distributed)", unit="pick")
    return (lambda done: bar.update(done - bar.n)), bar.close


class Stepper:
    """The distributed greedy loop, resumable: `take(k)` makes the next k
    picks. As in the kernels, the last pick of a call stays pending (not yet
    a center) until the next call pushes it; a call that stops at a radius
    has pushed its last pick."""

    def __init__(self, comm: Comm, state, problem: Optional[Problem], layout: Layout, stats) -> None:
        self.comm, self.problem, self.layout = comm, problem, layout
        self.off = int(layout.offsets[comm.rank])
        self.argmax = Argmax(comm, layout)
        vec_dtype = torch.float64 if layout.dtype == "float64" else torch.float32  # exact center values
        self.center = torch.zeros(layout.c, dtype=vec_dtype, device=comm.device)
        self.pending: Optional[int] = None
        self.broken: Optional[str] = None  # why the ranks may disagree now
        self.stats = stats
        for key in ("update_s", "reduce_s", "broadcast_s"):
            stats.setdefault(key, 0.0)
        stats.setdefault("steps", 0)
        self.reset(state, layout.labeled_total + layout.centers_count > 0)

    def reset(self, state, has_centers: bool) -> None:
        """A new state (its centers changed): the next pick is found again,
        from the pool mean when there is no center at all."""
        self.state = state
        self.best = None  # (global row, dist2) of the next pick
        self.has_centers = has_centers

    def push_pending(self, phase: str = "the pending pick") -> None:
        if self.pending is not None:
            self.comm.phase = phase
            self._push(self.pending)
            self.pending = None
            self.has_centers = True

    def _first(self) -> None:
        comm, state, layout = self.comm, self.state, self.layout
        t0 = time.perf_counter()
        if not self.has_centers:
            comm.phase = "the pool mean (first pick)"
            mean = global_mean(comm, state, self.problem, layout)
            row, d2 = state.farthest_from(mean) if state is not None else (-1, 0.0)
            g, _ = self.argmax(row, d2, self.off)
            self.best = (g, float("inf"))
        else:
            comm.phase = "the first pick"
            row, d2 = state.current_best() if state is not None else (-1, 0.0)
            self.best = self.argmax(row, d2, self.off)
        self.stats["first_pick_s"] = time.perf_counter() - t0

    def _push(self, g: int) -> None:
        """Global row g becomes a center on every rank; the next best follows."""
        comm, state, stats = self.comm, self.state, self.stats
        owner = self.layout.owner(g)
        t1 = time.perf_counter()
        if owner == comm.rank:
            self.center.copy_(torch.from_numpy(state.row_vector(g - self.off)))
            work = comm.broadcast_start(self.center, owner)
            t2 = time.perf_counter()
            row, d2 = state.push_row(g - self.off)  # overlaps the broadcast
            t3 = time.perf_counter()
            comm.wait(work)
            t4 = time.perf_counter()
            stats["broadcast_s"] += (t2 - t1) + (t4 - t3)
            stats["update_s"] += t3 - t2
        else:
            comm.broadcast(self.center, owner)
            t2 = time.perf_counter()
            if state is not None:
                row, d2 = state.push_center(self.center.cpu().numpy().astype(np.float64))
            else:
                row, d2 = -1, 0.0
            t3 = time.perf_counter()
            stats["broadcast_s"] += t2 - t1
            stats["update_s"] += t3 - t2
        self.best = self.argmax(row, d2, self.off)
        stats["reduce_s"] += time.perf_counter() - t3
        stats["steps"] += 1

    def take(self, k: int, progress, stop_dist2: float = -1.0, picks=None, radii2=None):
        """At most k picks, appended to `picks` and `radii2` as they are made
        (so an interrupted call keeps the finished ones); with stop_dist2 >=
        0, stops before the first pick whose squared radius is <= stop_dist2.

        Every pick is a center from the moment it is made: the last one of a
        call, or one whose progress report raised, stays pending (pushed by
        the next step or call). An exception inside a step's collectives or
        kernel update leaves the ranks possibly a step apart: `broken` is set
        and the caller refuses further calls."""
        picks = [] if picks is None else picks
        radii2 = [] if radii2 is None else radii2
        first = len(picks)
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        with self._guard():
            self.push_pending()
            if self.best is None:
                self._first()
        report, close = progress_callback(progress, k, self.comm.rank)
        try:
            for t in range(k):
                g, d2 = self.best
                if stop_dist2 >= 0 and d2 <= stop_dist2:
                    break
                picks.append(int(g))
                radii2.append(float(d2))
                self.pending = int(g)  # pushed by the next step, or the next call
                report(t + 1)
                if t + 1 == k:
                    break
                with self._guard():
                    self.push_pending(f"step {t + 1} of {k}")
        finally:
            close()
        return np.asarray(picks[first:], dtype=np.int64), np.asarray(radii2[first:], dtype=np.float64)

    @contextlib.contextmanager
    def _guard(self):
        """Marks the loop broken when a step's collectives or update raise."""
        try:
            yield
        except BaseException as exc:
            self.broken = f"{type(exc).__name__} during {self.comm.phase}"
            raise
