"""The initial centers of a certified search: read on demand (no copy of all
of them is held), duplicates merged, pivots chosen among them."""
from __future__ import annotations

import numpy as np

from .. import backends
from .._problem import Problem, Values, acc_dtype, make_problem
from . import sizes


def host(a, dtype) -> np.ndarray:
    """A C-contiguous host array of `dtype` from a NumPy array or a torch
    tensor (copied to the host when it lives on a device)."""
    if not isinstance(a, np.ndarray) and hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(a, dtype=dtype)


def host_values(values: Values, dtype) -> Values:
    return lambda rows: host(values(np.asarray(rows, dtype=np.int64)), dtype)


class Centers:
    """m centers; get(ids) gives rows ids (int64) as the kernel sees them
    (NumPy or torch, any float dtype)."""

    def __init__(self, m: int, get) -> None:
        self.m, self.get = int(m), get

    @staticmethod
    def of_problem(problem: Problem, values: Values) -> "Centers":
        """The labeled rows (as `values` gives them), then the center vectors."""
        lab, vecs = problem.labeled, problem.centers
        n_lab = int(lab.size)
        n_vec = 0 if vecs is None else int(vecs.shape[0])
        acc = acc_dtype(problem)

        def get(ids):
            if n_vec == 0:
                return values(lab[ids])
            if n_lab == 0:
                return host(vecs[ids], acc)
            out = np.empty((ids.size, problem.c), dtype=acc)
            low = ids < n_lab
            out[low] = host(values(lab[ids[low]]), acc)
            out[~low] = host(vecs[ids[~low] - n_lab], acc)
            return out

        return Centers(n_lab + n_vec, get)

    @staticmethod
    def rows(values: Values, rows) -> "Centers":
        """Pool rows `rows` as centers."""
        rows = np.asarray(rows, dtype=np.int64)
        return Centers(rows.size, lambda ids: values(rows[ids]))

    @staticmethod
    def array(a) -> "Centers":
        return Centers(a.shape[0], lambda ids: a[ids])


def dedupe(get, m: int, c: int, acc) -> np.ndarray:
    """Sorted indices of the distinct rows among the m centers, each the
    lowest index of its copies: rows are hashed (a 64-bit hash of their bits,
    in chunks), and rows with equal hashes are compared bit for bit (a rare
    collision keeps both rows, which costs time, never exactness)."""
    ints = np.uint32 if np.dtype(acc).itemsize == 4 else np.uint64
    mult = np.random.default_rng(0x5EED).integers(1, 2**63, size=c, dtype=np.uint64) | np.uint64(1)
    h = np.empty(m, dtype=np.uint64)
    step = max(1, sizes.ROW_CHUNK_BYTES // (8 * max(1, c)))
    for s in range(0, m, step):
        e = min(m, s + step)
        h[s:e] = row_hash(get(np.arange(s, e)).view(ints), mult)
    o = np.argsort(h, kind="stable")
    hs = h[o]
    del h
    start = np.ones(m, dtype=bool)
    start[1:] = hs[1:] != hs[:-1]
    del hs
    if start.all():
        return np.arange(m, dtype=np.int64)
    # each sorted position's run head (the run's lowest index: stable sort)
    head = o[np.maximum.accumulate(np.where(start, np.arange(m), 0))]
    dup = np.flatnonzero(~start)
    members, heads = o[dup], head[dup]
    del start
    keep = np.ones(m, dtype=bool)
    odd = []
    for s in range(0, int(members.size), step):
        mem, hd = members[s:s + step], heads[s:s + step]
        same = (get(mem).view(ints) == get(hd).view(ints)).all(1)
        keep[mem[same]] = False
        odd.append(hd[~same])
    # runs whose rows are not all one row (a hash collision): sorted out in
    # full, the lowest index of each distinct row kept
    for hd in np.unique(np.concatenate(odd)) if odd else ():
        ids = np.sort(o[head == hd])
        _, firsts = np.unique(get(ids).view(ints), axis=0, return_index=True)
        keep[ids] = False
        keep[ids[firsts]] = True
    return np.flatnonzero(keep)


def row_hash(bits: np.ndarray, mult: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of bits (unsigned integers): each value
    mixed, weighted by its column's odd multiplier, summed modulo 2^64."""
    z = bits.astype(np.uint64)
    z ^= z >> np.uint64(29)
    z *= mult
    return z.sum(1, dtype=np.uint64)


def pivots(y: np.ndarray, p: int) -> np.ndarray:
    """p rows of y chosen by farthest-first traversal, as indices into y:
    k-center greedy from the pool mean, run on a kernel state over y.
    Any pivots keep the search exact (only how much it prunes depends on
    them), so values whose squared distances could overflow (the kernel
    needs finite distances; select and kcenter_greedy rescale such data
    before the start, other callers may not) are scaled into range first."""
    with np.errstate(over="ignore", invalid="ignore"):
        hi = float(np.abs(y).max()) if y.size else 0.0
        unsafe = hi > 0.0 and not (4.0 * y.shape[1] * hi * hi < float(np.finfo(y.dtype).max))
    if unsafe:
        y = np.ldexp(y.astype(np.float64), -int(np.ceil(np.log2(hi))))  # |values| <= 1
    small = y.shape[0] * y.shape[1] < (1 << 22)  # one thread: a parallel region costs more
    problem = make_problem(y, None, p, simplex=False, from_logits=False, temperature=1.0, prune=True,
                           num_threads=1 if small else 0, progress=None, name="centers")
    picks, _ = backends.choose(problem).make_state(problem).run(p)
    return np.asarray(picks, dtype=np.int64)
