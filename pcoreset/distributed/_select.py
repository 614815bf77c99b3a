"""`select` and `Selector` over a pool sharded across the ranks of a
`torch.distributed` group."""
from __future__ import annotations

import datetime
import hashlib
import time
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch
import torch.distributed as dist

from .._problem import check_count, check_labeled, radii_to_kind, to_kind
from .._start import add_rows
from ..errors import InvalidInputError, InvalidTypeError, PoolExhaustedError, RankFailureError, RankMismatchError
from ..selector import _check_radius, _dist2_at_most
from ._agree import agree, check_local, share_centers
from ._comm import DEFAULT_TIMEOUT_S, Comm, as_timeout, ranks_by_value
from ._local import local_backend, share_rows, start_everywhere
from ._loop import Stepper

# Timings of the last `select` on this process (seconds): setup, start, mean,
# and per-phase totals of the greedy loop (update, reduce, broadcast, steps).
last_stats: Dict[str, float] = {}

Progress = Union[bool, Callable[[int], None], None]


def _setup(local_probs, local_labeled_idx, budget, group, labeled_is_global, centers, centers_from,
           from_logits, temperature, timeout, prune, num_threads, progress, simplex_atol):
    """Validation on every rank, one agreement all-gather, the shared centers
    and this rank's labeled rows: (comm, layout, problem, stats)."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("pcoreset.distributed needs an initialised torch.distributed "
                           "process group: call torch.distributed.init_process_group first "
                           "(torchrun sets the environment for it)")
    comm = Comm(group, as_timeout(timeout))
    local = check_local(local_probs, local_labeled_idx, budget, labeled_is_global, from_logits,
                        temperature, prune, num_threads, progress, simplex_atol, centers, centers_from)
    layout = agree(comm, local, bool(labeled_is_global))
    problem = share_centers(comm, local.problem, layout)
    off, n_local = int(layout.offsets[comm.rank]), int(layout.sizes[comm.rank])
    if labeled_is_global:
        mine = local.labeled[(local.labeled >= off) & (local.labeled < off + n_local)] - off
        problem = replace(problem, labeled=np.sort(mine))
    stats: Dict[str, float] = {"rank": comm.rank, "world": comm.world, "n_local": n_local, "n": layout.n}
    return comm, layout, problem, stats


def _start(comm: Comm, problem, layout, stats, rows: Optional[np.ndarray] = None):
    """This rank's state with every rank's center rows and the center
    vectors (None for an empty shard)."""
    comm.phase = "the start (initial centers)"
    t0 = time.perf_counter()
    state = start_everywhere(comm, problem, layout, rows)
    stats["start_s"] = time.perf_counter() - t0
    return state


class Selector:
    """Incremental selection over a pool sharded across the ranks of a
    `torch.distributed` group, with the methods of `pcoreset.Selector`:
    `next`, `until`, `add_centers`, `exclude` and the read-only `picks`,
    `radii`, `radius`, `n_centers`, `n_available`, `excluded`, `backend`.

    Every method is collective: call it on every rank, in the same order,
    with the same arguments (checked: a RankMismatchError names the ranks
    otherwise). Row indices are global. Picks are the same on every rank,
    and every continuation equals one single-process `pcoreset.Selector` on
    the concatenated pool with the same calls. It keeps no `state_dict`:
    each rank's state belongs to its shard (see the distributed guide).

    Interruption keeps every finished step, as for `pcoreset.Selector`, when
    every rank stops at the same step (an exception raised by the same
    `progress` callback on every rank): the picks made before it end
    `picks` and are centers, and `next(k - t)` continues the sequence. An
    exception inside a step (Ctrl-C, a rank that failed: RankFailureError)
    may leave the ranks a step apart; the Selector then refuses every later
    call with RankFailureError, and a new one is built with the picks so far
    among the labeled rows.

    Arguments as for `pcoreset.distributed.select` (without a budget).
    """

    def __init__(self, local_probs: Any, local_labeled_idx: Any = None, *, group=None,
                 labeled_is_global: bool = False, centers: Any = None, centers_from: Optional[int] = None,
                 from_logits: bool = False, temperature: float = 1.0,
                 timeout: Union[float, datetime.timedelta] = DEFAULT_TIMEOUT_S, prune: bool = True,
                 num_threads: int = 0, progress: Progress = None, simplex_atol: Optional[float] = None):
        self._comm, self._layout, self._problem, self.stats = _setup(
            local_probs, local_labeled_idx, 0, group, labeled_is_global, centers, centers_from, from_logits,
            temperature, timeout, prune, num_threads, progress, simplex_atol)
        state = _start(self._comm, self._problem, self._layout, self.stats)
        self._stepper = Stepper(self._comm, state, self._problem, self._layout, self.stats)
        self._progress = progress
        self._off = int(self._layout.offsets[self._comm.rank])
        self._n_local = int(self._layout.sizes[self._comm.rank])
        self._picks: List[int] = []
        self._radii2: List[float] = []
        self._added = np.zeros(0, dtype=np.int64)
        self._excluded = np.zeros(0, dtype=np.int64)

    # ---- read-only views

    @property
    def backend(self) -> str:
        """The backend that holds this rank's state ("cpu" or "cuda")."""
        return local_backend(self._problem).name

    @property
    def picks(self):
        return to_kind(np.asarray(self._picks, dtype=np.int64), self._problem, np.int64)

    @property
    def radii(self):
        return radii_to_kind(np.asarray(self._radii2, dtype=np.float64), self._problem)

    @property
    def excluded(self) -> np.ndarray:
        return self._excluded.copy()

    @property
    def n_centers(self) -> int:
        kept = np.setdiff1d(np.asarray(self._picks, dtype=np.int64), self._excluded).size
        return int(self._layout.labeled_total + self._layout.centers_count + self._added.size + kept)

    @property
    def n_available(self) -> int:
        taken = np.union1d(np.union1d(np.asarray(self._picks, dtype=np.int64), self._added), self._excluded)
        return int(self._layout.n - self._layout.labeled_total - taken.size)

    @property
    def radius(self) -> float:
        """The current coverage radius, as `pcoreset.Selector.radius` (collective)."""
        if self.n_centers == 0:
            return float("inf")
        if self.n_available == 0:
            return 0.0
        self._check()
        with self._stepper._guard():
            self._stepper.push_pending()
            if self._stepper.best is None:
                self._stepper._first()
        return float(np.sqrt(max(self._stepper.best[1], 0.0)))

    # ---- agreement on the arguments of a call

    def _agree_count(self, k: Any, name: str) -> int:
        bad = None
        try:
            k = check_count(k, name)
        except (InvalidInputError, InvalidTypeError) as exc:
            bad = exc
        mine = torch.tensor([-1 if bad is not None else k], dtype=torch.int64)
        with self._stepper._guard():
            table = self._comm.all_gather(mine).flatten().tolist()
        if bad is not None:
            raise bad
        if -1 in table:
            raise InvalidInputError(f"rank {table.index(-1)} passed a bad {name}")
        if len(set(table)) > 1:
            raise RankMismatchError(f"{name} differs across ranks: {ranks_by_value(table, lambda v: f'{name}={v}')}; "
                                    f"every rank must pass the same {name}")
        return k

    def _agree_rows(self, rows: Any, name: str) -> np.ndarray:
        bad, key = None, [-1, 0]
        try:
            rows = check_labeled(rows, self._layout.n, self._problem.device, name=name)
            digest = hashlib.blake2b(rows.astype("<i8").tobytes(), digest_size=8).digest()
            key = [int(rows.size), int(np.frombuffer(digest, dtype="<i8")[0])]
        except (InvalidInputError, InvalidTypeError) as exc:
            bad = exc
        with self._stepper._guard():
            table = self._comm.all_gather(torch.tensor(key, dtype=torch.int64)).tolist()
        if bad is not None:
            raise bad
        failed = [r for r, (count, _) in enumerate(table) if count < 0]
        if failed:
            raise InvalidInputError(f"rank {failed[0]} passed bad {name}")
        if len({tuple(t) for t in table}) > 1:
            raise RankMismatchError(f"{name} differs across ranks: "
                                    f"{ranks_by_value([t[0] for t in table], lambda v: f'{v} rows')} (or the same "
                                    f"count with different rows); every rank must pass the same global rows")
        return rows

    def _local(self, rows: np.ndarray) -> np.ndarray:
        """The rows of `rows` this rank holds, as local indices."""
        return rows[(rows >= self._off) & (rows < self._off + self._n_local)] - self._off

    def _center_rows(self) -> np.ndarray:
        """Global rows that are centers: the labeled ones (known to their
        rank only) are not listed; the picks and added rows are."""
        return np.setdiff1d(np.union1d(np.asarray(self._picks, dtype=np.int64), self._added), self._excluded)

    # ---- picking

    def next(self, k: int):
        """The next k global picks (int64, in order; NumPy, or a torch tensor
        for torch input), the same on every rank."""
        self._check()
        k = self._agree_count(k, "k")
        if k > self.n_available:
            raise PoolExhaustedError(self.n_available, k, what="k")
        return self._take(k)[0]

    def until(self, radius: float, max_picks: Optional[int] = None):
        """Pick while the coverage radius is above `radius` (at most
        `max_picks`), as `pcoreset.Selector.until`: (picks, radii) of this call."""
        self._check()
        r = _check_radius(radius)
        m = self.n_available if max_picks is None else min(self._agree_count(max_picks, "max_picks"),
                                                             self.n_available)
        return self._take(m, _dist2_at_most(r))

    def _check(self) -> None:
        if self._stepper.broken:
            raise RankFailureError(
                f"this distributed Selector was interrupted ({self._stepper.broken}) and the ranks may "
                "be a step apart; build a new one with its picks so far among the labeled rows",
                self._stepper.broken)

    def _take(self, k: int, stop_dist2: float = -1.0):
        self._check()
        picks, radii2 = self._stepper.take(k, self._progress, stop_dist2, self._picks, self._radii2)
        return to_kind(picks, self._problem, np.int64), radii_to_kind(radii2, self._problem)

    # ---- changing the centers

    def add_centers(self, rows) -> None:
        """Global rows become centers on every rank (rows labeled out of
        order), as `pcoreset.Selector.add_centers`: rows that are centers
        already are ignored; an excluded row may become a center."""
        self._check()
        rows = self._agree_rows(rows, "rows")
        with self._stepper._guard():
            self._add_centers(rows)

    def _add_centers(self, rows: np.ndarray) -> None:
        # which rows are centers already: each rank knows its labeled rows
        known = np.zeros(rows.size, dtype=np.int64)
        mine = (rows >= self._off) & (rows < self._off + self._n_local)
        labeled_here = np.isin(rows - self._off, self._problem.labeled) & mine
        known[labeled_here | np.isin(rows, self._center_rows())] = 1
        flags = torch.from_numpy(known).to(self._comm.device)
        if rows.size:
            self._comm.all_reduce_max(flags)
        new = rows[flags.cpu().numpy() == 0]
        if new.size == 0:
            return
        self._stepper.push_pending()
        counts = np.array([np.count_nonzero((new >= o) & (new < o + s))
                           for o, s in zip(self._layout.offsets, self._layout.sizes)], dtype=np.int64)
        local_new = self._local(new)
        state = self._stepper.state
        if state is not None and local_new.size:
            add_rows(local_backend(self._problem), state, self._problem, local_new)
        share_rows(self._comm, state, self._problem, local_new, counts, self._layout.c)
        self._added = np.concatenate([self._added, new])
        self._excluded = self._excluded[~np.isin(self._excluded, new)]
        self._stepper.reset(state, has_centers=True)

    def exclude(self, rows) -> None:
        """Global rows that may never be picked and are not centers, as
        `pcoreset.Selector.exclude`: picks among them stop being centers (every
        rank rebuilds its state). Labeled rows cannot be excluded."""
        self._check()
        rows = self._agree_rows(rows, "rows")
        local = self._local(rows)
        hit = local[np.isin(local, self._problem.labeled)]
        first = torch.tensor([int(hit.min()) + self._off if hit.size else -1], dtype=torch.int64)
        with self._stepper._guard():
            table = [v for v in self._comm.all_gather(first).flatten().tolist() if v >= 0]
        if table:
            raise InvalidInputError(f"rows has a labeled row: {min(table)} (labeled rows cannot be excluded)")
        rows = rows[~np.isin(rows, self._excluded)]
        if rows.size == 0:
            return
        with self._stepper._guard():
            self._exclude(rows)

    def _exclude(self, rows: np.ndarray) -> None:
        leaving = rows[np.isin(rows, self._center_rows())]
        self._excluded = np.concatenate([self._excluded, rows])
        if leaving.size == 0:
            if self._stepper.state is not None and self._local(rows).size:
                self._stepper.state.exclude(self._local(rows))
            if self._stepper.pending is None:
                self._stepper.best = None  # the next pick is found again
            return
        # centers leave: every rank rebuilds its state without them
        self._added = self._added[~np.isin(self._added, leaving)]
        self._stepper.pending = None
        keep = np.union1d(self._problem.labeled, self._local(self._center_rows()))
        state = _start(self._comm, self._problem, self._layout, self.stats, rows=keep.astype(np.int64))
        if state is not None and self._local(self._excluded).size:
            state.exclude(self._local(self._excluded))
        self._stepper.reset(state, has_centers=self.n_centers > 0)


def select(local_probs: Any, local_labeled_idx: Any, budget: int, *, group=None,
           labeled_is_global: bool = False, centers: Any = None, centers_from: Optional[int] = None,
           from_logits: bool = False, temperature: float = 1.0,
           timeout: Union[float, datetime.timedelta] = DEFAULT_TIMEOUT_S, return_radii: bool = False,
           prune: bool = True, num_threads: int = 0,
           progress: Progress = None,
           simplex_atol: Optional[float] = None):
    """PCoreSet selection over a pool sharded across the ranks of a
    `torch.distributed` process group. Call it on every rank of `group`.

    Rank r holds the contiguous global rows [offset_r, offset_r + n_r), with
    offset_r the sum of the shard sizes of lower ranks (one all-gather of
    sizes finds it). The picks are identical on every rank and identical to
    `pcoreset.select(concatenated_pool, labeled, budget)` on one process.

    Args:
        local_probs: (n_r, C) rows of this rank's shard, as for
            `pcoreset.select` (NumPy array, CPU torch tensor or .npy path;
            float16, bfloat16, float32 or float64). May have 0 rows. C, the
            dtype, `from_logits` and `temperature` must agree on all ranks.
        local_labeled_idx: labeled rows (may be empty or None).
            With labeled_is_global=False (default): this rank's own labeled
            rows as *local* indices in [0, n_r).
            With labeled_is_global=True: the complete list of *global*
            indices in [0, N), the same on every rank (checked).
        budget: picks to make in the whole pool, the same on every rank,
            0 <= budget <= N - (labeled rows on all ranks).
        centers: (M, C) initial center vectors that are not pool rows, as for
            `pcoreset.select`. Without `centers_from`, every rank passes the
            same ones (checked by a hash); with centers_from=r, rank r passes
            them (the others pass None) and they are broadcast once.
        centers_from: the rank that holds `centers`, or None.
        group: the process group (default: the default group). gloo for
            CPU shards; with NCCL the 8-byte key and the center row travel
            on the current CUDA device.
        timeout: seconds (or a timedelta) any one collective may wait. This
            includes waiting for slower ranks' local work (validation,
            seeding labeled rows), so size it above that.
        return_radii, from_logits, temperature, prune, num_threads, progress,
        simplex_atol: as for `pcoreset.select` (a progress bar only shows on
            rank 0; a callable is called on every rank).

    Returns:
        int64 global row indices in the order picked (NumPy, or a torch
        tensor for torch input), the same on every rank; with
        `return_radii`, a tuple (indices, radii) as for `pcoreset.select`.

    Raises:
        InvalidInputError / InvalidTypeError: a bad argument on this rank;
            on the other ranks, an InvalidInputError naming the rank and
            quoting its error.
        RankMismatchError (InvalidInputError): budget, C, dtype, from_logits,
            temperature, labeled_is_global or the global labeled list differ
            between ranks; names the ranks and their values.
        PoolExhaustedError: budget larger than the unlabeled rows of all ranks.
        RankFailureError (RuntimeError): another rank died, hung or lost its
            connection; raised within `timeout` of the failure.
        RuntimeError: torch.distributed is not initialised.
    """
    t_start = time.perf_counter()
    comm, layout, problem, stats = _setup(local_probs, local_labeled_idx, budget, group, labeled_is_global,
                                          centers, centers_from, from_logits, temperature, timeout, prune,
                                          num_threads, progress, simplex_atol)
    if layout.budget == 0:
        picks, radii2 = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    else:
        state = _start(comm, problem, layout, stats)
        picks, radii2 = Stepper(comm, state, problem, layout, stats).take(layout.budget, progress)
    stats["total_s"] = time.perf_counter() - t_start
    last_stats.clear()
    last_stats.update(stats)

    out = to_kind(picks, problem, np.int64)
    if not return_radii:
        return out
    return out, radii_to_kind(radii2, problem)
