"""Sharded PCoreSet selection over `torch.distributed` (gloo on CPUs, NCCL on GPUs).

Every rank holds a contiguous shard of the pool's rows, in rank order: rank 0
holds global rows [0, n0), rank 1 [n0, n0 + n1), and so on (shards may be
empty). `select` returns the same global picks on every rank, identical to
single-process `pcoreset.select` on the concatenated pool with the same kernel.

Per greedy step:
  1. every rank runs the fused update + argmax over its shard with the local
     kernel (running minimum, exact pruning);
  2. one `all_reduce(MAX)` of an 8-byte key (the distance's float32 bits above
     the inverted global row index) names the winner: larger distance, and on
     equal distances the lowest global index;
  3. the rank that holds the winning row broadcasts it (C values, as the
     kernel sees it) and every rank adds it as the next center.

Why the picks are bit-identical to one process: distances are computed by
the same row math whichever rank holds a row, centers travel as their exact
accumulation-type values, the running minimum is order-independent (pruning
never changes it), and the global tie rule is the kernel's tie rule. With no
labeled rows, the pool mean that the first pick depends on is rebuilt with
the single-process arithmetic (fixed 4096-row blocks summed in order; see
`_global_mean`).

Failures: every collective waits at most `timeout`; a rank that died, hung or
lost its connection surfaces as `RankFailureError` on the others. Disagreeing
arguments across ranks (budget, C, dtype, ...) and a bad input on any rank
are found in one all-gather at the start, and every rank raises the same
error naming the ranks.
"""
from __future__ import annotations

import datetime
import hashlib
import numbers
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from ._deps import require_torch

torch = require_torch("distributed selection (pcoreset.distributed)")
import torch.distributed as dist  # noqa: E402

from . import _start
from ._problem import Problem, check_budget, check_labeled, make_problem
from .errors import (
    BackendUnavailableError,
    InvalidInputError,
    InvalidTypeError,
    PcoresetError,
    PoolExhaustedError,
)

__all__ = ["select", "Selector", "RankFailureError", "RankMismatchError", "last_stats", "main_select_distributed",
           "add_select_distributed_arguments"]

DEFAULT_TIMEOUT_S = 1800.0  # as torch.distributed's own default
_PROTOCOL = 2  # bump when the metadata layout changes (a mixed install is then caught)
_MSG_BYTES = 512  # room for one rank's input error in the metadata all-gather
_MEAN_BLOCK = 4096  # rows per block of the kernel's mean_vector (kcenter_cpu.cpp)
_GATHER_BYTES = 64 << 20  # all-gather buffer for other ranks' labeled rows
_DTYPE_CODE = {"float16": 1, "bfloat16": 2, "float32": 3, "float64": 4}
_NO_KEY = -1  # a rank with no eligible row (empty shard, or all taken)
_KEY_INDEX_LIMIT = 0xFFFFFFFF  # packed float32 keys hold global indices < 2^32 - 1

# Timings of the last `select` on this process (seconds): setup, seed, mean,
# and per-phase totals of the greedy loop (update, reduce, broadcast, steps).
last_stats: Dict[str, float] = {}


class RankFailureError(PcoresetError, RuntimeError):
    """Another rank died, hung or lost its connection: a collective did not
    complete within the timeout or failed. `phase` says where."""

    def __init__(self, message: str, phase: str) -> None:
        self.phase = phase
        super().__init__(message)


class RankMismatchError(InvalidInputError):
    """Ranks passed arguments that must agree but do not (budget, C, dtype,
    from_logits, temperature, labeled_is_global, the global labeled list);
    the message names the ranks and their values."""


# --------------------------------------------------------------------------- comm


class _Comm:
    """The process group, with every collective bounded by `timeout`."""

    def __init__(self, group, timeout: datetime.timedelta) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self.timeout = timeout
        backend = str(dist.get_backend(group)).lower()
        # NCCL moves device memory only; gloo (and the rest) host memory.
        self.device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" \
            else torch.device("cpu")
        self.phase = "setup"

    def global_rank(self, group_rank: int) -> int:
        return group_rank if self.group is None else dist.get_global_rank(self.group, group_rank)

    def _fail(self, exc: BaseException):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        secs = self.timeout.total_seconds()
        if "timed out" in text.lower() or "timeout" in text.lower():
            why = f"the other ranks did not answer within timeout={secs:g}s"
        else:
            why = "the connection to another rank failed"
        return RankFailureError(
            f"pcoreset.distributed.select on rank {self.rank} of {self.world}: {why} during "
            f"{self.phase} ({text}). A rank died, hung, raised an error of its own, or is still "
            "busy with local work longer than the timeout; check the other ranks' logs, or raise "
            "`timeout`.", self.phase)

    def _run(self, start: Callable[[], Any]):
        try:
            work = start()
            work.wait(self.timeout)
        except RuntimeError as exc:  # DistBackendError/DistNetworkError subclass it
            raise self._fail(exc) from exc

    def start(self, start: Callable[[], Any]):
        try:
            return start()
        except RuntimeError as exc:
            raise self._fail(exc) from exc

    def wait(self, work) -> None:
        try:
            work.wait(self.timeout)
        except RuntimeError as exc:
            raise self._fail(exc) from exc

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """(world, *t.shape): every rank's `t`."""
        t = t.to(self.device)
        out = [torch.empty_like(t) for _ in range(self.world)]
        self._run(lambda: dist.all_gather(out, t, group=self.group, async_op=True))
        return torch.stack(out).cpu()

    def all_reduce_max(self, t: torch.Tensor) -> None:
        self._run(lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group, async_op=True))

    def broadcast_start(self, t: torch.Tensor, src: int):
        return self.start(lambda: dist.broadcast(t, src=self.global_rank(src), group=self.group,
                                                 async_op=True))

    def broadcast(self, t: torch.Tensor, src: int) -> None:
        self.wait(self.broadcast_start(t, src))


def _as_timeout(timeout: Any) -> datetime.timedelta:
    if isinstance(timeout, datetime.timedelta):
        secs = timeout.total_seconds()
    elif isinstance(timeout, numbers.Real) and not isinstance(timeout, bool):
        secs = float(timeout)
    else:
        raise InvalidTypeError(f"timeout must be seconds (a number) or a datetime.timedelta, got {timeout!r}")
    if not np.isfinite(secs) or secs <= 0:
        raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return datetime.timedelta(seconds=secs)


# --------------------------------------------------------------------------- agreement


@dataclass
class _Local:
    """What this rank brings: its validated shard, or the error it hit."""

    problem: Optional[Problem]
    labeled: np.ndarray  # local rows, or the global list with labeled_is_global
    budget: int
    error: Optional[BaseException]
    centers_from: int = -1  # -1: every rank passes the same centers; else the rank that has them


def _check_local(local_probs, local_labeled_idx, budget, labeled_is_global, from_logits, temperature,
                 prune, num_threads, progress, simplex_atol, centers=None, centers_from=None) -> _Local:
    src = -1
    try:
        if centers_from is not None:
            if isinstance(centers_from, bool) or not isinstance(centers_from, numbers.Integral) \
                    or centers_from < 0:
                raise InvalidInputError(f"centers_from must be a rank (an integer >= 0) or None, "
                                        f"got {centers_from!r}")
            src = int(centers_from)
        if not isinstance(labeled_is_global, (bool, np.bool_)):
            raise InvalidTypeError(f"labeled_is_global must be True or False, got {labeled_is_global!r}")
        b = check_budget(budget, np.iinfo(np.int64).max)  # type and sign; the pool size is global
        # Local indices are checked against the shard here; global ones
        # against the global pool once the shard sizes are known.
        local_idx = None if labeled_is_global else local_labeled_idx
        problem = make_problem(local_probs, local_idx, 0, simplex=True, from_logits=from_logits,
                               temperature=temperature, prune=prune, num_threads=num_threads,
                               progress=progress, simplex_atol=simplex_atol, name="local_probs",
                               centers=centers)
        if labeled_is_global:
            labeled = check_labeled(local_labeled_idx, 1 << 62, problem.device, name="local_labeled_idx")
        else:
            labeled = problem.labeled
        return _Local(problem, labeled, b, None, src)
    except (InvalidInputError, InvalidTypeError) as exc:
        return _Local(None, np.zeros(0, np.int64), -1, exc, src)


def _labeled_hash(labeled: np.ndarray) -> int:
    digest = hashlib.blake2b(np.sort(labeled).astype("<i8").tobytes(), digest_size=8).digest()
    return int(np.frombuffer(digest, dtype="<i8")[0])


_FIELDS = ("protocol", "ok", "n", "c", "dtype", "budget", "from_logits", "temperature_bits",
           "labeled_is_global", "labeled_count", "labeled_hash", "centers_from", "centers_count",
           "centers_hash")


def _centers_hash(centers: Optional[np.ndarray]) -> int:
    if centers is None:
        return 0
    digest = hashlib.blake2b(np.ascontiguousarray(centers, dtype="<f8").tobytes(), digest_size=8).digest()
    return int(np.frombuffer(digest, dtype="<i8")[0])


def _meta_vector(local: _Local, labeled_is_global: bool) -> torch.Tensor:
    p = local.problem
    msg = b""
    if local.error is not None:
        msg = f"{type(local.error).__name__}: {local.error}".encode("utf-8")[:_MSG_BYTES]
    values = {
        "protocol": _PROTOCOL,
        "ok": int(local.error is None),
        "n": p.n if p else -1,
        "c": p.c if p else -1,
        "dtype": _DTYPE_CODE[p.dtype] if p else -1,
        "budget": local.budget,
        "from_logits": int(p.from_logits) if p else -1,
        "temperature_bits": int(np.float64(p.temperature).view(np.int64)) if p else -1,
        "labeled_is_global": int(bool(labeled_is_global)) if local.error is None else -1,
        "labeled_count": int(local.labeled.size),
        "labeled_hash": _labeled_hash(local.labeled) if labeled_is_global and p else 0,
        "centers_from": local.centers_from,
        "centers_count": 0 if p is None or p.centers is None else int(p.centers.shape[0]),
        "centers_hash": _centers_hash(p.centers) if p else 0,
    }
    head = np.array([values[f] for f in _FIELDS], dtype=np.int64)
    text = np.frombuffer(msg.ljust(_MSG_BYTES, b"\0"), dtype=np.int64)
    return torch.from_numpy(np.concatenate([head, text]))


def _ranks_by_value(values: List[Any], show: Callable[[Any], str] = str) -> str:
    groups: Dict[Any, List[int]] = {}
    for r, v in enumerate(values):
        groups.setdefault(v, []).append(r)
    parts = []
    for v, ranks in groups.items():
        who = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks}"
        parts.append(f"{show(v)} on {who}")
    return ", ".join(parts)


@dataclass
class _Layout:
    """The agreed shape of the global problem (identical on every rank)."""

    sizes: np.ndarray  # rows per rank
    offsets: np.ndarray  # first global row of each rank
    n: int
    c: int
    dtype: str
    budget: int
    labeled_counts: np.ndarray  # labeled rows held by each rank
    labeled_total: int
    centers_count: int = 0  # initial center vectors (the same on every rank once shared)
    centers_from: int = -1  # the rank that broadcasts them, or -1 (every rank has them)

    def owner(self, g: int) -> int:
        """The rank holding global row g (empty shards hold nothing)."""
        for r in range(len(self.sizes)):
            if self.offsets[r] <= g < self.offsets[r] + self.sizes[r]:
                return r
        raise AssertionError(f"global row {g} is outside the pool of {self.n} rows")


def _agree(comm: _Comm, local: _Local, labeled_is_global: bool) -> _Layout:
    """One all-gather of every rank's metadata; every rank raises the same
    error if any rank's input was bad or the ranks disagree."""
    table = comm.all_gather(_meta_vector(local, labeled_is_global)).numpy()
    col = {f: table[:, i] for i, f in enumerate(_FIELDS)}
    world = comm.world
    if len(set(col["protocol"].tolist())) > 1:
        raise RankMismatchError("ranks run different pcoreset versions (metadata protocol "
                                f"{_ranks_by_value(col['protocol'].tolist())})")
    bad = [r for r in range(world) if not col["ok"][r]]
    if bad:
        if local.error is not None:
            raise local.error
        first = bad[0]
        msg = table[first, len(_FIELDS):].tobytes().rstrip(b"\0").decode("utf-8", "replace")
        others = f" (ranks {bad} all rejected their input)" if len(bad) > 1 else ""
        raise InvalidInputError(f"pcoreset.distributed.select: rank {first} rejected its input: {msg}{others}")

    def must_agree(field: str, name: str, show: Callable[[Any], str] = str) -> None:
        values = col[field].tolist()
        if len(set(values)) > 1:
            raise RankMismatchError(f"{name} differs across ranks: {_ranks_by_value(values, show)}; "
                                    f"every rank must pass the same {name}")

    codes = {v: k for k, v in _DTYPE_CODE.items()}
    must_agree("c", "C (the number of columns of local_probs)", lambda v: f"C={v}")
    must_agree("dtype", "dtype of local_probs", lambda v: codes[v])
    must_agree("budget", "budget", lambda v: f"budget={v}")
    must_agree("from_logits", "from_logits", lambda v: f"from_logits={bool(v)}")
    must_agree("temperature_bits", "temperature",
               lambda v: f"temperature={np.int64(v).view(np.float64)!r}")
    must_agree("labeled_is_global", "labeled_is_global", lambda v: f"labeled_is_global={bool(v)}")
    must_agree("centers_from", "centers_from", lambda v: f"centers_from={None if v < 0 else v}")
    src = int(col["centers_from"][0])
    if src >= world:
        raise InvalidInputError(f"centers_from={src} is not a rank of this group (world size {world})")
    if src < 0:
        pairs = list(zip(col["centers_count"].tolist(), col["centers_hash"].tolist()))
        if len(set(pairs)) > 1:
            raise RankMismatchError(
                "centers differ across ranks: "
                f"{_ranks_by_value(col['centers_count'].tolist(), lambda v: f'{v} center vectors')} "
                "(or the same count with different values); pass the same centers on every rank, or "
                "pass them on one rank with centers_from=<that rank>")
        n_centers = int(col["centers_count"][0])
    else:
        n_centers = int(col["centers_count"][src])

    sizes = col["n"].astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    n = int(sizes.sum())
    if labeled_is_global:
        pairs = list(zip(col["labeled_count"].tolist(), col["labeled_hash"].tolist()))
        if len(set(pairs)) > 1:
            raise RankMismatchError(
                "local_labeled_idx differs across ranks with labeled_is_global=True: "
                f"{_ranks_by_value(col['labeled_count'].tolist(), lambda v: f'{v} indices')} "
                "(or the same count with different indices); every rank must pass the same "
                "complete list of global indices, or pass each rank's own local indices with "
                "labeled_is_global=False")
        labeled = check_labeled(local.labeled, n, "cpu", name="local_labeled_idx")  # global range
        counts = np.array([np.count_nonzero((labeled >= o) & (labeled < o + s))
                           for o, s in zip(offsets, sizes)], dtype=np.int64)
    else:
        counts = col["labeled_count"].astype(np.int64)
    total = int(counts.sum())
    budget = int(col["budget"][0])
    if budget > n - total:
        raise PoolExhaustedError(n - total, budget)
    return _Layout(sizes, offsets, n, int(col["c"][0]), codes[int(col["dtype"][0])], budget, counts, total,
                   n_centers, src)


def _share_centers(comm: _Comm, problem: Problem, layout: _Layout) -> Problem:
    """With centers_from=r, rank r's center vectors (float64, as the kernels
    see them) are broadcast to every rank, in chunks."""
    if layout.centers_from < 0 or layout.centers_count == 0 or comm.world == 1:
        return problem
    m, c = layout.centers_count, layout.c
    out = np.empty((m, c), dtype=np.float64)
    chunk = max(1, _GATHER_BYTES // (8 * c))
    for lo in range(0, m, chunk):
        hi = min(m, lo + chunk)
        if comm.rank == layout.centers_from:
            buf = torch.from_numpy(np.ascontiguousarray(problem.centers[lo:hi]))
        else:
            buf = torch.empty((hi - lo, c), dtype=torch.float64)
        buf = buf.to(comm.device)
        comm.broadcast(buf, layout.centers_from)
        out[lo:hi] = buf.cpu().numpy()
    return replace(problem, centers=out)


# --------------------------------------------------------------------------- local kernel


def _local_state(problem: Problem):
    """The running-minimum state over this rank's shard, seeded with its own
    labeled rows (exact nearest center, or exact refinement of GEMM candidates
    for large products, as in single-process `select`)."""
    if problem.device == "cpu":
        from .backends import cpu

        if cpu._C is None:
            raise BackendUnavailableError("pcoreset.distributed.select needs the C++ kernel",
                                          {"cpu": cpu.CpuBackend().unavailable()})
        state = cpu.make_state(problem)
        cpu.seed(state, problem)
        return state
    # GPU shards: the CUDA module, when it offers the same state interface
    # (seed_rows, seed_vectors, row_vector, mean_vector, farthest_from,
    # current_best, push_center, push_row).
    try:
        from .backends import cuda as cuda_backend
    except ImportError as exc:
        raise BackendUnavailableError("pcoreset.distributed.select cannot run a shard on "
                                      f"{problem.device}", {"cuda": f"no CUDA module ({exc})"}) from exc
    make, seed = getattr(cuda_backend, "make_state", None), getattr(cuda_backend, "seed", None)
    if make is None or seed is None:
        raise BackendUnavailableError(
            f"pcoreset.distributed.select cannot run a shard on {problem.device}",
            {"cuda": "the CUDA backend has no make_state/seed state interface; pass a CPU shard"})
    state = make(problem)
    seed(state, problem)
    return state


def _row_values(state, rows: range) -> np.ndarray:
    """(len(rows), C) float64: rows as the kernel sees them (exact)."""
    out = np.empty((len(rows), state.c), dtype=np.float64)
    for k, i in enumerate(rows):
        out[k] = state.row_vector(i)
    return out


def _seed_remote_labeled(comm: _Comm, state, problem: Problem, local_labeled: np.ndarray,
                         layout: _Layout) -> None:
    """Every rank's labeled rows become centers on every other rank: gathered
    once, in chunks of at most _GATHER_BYTES, as exact float64 row values."""
    counts = layout.labeled_counts
    if int(counts.max(initial=0)) == 0 or comm.world == 1:
        return
    c = layout.c
    chunk = max(1, min(int(counts.max()), _GATHER_BYTES // (8 * c * comm.world)))
    rounds = -(-int(counts.max()) // chunk)
    for k in range(rounds):
        lo = k * chunk
        mine = local_labeled[lo:lo + chunk]
        buf = np.zeros((chunk, c), dtype=np.float64)
        if mine.size:
            buf[:mine.size] = _row_values(state, mine.tolist())
        gathered = comm.all_gather(torch.from_numpy(buf)).numpy()
        if state is None:
            continue
        others = [gathered[r, :max(0, min(chunk, int(counts[r]) - lo))]
                  for r in range(comm.world) if r != comm.rank]
        vecs = np.concatenate(others) if others else np.zeros((0, c))
        if vecs.shape[0]:
            vecs = np.ascontiguousarray(vecs)
            if problem is None or _start.use_exact(problem.n, vecs.shape[0], problem.c):
                state.seed_vectors(vecs)
            else:  # a large product: certified candidates, refined exactly in the kernel
                state.seed_vectors_with_candidates(
                    vecs, _start.nearest_candidates(problem, centers=vecs, values=_values_of(state, problem)))


def _values_of(state, problem: Problem):
    """The start's view of the rows: the CPU kernel's own values."""
    if problem.device == "cpu":
        from .backends import cpu

        return cpu.kernel_values(state)
    return None


def _block_sum(problem: Problem, start: int) -> np.ndarray:
    """Sum of local rows [start, start + 4096) as the kernel's mean_vector
    accumulates one block (float64, rows in order, starting from 0.0). A
    one-block state's mean is that sum divided by 4096, a power of two, so
    multiplying back is exact unless the mean is subnormal."""
    from . import _C

    rows = problem.numpy_view()[start:start + _MEAN_BLOCK]
    sub = _C.KCenterState(rows, problem.dtype, problem.from_logits, problem.temperature, False, 1)
    mean = sub.mean_vector()
    tiny = (mean != 0) & (np.abs(mean) < np.finfo(np.float64).tiny)
    if tiny.any():
        return _seq_sum(np.zeros(problem.c), _row_values(sub, range(_MEAN_BLOCK)))
    return mean * float(_MEAN_BLOCK)


def _seq_sum(acc: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """acc + rows[0] + rows[1] + ... strictly in order (np.add.accumulate
    never reorders), as the kernel's `acc[j] += value` loop."""
    if rows.shape[0] == 0:
        return acc
    return np.add.accumulate(np.vstack([acc[None, :], rows]), axis=0)[-1]


def _global_mean(comm: _Comm, state, problem: Optional[Problem], layout: _Layout) -> np.ndarray:
    """The mean of the whole pool with exactly the single-process arithmetic.

    The kernel sums each global block of 4096 rows in row order from 0.0,
    adds the block sums in block order, and divides by N. Blocks cross shard
    boundaries, so the sums cannot be combined by an all-reduce; instead the
    running pair (sum of finished blocks, sum of the open block) passes from
    rank to rank in order (one broadcast per non-empty rank, once per
    selection). Each rank prepares its part first: the rows that finish the
    open block (at most 4095, as exact row values), the sums of its whole
    blocks, and the rows that open the next block.
    """
    c, block = layout.c, _MEAN_BLOCK
    off, n = int(layout.offsets[comm.rank]), int(layout.sizes[comm.rank])
    head = min(n, (-off) % block)  # rows that continue a block begun on an earlier rank
    full = (n - head) // block
    if n:
        head_rows = _row_values(state, range(head))
        block_sums = [_block_sum(problem, head + k * block) for k in range(full)]
        tail_sum = _seq_sum(np.zeros(c), _row_values(state, range(head + full * block, n)))
    running = torch.zeros(2, c, dtype=torch.float64)
    for r in range(comm.world):
        if layout.sizes[r] == 0:
            continue
        if r == comm.rank:
            done, open_sum = running[0].numpy().copy(), running[1].numpy().copy()
            open_sum = _seq_sum(open_sum, head_rows)
            if head and (off + head) % block == 0:  # this rank finished the open block
                done, open_sum = done + open_sum, np.zeros(c)
            for s in block_sums:
                done = done + s
            if head + full * block < n:  # the rank's last rows open a new block
                open_sum = tail_sum
            running = torch.from_numpy(np.stack([done, open_sum]))
        buf = running.to(comm.device)
        comm.broadcast(buf, r)
        running = buf.cpu()
    done, open_sum = running[0].numpy(), running[1].numpy()
    if layout.n % block:
        done = done + open_sum
    return done / float(layout.n)


# --------------------------------------------------------------------------- the greedy loop


class _Argmax:
    """The global winner of one step from every rank's local best.

    float32 distances: one all_reduce(MAX) of an int64 key, the distance's
    bits (order-preserving for non-negative floats) above the inverted global
    index. float64 distances (or pools of 2^32 - 1 rows or more) do not fit
    one 64-bit key; there every rank's (distance bits, index) pair is
    all-gathered (16 bytes per rank, still one collective) and the same
    winner is chosen on every rank.
    """

    def __init__(self, comm: _Comm, layout: _Layout) -> None:
        self.comm = comm
        self.packed = layout.dtype != "float64" and layout.n < _KEY_INDEX_LIMIT
        self.key = torch.zeros(1 if self.packed else 2, dtype=torch.int64, device=comm.device)

    def __call__(self, row: int, dist2: float, offset: int):
        if self.packed:
            if row < 0:
                key = _NO_KEY
            else:
                bits = int(np.float32(dist2).view(np.uint32))
                key = (bits << 32) | (_KEY_INDEX_LIMIT - (offset + row))
            self.key.fill_(key)
            self.comm.all_reduce_max(self.key)
            best = int(self.key.item())
            if best < 0:
                raise AssertionError("no eligible row on any rank")
            g = _KEY_INDEX_LIMIT - (best & _KEY_INDEX_LIMIT)
            return g, float(np.uint32(best >> 32).view(np.float32))
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


def _progress(progress, budget: int, rank: int):
    if not progress:
        return lambda done: None, lambda: None
    if callable(progress):
        return progress, lambda: None
    if rank != 0:
        return lambda done: None, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=budget, desc="pcoreset select (distributed)", unit="pick")
    return (lambda done: bar.update(done - bar.n)), bar.close


class _Stepper:
    """The distributed greedy loop, resumable: `take(k)` makes the next k
    picks. As in the kernels, the last pick of a call stays pending (not yet
    a center) until the next call pushes it."""

    def __init__(self, comm: _Comm, state, problem: Optional[Problem], layout: _Layout, stats) -> None:
        self.comm, self.state, self.problem, self.layout = comm, state, problem, layout
        self.off = int(layout.offsets[comm.rank])
        self.argmax = _Argmax(comm, layout)
        vec_dtype = torch.float64 if layout.dtype == "float64" else torch.float32  # exact center values
        self.center = torch.zeros(layout.c, dtype=vec_dtype, device=comm.device)
        self.best = None  # (global row, dist2) of the next pick
        self.pending: Optional[int] = None
        self.stats = stats
        for key in ("update_s", "reduce_s", "broadcast_s"):
            stats.setdefault(key, 0.0)
        stats.setdefault("steps", 0)

    def _first(self) -> None:
        comm, state, layout = self.comm, self.state, self.layout
        t0 = time.perf_counter()
        if layout.labeled_total == 0 and layout.centers_count == 0:
            comm.phase = "the pool mean (first pick)"
            mean = _global_mean(comm, state, self.problem, layout)
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

    def take(self, k: int, progress):
        picks = np.empty(k, dtype=np.int64)
        radii2 = np.empty(k, dtype=np.float64)
        if k == 0:
            return picks, radii2
        if self.best is None:
            self._first()
        elif self.pending is not None:
            self.comm.phase = "the pending pick"
            self._push(self.pending)
            self.pending = None
        report, close = _progress(progress, k, self.comm.rank)
        try:
            for t in range(k):
                g, d2 = self.best
                picks[t], radii2[t] = g, d2
                report(t + 1)
                if t + 1 == k:
                    self.pending = int(g)  # pushed by the next call, if any
                    break
                self.comm.phase = f"step {t + 1} of {k}"
                self._push(int(g))
        finally:
            close()
        return picks, radii2


def _setup(local_probs, local_labeled_idx, budget, group, labeled_is_global, centers, centers_from,
           from_logits, temperature, timeout, prune, num_threads, progress, simplex_atol):
    """Validation on every rank, one agreement all-gather, the shared centers
    and this rank's labeled rows: (comm, layout, problem, stats)."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("pcoreset.distributed needs an initialised torch.distributed "
                           "process group: call torch.distributed.init_process_group first "
                           "(torchrun sets the environment for it)")
    comm = _Comm(group, _as_timeout(timeout))
    local = _check_local(local_probs, local_labeled_idx, budget, labeled_is_global, from_logits,
                         temperature, prune, num_threads, progress, simplex_atol, centers, centers_from)
    layout = _agree(comm, local, bool(labeled_is_global))
    problem = _share_centers(comm, local.problem, layout)
    off, n_local = int(layout.offsets[comm.rank]), int(layout.sizes[comm.rank])
    if labeled_is_global:
        mine = local.labeled[(local.labeled >= off) & (local.labeled < off + n_local)] - off
        problem = replace(problem, labeled=np.sort(mine))
    stats: Dict[str, float] = {"rank": comm.rank, "world": comm.world, "n_local": n_local, "n": layout.n}
    return comm, layout, problem, stats


def _seed(comm: _Comm, problem: Problem, layout: _Layout, stats):
    """This rank's state, seeded with every rank's labeled rows and the
    center vectors (None for an empty shard)."""
    comm.phase = "seeding the labeled rows"
    t0 = time.perf_counter()
    state = _local_state(problem) if int(layout.sizes[comm.rank]) else None
    _seed_remote_labeled(comm, state, problem, problem.labeled, layout)
    stats["seed_s"] = time.perf_counter() - t0
    return state


class Selector:
    """Incremental selection over a pool sharded across the ranks of a
    `torch.distributed` group: `next(k)`, called with the same k on every
    rank, returns the next k global picks, the same on every rank, and the
    picks of successive calls equal one `select` of the total budget.

    Arguments as for `pcoreset.distributed.select` (without a budget).
    Attributes: picks, radii (so far, NumPy), n_available.
    """

    def __init__(self, local_probs: Any, local_labeled_idx: Any = None, *, group=None,
                 labeled_is_global: bool = False, centers: Any = None, centers_from: Optional[int] = None,
                 from_logits: bool = False, temperature: float = 1.0,
                 timeout: Union[float, datetime.timedelta] = DEFAULT_TIMEOUT_S, prune: bool = True,
                 num_threads: int = 0, progress: Union[bool, Callable[[int], None], None] = None,
                 simplex_atol: Optional[float] = None):
        self._comm, self._layout, self._problem, self.stats = _setup(
            local_probs, local_labeled_idx, 0, group, labeled_is_global, centers, centers_from, from_logits,
            temperature, timeout, prune, num_threads, progress, simplex_atol)
        state = _seed(self._comm, self._problem, self._layout, self.stats)
        self._stepper = _Stepper(self._comm, state, self._problem, self._layout, self.stats)
        self._progress = progress
        self._picks: List[int] = []
        self._radii2: List[float] = []

    @property
    def n_available(self) -> int:
        return int(self._layout.n - self._layout.labeled_total - len(self._picks))

    @property
    def picks(self) -> np.ndarray:
        return np.asarray(self._picks, dtype=np.int64)

    @property
    def radii(self) -> np.ndarray:
        return np.sqrt(np.asarray(self._radii2, dtype=np.float64))

    def next(self, k: int):
        """The next k global picks (int64, in order; NumPy, or a torch tensor
        for torch input), the same on every rank. Every rank must pass the
        same k (checked: a RankMismatchError names the ranks otherwise)."""
        bad = None
        try:
            k = check_budget(k, np.iinfo(np.int64).max, name="k")
        except (InvalidInputError, InvalidTypeError) as exc:
            bad = exc
        mine = torch.tensor([-1 if bad is not None else k], dtype=torch.int64)
        table = self._comm.all_gather(mine.to(self._comm.device)).cpu().flatten().tolist()
        if bad is not None:
            raise bad
        if -1 in table:
            raise InvalidInputError(f"rank {table.index(-1)} passed a bad k to Selector.next")
        if len(set(table)) > 1:
            raise RankMismatchError(f"k differs across ranks: {_ranks_by_value(table, lambda v: f'k={v}')}; "
                                    "every rank must pass the same k")
        if k > self.n_available:
            raise PoolExhaustedError(self.n_available, k, what="k")
        picks, radii2 = self._stepper.take(k, self._progress)
        self._picks.extend(picks.tolist())
        self._radii2.extend(radii2.tolist())
        from .select import _to_kind

        return _to_kind(picks, self._problem, np.int64)


# --------------------------------------------------------------------------- public


def select(local_probs: Any, local_labeled_idx: Any, budget: int, *, group=None,
           labeled_is_global: bool = False, centers: Any = None, centers_from: Optional[int] = None,
           from_logits: bool = False, temperature: float = 1.0,
           timeout: Union[float, datetime.timedelta] = DEFAULT_TIMEOUT_S, return_radii: bool = False,
           prune: bool = True, num_threads: int = 0,
           progress: Union[bool, Callable[[int], None], None] = None,
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
        state = _seed(comm, problem, layout, stats)
        picks, radii2 = _Stepper(comm, state, problem, layout, stats).take(layout.budget, progress)
    stats["total_s"] = time.perf_counter() - t_start
    last_stats.clear()
    last_stats.update(stats)

    from .select import _to_kind

    out = _to_kind(picks, problem, np.int64)
    if not return_radii:
        return out
    radii = _to_kind(radii2, problem, np.float64)
    radii = radii.sqrt() if isinstance(radii, torch.Tensor) else np.sqrt(radii)
    return out, radii


# --------------------------------------------------------------------------- CLI


def add_select_distributed_arguments(parser) -> None:
    """The arguments `main_select_distributed` reads, for `pcoreset select --distributed`."""
    parser.add_argument("--shards", nargs="+", required=True,
                        help="one .npy shard per rank in rank order, or one pattern with {rank}")
    parser.add_argument("--labeled", default=None,
                        help="global labeled indices: a .npy integer array or a text file, one per line")
    parser.add_argument("--budget", type=int, required=True)
    parser.add_argument("--from-logits", action="store_true")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--out", required=True, help="output .npy of global picks (written by rank 0)")
    parser.add_argument("--radii-out", default=None, help="optional .npy of the radii (rank 0)")
    parser.add_argument("--dist-backend", default="gloo", help="torch.distributed backend (gloo or nccl)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="seconds a collective may wait for the other ranks")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per rank (0 = all)")


from ._paths import read_index_file as _read_labeled  # noqa: E402  (checked, one-line errors)


def _save_npy(path: str, array: np.ndarray) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)


def main_select_distributed(args) -> int:
    """`pcoreset select --distributed`: run under torchrun, one shard per rank.

    Initialises the default process group from the torchrun environment if
    it is not yet initialised, selects with global labeled indices, and has
    rank 0 write the picks (and radii) atomically. Returns the exit code.
    """
    created = False
    if not dist.is_initialized():
        dist.init_process_group(args.dist_backend, timeout=datetime.timedelta(seconds=args.timeout))
        created = True
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        shards = list(args.shards)
        if len(shards) == 1 and "{rank}" in shards[0]:
            path = shards[0].format(rank=rank)
        elif len(shards) == world:
            path = shards[rank]
        else:
            raise InvalidInputError(f"--shards has {len(shards)} files for {world} ranks; pass one per "
                                    "rank or one pattern with {rank}")
        want_radii = args.radii_out is not None
        centers = None
        if getattr(args, "centers", None):
            centers = np.load(args.centers, mmap_mode="r", allow_pickle=False)  # every rank reads it
        if getattr(args, "stop_radius", None) is not None:
            raise InvalidInputError("--stop-radius is not available with --distributed; pass --budget")
        result = select(path, _read_labeled(args.labeled), args.budget, labeled_is_global=True, centers=centers,
                        from_logits=args.from_logits, temperature=args.temperature,
                        timeout=args.timeout, return_radii=want_radii, num_threads=args.threads)
        picks, radii = result if want_radii else (result, None)
        if rank == 0:
            _save_npy(args.out, np.asarray(picks))
            if want_radii:
                _save_npy(args.radii_out, np.asarray(radii))
            print(f"picked {len(picks)} rows of {last_stats.get('n')} on {world} ranks "
                  f"in {last_stats.get('total_s', 0.0):.2f}s -> {args.out}")
        return 0
    finally:
        if created:
            dist.destroy_process_group()
