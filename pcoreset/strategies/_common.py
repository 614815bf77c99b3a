"""Checks and helpers shared by the strategies: validate the pool once, in
public, with messages that name the field and the value."""
from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

from .._problem import check_budget, check_values, softmax
from ..errors import InvalidInputError, InvalidTypeError
from .base import PoolState, RngLike

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

# Rows per chunk in row-wise passes, so that no N x C float64 temporary is made.
_CHUNK_BYTES = 32 << 20


class CheckedPool:
    """A validated pool: `rows` index the pool's arrays, `indices` map rows
    to dataset ids."""

    def __init__(self, indices: np.ndarray, labeled_rows: np.ndarray, unlabeled_rows: np.ndarray,
                 budget: int) -> None:
        self.indices = indices
        self.labeled_rows = labeled_rows
        self.unlabeled_rows = unlabeled_rows
        self.budget = budget

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])

    def ids(self, rows: np.ndarray) -> np.ndarray:
        """Dataset-absolute ids of pool rows, as int64."""
        return self.indices[np.asarray(rows, dtype=np.int64)].astype(np.int64, copy=False)


def as_numpy(x, name: str) -> np.ndarray:
    """A NumPy view of a pool field (torch tensors are moved to the CPU)."""
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise InvalidTypeError(f"{name} must be an array, got {type(x).__name__}") from exc


def check_pool(pool: PoolState, budget, strategy: str) -> CheckedPool:
    """Validate the fields every strategy reads (indices, labeled_mask) and
    the budget; raises PoolExhaustedError when budget > unlabeled rows."""
    if not isinstance(pool, PoolState):
        raise InvalidTypeError(f"{strategy}: pool must be a PoolState, got {type(pool).__name__}")
    indices = as_numpy(pool.indices, "pool.indices")
    if indices.ndim != 1:
        raise InvalidInputError(f"pool.indices must be 1-D (N,), got shape {indices.shape}")
    if indices.dtype.kind not in "iu":
        raise InvalidTypeError(f"pool.indices must hold integers, got dtype {indices.dtype}")
    n = indices.shape[0]
    if n and np.unique(indices).size != n:
        srt = np.sort(indices)
        dup = srt[1:][srt[1:] == srt[:-1]][0]
        raise InvalidInputError(f"pool.indices has a duplicated id: {int(dup)}")
    mask = as_numpy(pool.labeled_mask, "pool.labeled_mask")
    if mask.dtype != np.bool_:
        raise InvalidTypeError(f"pool.labeled_mask must be a bool array, got dtype {mask.dtype}")
    if mask.shape != (n,):
        raise InvalidInputError(
            f"pool.labeled_mask has shape {mask.shape}; expected ({n},) like pool.indices")
    unlabeled = np.flatnonzero(~mask).astype(np.int64)
    b = check_budget(budget, unlabeled.size)
    return CheckedPool(indices, np.flatnonzero(mask).astype(np.int64), unlabeled, b)


def require(pool: PoolState, field: str, strategy: str, what: str):
    value = getattr(pool, field)
    if value is None:
        raise InvalidInputError(f"{strategy} needs pool.{field} ({what}); it is None")
    return value


def check_matrix(x, name: str, n: Optional[int], cols: Optional[int] = None) -> np.ndarray:
    """An (n, cols) finite float matrix as NumPy (float16 is widened to
    float32); n=None accepts any number of rows."""
    a = as_numpy(x, name)
    if a.ndim != 2 or (n is not None and a.shape[0] != n) or (cols is not None and a.shape[1] != cols):
        want = f"({n if n is not None else 'M'}, {cols if cols is not None else 'D'})"
        raise InvalidInputError(f"{name} has shape {a.shape}; expected {want}")
    if a.dtype.kind != "f":
        raise InvalidTypeError(f"{name} has dtype {a.dtype}; expected float16, float32 or float64")
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    check_values(a, str(a.dtype), simplex=False, name=name)
    return a


def mixed_probs(ce_logits, kd_logits, *, alpha: float = 0.5) -> np.ndarray:
    """The student's prediction (1 - alpha) * softmax(ce) + alpha * softmax(kd)
    (alpha = 0.5 in the paper), or one head's softmax when the other is None.

    Args:
        ce_logits, kd_logits: (N, C) float arrays (NumPy or torch), or None.
        alpha: weight of the KD head, in [0, 1].
    Returns:
        (N, C) float32 probabilities (float64 if an input is float64).
    Raises:
        InvalidInputError: both heads None, shapes differ, NaN/inf, bad alpha.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= float(alpha) <= 1.0:
        raise InvalidInputError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if ce_logits is None and kd_logits is None:
        raise InvalidInputError("mixed_probs needs ce_logits or kd_logits; both are None")
    heads = []
    for name, x in (("ce_logits", ce_logits), ("kd_logits", kd_logits)):
        if x is None:
            heads.append(None)
            continue
        a = as_numpy(x, name)
        if a.ndim != 2:
            raise InvalidInputError(f"{name} must be 2-D (N, C), got shape {a.shape}")
        heads.append(check_matrix(a, name, a.shape[0]))
    ce, kd = heads
    if ce is not None and kd is not None and ce.shape != kd.shape:
        raise InvalidInputError(f"ce_logits has shape {ce.shape} but kd_logits has shape {kd.shape}")
    if kd is None:
        return softmax(ce)
    if ce is None:
        return softmax(kd)
    p = softmax(ce)
    q = softmax(kd)
    dtype = np.result_type(p, q)
    p = p.astype(dtype, copy=False)
    p *= 1.0 - float(alpha)
    p += float(alpha) * q
    return p


def pool_probs(pool: PoolState, strategy: str, n: int, rows: Optional[np.ndarray] = None) -> np.ndarray:
    """The prediction a strategy ranks by: pool.probs when given (checked to
    be probability rows), else the mixed prediction of the heads; only the
    given rows when `rows` is not None."""
    if pool.probs is not None:
        p = check_matrix(pool.probs, "pool.probs", n)
        p = p if rows is None else p[rows]
        check_values(p, str(p.dtype), simplex=True, name="pool.probs")
        return p
    if pool.ce_logits is None and pool.kd_logits is None:
        raise InvalidInputError(
            f"{strategy} needs the student's prediction: pool.probs, or pool.ce_logits and/or "
            "pool.kd_logits; all are None")
    ce = None if pool.ce_logits is None else check_matrix(pool.ce_logits, "pool.ce_logits", n)
    kd = None if pool.kd_logits is None else check_matrix(pool.kd_logits, "pool.kd_logits", n)
    if rows is not None:
        ce = None if ce is None else ce[rows]
        kd = None if kd is None else kd[rows]
    return mixed_probs(ce, kd)


def as_generator(rng: RngLike) -> np.random.Generator:
    """A NumPy Generator from a Generator, an integer seed, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, bool) or not isinstance(rng, numbers.Integral):
        raise InvalidTypeError(f"rng must be a numpy Generator, an integer seed or None, got {rng!r}")
    if int(rng) < 0:
        raise InvalidInputError(f"rng seed must be >= 0, got {int(rng)}")
    return np.random.default_rng(int(rng))


def _chunks(n: int, c: int):
    step = max(1, _CHUNK_BYTES // (8 * max(1, c)))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def row_entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row, in float64 (0 log 0 = 0)."""
    out = np.empty(p.shape[0], dtype=np.float64)
    for start, stop in _chunks(p.shape[0], p.shape[1]):
        q = np.asarray(p[start:stop], dtype=np.float64)
        logq = np.log(np.where(q > 0, q, 1.0))
        out[start:stop] = -(q * logq).sum(axis=1)
    return out
