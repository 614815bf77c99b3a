"""What the ranks must agree on: every rank validates its own shard, one
all-gather of a fixed-size metadata vector compares the arguments that must
be the same everywhere (and carries any rank's input error to the others),
and the shared center vectors are broadcast from the rank that has them."""
from __future__ import annotations

import hashlib
import numbers
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import numpy as np
import torch

from .._problem import DTYPE_CODE, Problem, check_budget, check_labeled, make_problem
from ..errors import InvalidInputError, InvalidTypeError, PoolExhaustedError, RankMismatchError
from ._comm import Comm, ranks_by_value

PROTOCOL = 2  # bump when the metadata layout changes (a mixed install is then caught)
_MSG_BYTES = 512  # room for one rank's input error in the metadata all-gather
GATHER_BYTES = 64 << 20  # all-gather and broadcast buffers for row values


@dataclass
class Local:
    """What this rank brings: its validated shard, or the error it hit."""

    problem: Optional[Problem]
    labeled: np.ndarray  # local rows, or the global list with labeled_is_global
    budget: int
    error: Optional[BaseException]
    centers_from: int = -1  # -1: every rank passes the same centers; else the rank that has them


def check_local(local_probs, local_labeled_idx, budget, labeled_is_global, from_logits, temperature,
                 prune, num_threads, progress, simplex_atol, centers=None, centers_from=None) -> Local:
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
        return Local(problem, labeled, b, None, src)
    except (InvalidInputError, InvalidTypeError) as exc:
        return Local(None, np.zeros(0, np.int64), -1, exc, src)


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


def _meta_vector(local: Local, labeled_is_global: bool) -> torch.Tensor:
    p = local.problem
    msg = b""
    if local.error is not None:
        msg = f"{type(local.error).__name__}: {local.error}".encode("utf-8")[:_MSG_BYTES]
    values = {
        "protocol": PROTOCOL,
        "ok": int(local.error is None),
        "n": p.n if p else -1,
        "c": p.c if p else -1,
        "dtype": DTYPE_CODE[p.dtype] if p else -1,
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


@dataclass
class Layout:
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


def agree(comm: Comm, local: Local, labeled_is_global: bool) -> Layout:
    """One all-gather of every rank's metadata; every rank raises the same
    error if any rank's input was bad or the ranks disagree."""
    table = comm.all_gather(_meta_vector(local, labeled_is_global)).numpy()
    col = {f: table[:, i] for i, f in enumerate(_FIELDS)}
    world = comm.world
    if len(set(col["protocol"].tolist())) > 1:
        raise RankMismatchError("ranks run different pcoreset versions (metadata protocol "
                                f"{ranks_by_value(col['protocol'].tolist())})")
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
            raise RankMismatchError(f"{name} differs across ranks: {ranks_by_value(values, show)}; "
                                    f"every rank must pass the same {name}")

    codes = {v: k for k, v in DTYPE_CODE.items()}
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
                f"{ranks_by_value(col['centers_count'].tolist(), lambda v: f'{v} center vectors')} "
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
                f"{ranks_by_value(col['labeled_count'].tolist(), lambda v: f'{v} indices')} "
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
    return Layout(sizes, offsets, n, int(col["c"][0]), codes[int(col["dtype"][0])], budget, counts, total,
                   n_centers, src)


def share_centers(comm: Comm, problem: Problem, layout: Layout) -> Problem:
    """With centers_from=r, rank r's center vectors (float64, as the kernels
    see them) are broadcast to every rank, in chunks."""
    if layout.centers_from < 0 or layout.centers_count == 0 or comm.world == 1:
        return problem
    m, c = layout.centers_count, layout.c
    out = np.empty((m, c), dtype=np.float64)
    chunk = max(1, GATHER_BYTES // (8 * c))
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
