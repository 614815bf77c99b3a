"""The public selection API: `select` (probability rows, PCoreSet) and
`kcenter_greedy` (any vectors)."""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np

from . import _memory, _start, backends
from ._problem import Problem, _is_torch, make_problem, radii_to_kind, to_kind
from .errors import InvalidInputError, OutOfMemoryError
from .selector import Selector


Array = Any  # numpy.ndarray | torch.Tensor


def select(probs: Array, labeled_idx: Any, budget: Optional[int] = None, *,
           centers: Optional[Array] = None, stop_radius: Optional[float] = None,
           max_budget: Optional[int] = None, from_logits: bool = False,
           temperature: float = 1.0, backend: str = "auto", return_radii: bool = False,
           prune: bool = True, num_threads: int = 0,
           progress: Union[bool, Callable[[int], None], None] = None,
           simplex_atol: Optional[float] = None):
    """Pick `budget` rows by k-center greedy in probability space (PCoreSet).

    Each step picks the unlabeled, unpicked row whose Euclidean distance to its
    nearest center (the labeled rows and the earlier picks) is largest; exact
    ties go to the lowest row index. With no initial centers (no labeled
    rows and no `centers`) the first pick is the row farthest from the mean
    of all rows.

    Args:
        probs: (N, C) probabilities (rows on the simplex), or logits with
            `from_logits=True`. NumPy array, torch tensor (CPU or CUDA), a
            DLPack array, or a path to a .npy file (memory-mapped). float16,
            bfloat16 (torch), float32 or float64; 16-bit inputs stay 16-bit
            in memory, distances accumulate in float32 (float64 for float64).
            Never modified.
        labeled_idx: row indices already labeled (the initial centers; never
            picked, not counted in `budget`). Unique integers in [0, N); may
            be empty or None.
        budget: number of rows to pick, 0 <= budget <= N - len(labeled_idx).
            May be None with `stop_radius`.
        stop_radius: pick while the coverage radius (the distance of the
            farthest remaining row to its nearest center) is above this: the
            picks end before the first one whose radius is <= stop_radius.
            At most `budget` (or `max_budget`) picks; all rows by default.
        max_budget: the cap on picks with stop_radius (an alias of budget
            there; pass one of the two).
        centers: (M, C) initial center vectors that are not rows of the pool,
            e.g. the labeled set's probabilities from another loader: alone or
            with `labeled_idx`, without copying the pool. Checked like the
            pool (same C, finite, simplex rows unless from_logits; logits get
            the same softmax). Any float dtype; NumPy or a torch tensor on the
            CPU or on the pool's device.
        from_logits: rows are logits; the kernel uses softmax(row / temperature)
            on the fly without an N x C float32 copy.
        temperature: softmax temperature (> 0), only used with from_logits.
        backend: "auto" (cuda, cpu, faiss, torch: the first that can run the
            input), or one of them by name.
        return_radii: also return each pick's distance to its nearest center
            when it was picked (non-increasing; +inf for a first pick made
            from the pool mean).
        prune: exact triangle-inequality pruning (never changes a pick; off
            only to measure the dense pass).
        num_threads: CPU threads (0 = all).
        progress: True for a tqdm bar, or a function called with the number
            of picks made so far.
        simplex_atol: tolerance of the probability-row check (default by
            dtype: float16 1e-2, bfloat16 3e-2, float32 1e-3, float64 1e-6).

    Returns:
        int64 indices in the order picked, as the same kind of array as
        `probs` (NumPy in, NumPy out; torch in, torch out on the same device;
        other DLPack inputs get torch tensors). With `return_radii`, a tuple
        (indices, radii) with float64 radii.

    Raises:
        InvalidInputError (ValueError): NaN/inf (names the first bad row), rows
            that are not probabilities, bad shape, labeled indices out of
            range or duplicated, negative budget, temperature <= 0.
        InvalidTypeError (TypeError): non-float dtype, non-integer budget or
            labeled indices.
        PoolExhaustedError (ValueError): budget > N - len(labeled_idx).
        BackendUnavailableError (RuntimeError): the backend asked for cannot
            run this input; lists why for each backend.
    """
    if stop_radius is not None:
        if budget is not None and max_budget is not None:
            raise InvalidInputError(f"pass budget or max_budget with stop_radius, not both "
                                    f"(got budget={budget!r}, max_budget={max_budget!r})")
        sel = Selector(probs, labeled_idx, centers=centers, from_logits=from_logits, temperature=temperature,
                       backend=backend, prune=prune, num_threads=num_threads, progress=progress,
                       simplex_atol=simplex_atol)
        picks, radii = sel.until(stop_radius, budget if budget is not None else max_budget)
        return (picks, radii) if return_radii else picks
    if budget is None:
        raise InvalidInputError("budget is required (the number of rows to pick), or pass stop_radius= "
                                "to pick until the pool is covered to a radius")
    if max_budget is not None:
        raise InvalidInputError(f"max_budget={max_budget!r} only applies with stop_radius; pass budget instead")
    problem = make_problem(probs, labeled_idx, budget, simplex=True, from_logits=from_logits,
                           temperature=temperature, prune=prune, num_threads=num_threads,
                           progress=progress, simplex_atol=simplex_atol, centers=centers)
    return _run(problem, backend, return_radii)


def kcenter_greedy(x: Array, labeled_idx: Any = None, budget: int = 0, *,
                   centers: Optional[Array] = None, backend: str = "auto",
                   return_radii: bool = False, prune: bool = True, num_threads: int = 0,
                   progress: Union[bool, Callable[[int], None], None] = None):
    """k-center greedy (farthest-first traversal) on any finite vectors.

    The same rules, tie-breaking and return values as `select`, without the
    probability-row check and without a softmax: use it for feature-space
    coreset (L2-normalise the features first for cosine distance) and other
    embeddings. `x` is (N, D) float16/bfloat16/float32/float64; `centers`
    (M, D) are initial center vectors that are not rows of `x`.
    """
    problem = make_problem(x, labeled_idx, budget, simplex=False, from_logits=False,
                           temperature=1.0, prune=prune, num_threads=num_threads,
                           progress=progress, name="x", centers=centers)
    problem, shift = _safe_magnitudes(problem)
    out = _run(problem, backend, return_radii)
    if return_radii and shift:
        radii = out[1]
        if _is_torch(radii):
            return out[0], _torch_ldexp(radii, -shift)
        return out[0], np.ldexp(radii, -shift)  # a power of two: exact
    return out


# Magnitudes whose squared distances stay normal numbers in the accumulation
# dtype: a squared distance is at most 4 C max|x|^2 (kept under max / 8 for
# the pruning test's 4 (1 + eps) d2), and a nonzero difference of two values
# is at least |v| 2^-(mantissa+1) for the smaller nonzero |v|, whose square
# must stay above the smallest normal number.
def _largest_safe(acc, c: int) -> float:
    return float(np.sqrt(np.finfo(acc).max / (32.0 * c)))


def _smallest_safe(acc) -> float:
    info = np.finfo(acc)
    return float(np.sqrt(info.tiny)) * 2.0 ** (info.nmant + 2)


def _value_range(problem: Problem):
    """(largest |value|, smallest nonzero |value|) of the pool and the
    center vectors, in one chunked pass."""
    from . import _start

    hi, lo = 0.0, np.inf
    x = problem.x
    step = _start.chunk_rows(problem.n, problem.c)
    for s in range(0, problem.n, step):
        e = min(problem.n, s + step)
        if hasattr(x, "detach"):  # a torch tensor (any device, bfloat16 included)
            a = x[s:e].detach().abs()
            hi = max(hi, float(a.amax())) if a.numel() else hi
            nz = a[a > 0]
            lo = min(lo, float(nz.amin())) if nz.numel() else lo
        else:
            a = np.abs(np.asarray(x[s:e]))
            if a.size:
                hi = max(hi, float(a.max()))
                lo = min(lo, float(np.min(a, where=a > 0, initial=np.inf)))
            _memory.release_rows(x, s, e)
    if problem.centers is not None:
        a = np.abs(problem.centers)
        hi = max(hi, float(a.max()))
        nz = a[a > 0]
        lo = min(lo, float(nz.min())) if nz.size else lo
    return hi, lo


def _torch_ldexp(t, shift: int):
    """t * 2**shift, exact: in factors that are finite float64 powers of two."""
    t = t.clone()
    while shift:
        step = max(-1000, min(1000, shift))
        t.mul_(2.0 ** step)
        shift -= step
    return t


def _safe_magnitudes(problem: Problem):
    """(problem, shift): a problem whose squared distances neither overflow
    nor underflow in its accumulation dtype, so the picks are the float64
    greedy answer. float16/bfloat16/float32 data outside the safe range run
    on a float64 copy (only such data: others pay one pass over the values);
    float64 data is scaled by 2**shift (exact; the radii are scaled back), or
    refused when its magnitudes span more than float64 can square."""
    from dataclasses import replace

    hi, lo = _value_range(problem)
    if hi == 0.0:
        return problem, 0
    c = problem.c
    acc = np.float64 if problem.dtype == "float64" else np.float32
    if _smallest_safe(acc) <= lo and hi <= _largest_safe(acc, c):
        return problem, 0
    big, small = _largest_safe(np.float64, c), _smallest_safe(np.float64)
    x = problem.x
    is_torch = hasattr(x, "detach")
    if acc is np.float32 and small <= lo and hi <= big:
        x64 = x.double() if is_torch else np.asarray(x, dtype=np.float64)
        return replace(problem, x=x64, dtype="float64"), 0
    # float64 arithmetic: scale by 2**shift into [small, big] when the span fits
    shift = int(np.floor(np.log2(big) - np.log2(hi)))
    if np.log2(lo) + shift < np.log2(small):
        shift = int(np.ceil(np.log2(small) - np.log2(lo)))
    with np.errstate(over="ignore", under="ignore"):
        fits = small <= np.ldexp(lo, shift) and np.ldexp(hi, shift) <= big
    if not fits:
        raise InvalidInputError(
            f"x has values from {lo:.3g} to {hi:.3g} in magnitude: their squared distances cannot all be "
            f"computed in float64 (the largest safe magnitude is {big:.3g} when the smallest nonzero one is "
            f"{small:.3g}; the safe span is a factor {big / small:.3g}); rescale x")
    if is_torch:
        x64 = _torch_ldexp(x.double(), shift)
    else:
        x64 = np.ldexp(np.asarray(x, dtype=np.float64), shift)
    ctr = None if problem.centers is None else np.ldexp(problem.centers, shift)
    return replace(problem, x=x64, dtype="float64", centers=ctr), shift


def _run(problem: Problem, backend: str, return_radii: bool):
    chosen = backends.choose(problem, backend)
    if problem.budget == 0:
        picks, radii2 = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    else:
        picks, radii2 = _run_checked(chosen, problem)
    picks = to_kind(picks, problem, np.int64)
    if not return_radii:
        return picks
    return picks, radii_to_kind(radii2, problem)


def _run_checked(chosen, problem: Problem):
    """Run a backend after checking that its predicted footprint fits, and
    turn an allocation failure inside it into an OutOfMemoryError."""
    what = (f"select(n={problem.n}, c={problem.c}, dtype={problem.dtype}, backend={chosen.name!r}, "
            f"labeled={problem.labeled.size}, centers={problem.n_centers - problem.labeled.size}, "
            f"budget={problem.budget})")
    needed = 0
    if problem.device == "cpu":  # device memory is the device backend's to check
        needed = sum(_memory.memory_parts(
            problem.n, problem.c, problem.dtype, chosen.memory_parts,
            n_labeled=problem.labeled.size,
            n_centers=0 if problem.centers is None else int(problem.centers.shape[0]),
            budget=problem.budget, from_logits=problem.from_logits,
            in_memory=not _memory.file_backed(problem.x)).values())
        _memory.check_fits(what, needed)
    try:
        return chosen.run(problem, _start.start_state)
    except OutOfMemoryError:
        raise
    except MemoryError as exc:
        raise OutOfMemoryError(what, needed, _memory.available_bytes()) from exc
    except RuntimeError as exc:  # torch: "DefaultCPUAllocator: can't allocate memory", "CUDA out of memory"
        msg = str(exc)
        if "can't allocate memory" in msg or "out of memory" in msg:
            raise OutOfMemoryError(what, needed, _memory.available_bytes()) from exc
        raise

