"""This rank's shard: its kernel state (from the backend registry), the
start across ranks (every rank's labeled rows become centers everywhere),
and the pool mean with the single-process arithmetic."""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np
import torch

from .. import _start, backends
from .._problem import Problem
from ..backends.base import MEAN_BLOCK_ROWS
from ..errors import BackendUnavailableError
from ._agree import GATHER_BYTES, Layout
from ._comm import Comm

# What the exchange needs from a state besides the protocol: exact row
# values to broadcast, the pool mean and the farthest row from it.
_SHARD_METHODS = ("row_vector", "mean_vector", "farthest_from")


def local_backend(problem: Problem):
    """The backend that runs this rank's shard, from the registry: the cpu
    kernel for host shards, the cuda kernel for device shards (the states
    that offer row_vector, mean_vector and farthest_from)."""
    name = "cpu" if problem.device == "cpu" else "cuda"
    backend = backends.get(name)
    why = backends.why_not(backend, problem) or backend.state_unsupported(problem)
    if why:
        raise BackendUnavailableError(f"pcoreset.distributed cannot run a shard on {problem.device}", {name: why})
    return backend


def local_state(problem: Problem):
    """The running-minimum state over this rank's shard, with its own labeled
    rows as centers (the start, as in single-process `select`)."""
    backend = local_backend(problem)
    state = backend.make_state(problem)
    missing = [m for m in _SHARD_METHODS if not hasattr(state, m)]
    if missing:
        raise BackendUnavailableError(f"pcoreset.distributed cannot run a shard on {problem.device}",
                                      {backend.name: f"its state lacks {missing}"})
    _start.start_state(backend, state, problem)
    return state


def row_values(state, rows) -> np.ndarray:
    """(len(rows), C) float64: rows as the kernel sees them (exact)."""
    out = np.empty((len(rows), state.c), dtype=np.float64)
    for k, i in enumerate(rows):
        out[k] = state.row_vector(i)
    return out


def share_rows(comm: Comm, state, problem: Optional[Problem], local_rows: np.ndarray, counts: np.ndarray,
               c: int) -> None:
    """Every rank's `local_rows` (counts[r] on rank r; they are centers of
    their own rank's state already) become centers on every other rank:
    gathered in chunks of at most GATHER_BYTES, as exact float64 row values,
    and added by the start's machinery (exact pass or certified candidates)."""
    if int(counts.max(initial=0)) == 0 or comm.world == 1:
        return
    chunk = max(1, min(int(counts.max()), GATHER_BYTES // (8 * c * comm.world)))
    rounds = -(-int(counts.max()) // chunk)
    for k in range(rounds):
        lo = k * chunk
        mine = local_rows[lo:lo + chunk]
        buf = np.zeros((chunk, c), dtype=np.float64)
        if mine.size:
            buf[:mine.size] = row_values(state, mine.tolist())
        gathered = comm.all_gather(torch.from_numpy(buf)).numpy()
        if state is None:
            continue
        others = [gathered[r, :max(0, min(chunk, int(counts[r]) - lo))]
                  for r in range(comm.world) if r != comm.rank]
        vecs = np.concatenate(others) if others else np.zeros((0, c))
        if vecs.shape[0]:
            _start.add_vectors(local_backend(problem), state, problem, np.ascontiguousarray(vecs))


def start_everywhere(comm: Comm, problem: Problem, layout: Layout, rows: Optional[np.ndarray] = None):
    """This rank's state with every rank's center rows (None for an empty
    shard): its own `rows` (default: its labeled rows) and the center
    vectors by the start, then the other ranks' rows."""
    if rows is None:
        local, counts = problem.labeled, layout.labeled_counts
    else:
        local = rows
        counts = comm.all_gather(torch.tensor([local.size], dtype=torch.int64)).flatten().numpy()
    state = None
    if int(layout.sizes[comm.rank]):
        state = local_state(replace(problem, labeled=np.asarray(local, dtype=np.int64)))
    share_rows(comm, state, problem, np.asarray(local, dtype=np.int64), counts, layout.c)
    return state


def _block_sum(problem: Problem, start: int) -> np.ndarray:
    """Sum of local rows [start, start + MEAN_BLOCK_ROWS) as the kernel's
    mean_vector accumulates one block (float64, rows in order, from 0.0): a
    state over that one block gives its mean, the sum divided by a power of
    two, so multiplying back is exact unless the mean is subnormal."""
    rows = problem.x[start:start + MEAN_BLOCK_ROWS]
    sub = replace(problem, x=rows, n=int(rows.shape[0]), labeled=np.zeros(0, np.int64), centers=None,
                  prune=False, num_threads=1)
    state = local_backend(sub).make_state(sub)
    mean = np.asarray(state.mean_vector())
    tiny = (mean != 0) & (np.abs(mean) < np.finfo(np.float64).tiny)
    if tiny.any():
        return seq_sum(np.zeros(problem.c), row_values(state, range(MEAN_BLOCK_ROWS)))
    return mean * float(MEAN_BLOCK_ROWS)


def seq_sum(acc: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """acc + rows[0] + rows[1] + ... strictly in order (np.add.accumulate
    never reorders), as the kernel's `acc[j] += value` loop."""
    if rows.shape[0] == 0:
        return acc
    return np.add.accumulate(np.vstack([acc[None, :], rows]), axis=0)[-1]


def global_mean(comm: Comm, state, problem: Optional[Problem], layout: Layout) -> np.ndarray:
    """The mean of the whole pool with exactly the single-process arithmetic.

    The kernel sums each global block of MEAN_BLOCK_ROWS rows in row order
    from 0.0, adds the block sums in block order, and divides by N. Blocks
    cross shard boundaries, so the sums cannot be combined by an all-reduce;
    instead the running pair (sum of finished blocks, sum of the open block)
    passes from rank to rank in order (one broadcast per non-empty rank, once
    per selection). Each rank prepares its part first: the rows that finish
    the open block (as exact row values), the sums of its whole blocks, and
    the rows that open the next block.
    """
    c, block = layout.c, MEAN_BLOCK_ROWS
    off, n = int(layout.offsets[comm.rank]), int(layout.sizes[comm.rank])
    head = min(n, (-off) % block)  # rows that continue a block begun on an earlier rank
    full = (n - head) // block
    if n:
        head_rows = row_values(state, range(head))
        block_sums = [_block_sum(problem, head + k * block) for k in range(full)]
        tail_sum = seq_sum(np.zeros(c), row_values(state, range(head + full * block, n)))
    running = torch.zeros(2, c, dtype=torch.float64)
    for r in range(comm.world):
        if layout.sizes[r] == 0:
            continue
        if r == comm.rank:
            done, open_sum = running[0].numpy().copy(), running[1].numpy().copy()
            open_sum = seq_sum(open_sum, head_rows)
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
