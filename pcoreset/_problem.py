"""Validation of the public arguments into one `Problem` that backends run,
and the conversions every layer above shares: the pool as the kernels see its
rows, and results back into the caller's kind of array.

Validate in public, compute in private: everything a backend may assume is
checked here once, with messages that name the argument and the value.
"""
from __future__ import annotations

import contextvars
import numbers
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np

from . import _memory
from ._paths import load_npy
from .errors import InvalidInputError, InvalidTypeError, PoolExhaustedError



class _LazyTorch:
    """torch, imported on first use. torch is optional (pcoreset[torch]) and
    slow to import; NumPy pools never touch it: every use below is on a path
    that a torch object (torch already imported) or a DLPack input leads to."""

    def __getattr__(self, name):
        import torch

        return getattr(torch, name)


torch = _LazyTorch()


def loaded_torch():
    """The torch module if it has been imported (only then can a torch tensor
    exist), else None; never imports it."""
    return sys.modules.get("torch")

DTYPES = ("float16", "bfloat16", "float32", "float64")
# The integer code of each dtype in saved states and in the distributed
# handshake (never renumber: saved states carry it).
DTYPE_CODE = {"float16": 1, "bfloat16": 2, "float32": 3, "float64": 4}

# Rows of `probs` must sum to 1 within this tolerance (by storage dtype): the
# rounding of a softmax row stored in that precision stays well inside it.
SIMPLEX_ATOL = {"float16": 1e-2, "bfloat16": 3e-2, "float32": 1e-3, "float64": 1e-6}

# How the not-a-probability error tells the caller to pass logits: the
# command line sets "pass --from-logits".
LOGITS_HINT = contextvars.ContextVar("pcoreset_logits_hint", default="pass from_logits=True")

# Rows checked per chunk while validating, so that a check never makes an
# N x C temporary of a large pool: large chunks for torch tensors (few
# reductions, each a kernel launch on a GPU), small ones for NumPy pools,
# whose float32 values then stay in cache between the conversion and the
# reductions (check_values at 100k x 1000, float16: 0.15 s with 64 MiB
# chunks, 0.07 s with 1 MiB; float32: 0.09 and 0.08 s).
_CHECK_CHUNK_BYTES = 64 << 20
_HOST_CHECK_CHUNK_BYTES = 1 << 20


@dataclass
class Problem:
    """A validated selection request.

    x: the pool as the backends read it: a C-contiguous NumPy array (float16,
       float32, float64; bfloat16 as its raw uint16 bits) or a torch tensor
       (any device, contiguous). Never a copy unless the input was not
       contiguous or not native byte order.
    """

    x: Any
    kind: str  # "numpy" | "torch" (what the caller gave: the result comes back the same)
    device: str  # "cpu" or a torch device string such as "cuda:0"
    dtype: str  # one of DTYPES
    n: int
    c: int
    labeled: np.ndarray  # int64, unique, in [0, n)
    budget: int
    # (M, C) float64 initial center vectors that are not rows of the pool, as
    # the kernels see rows (softmax applied for logits), or None
    centers: Optional[np.ndarray] = None
    from_logits: bool = False
    temperature: float = 1.0
    prune: bool = True
    num_threads: int = 0
    progress: Union[bool, Callable[[int], None], None] = None
    source: Any = field(default=None, repr=False)  # the caller's object (for output conversion)

    @property
    def n_centers(self) -> int:
        """Initial centers: labeled rows plus center vectors."""
        return int(self.labeled.size) + (0 if self.centers is None else int(self.centers.shape[0]))

    @property
    def accum_dtype(self) -> str:
        return "float64" if self.dtype == "float64" else "float32"

    def numpy_view(self) -> np.ndarray:
        """The pool as a NumPy array on the CPU (bfloat16 as uint16 bits)."""
        x = self.x
        if isinstance(x, np.ndarray):
            return x
        if self.device != "cpu":
            raise InvalidInputError(f"probs is on {self.device}; this path needs a CPU array")
        if self.dtype == "bfloat16":
            return x.view(torch.int16).numpy().view(np.uint16)
        return x.numpy()


def _torch_installed() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _is_torch(x: Any) -> bool:
    t = loaded_torch()
    return t is not None and isinstance(x, t.Tensor)


def _torch_dtype_name(t: "torch.Tensor") -> Optional[str]:
    return {
        torch.float16: "float16",
        torch.bfloat16: "bfloat16",
        torch.float32: "float32",
        torch.float64: "float64",
    }.get(t.dtype)


def as_pool(x: Any, name: str = "probs"):
    """Return (array, kind, device, dtype) for a pool argument, without copying
    when the input is already usable."""
    if isinstance(x, (str, os.PathLike)):
        path = os.fspath(x)
        if not os.path.exists(path):
            raise InvalidInputError(f"{name}={path!r}: no such file")
        if not path.endswith(".npy"):
            raise InvalidInputError(f"{name}={path!r}: only .npy files can be read as a pool")
        x = load_npy(path, name, mmap=True)  # a truncated or damaged file: an InvalidInputError naming it
    if _is_torch(x):
        dt = _torch_dtype_name(x)
        if dt is None:
            raise InvalidTypeError(
                f"{name} has dtype {x.dtype}; expected float16, bfloat16, float32 or float64"
            )
        if x.requires_grad:
            x = x.detach()
        if not x.is_contiguous():
            x = x.contiguous()
        return x, "torch", str(x.device), dt
    if not isinstance(x, np.ndarray) and hasattr(x, "__dlpack__") and _torch_installed():
        t = torch.from_dlpack(x)
        arr, _, device, dt = as_pool(t, name)
        return arr, "torch", device, dt
    if isinstance(x, np.ndarray) or isinstance(x, (list, tuple)):
        a = np.asarray(x) if not isinstance(x, np.ndarray) else x
        if a.dtype.kind != "f":
            raise InvalidTypeError(
                f"{name} has dtype {a.dtype}; expected float16, float32 or float64 "
                "(bfloat16 through a torch tensor)"
            )
        if a.dtype.itemsize not in (2, 4, 8):
            raise InvalidTypeError(f"{name} has dtype {a.dtype}; expected float16, float32 or float64")
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        return a, "numpy", "cpu", str(a.dtype)
    raise InvalidTypeError(
        f"{name} must be a NumPy array, a torch tensor or a .npy path, got {type(x).__name__}"
    )


def check_shape(x: Any, name: str = "probs") -> tuple:
    if x.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D (N, C), got shape {tuple(x.shape)}")
    n, c = int(x.shape[0]), int(x.shape[1])
    if c < 1:
        raise InvalidInputError(f"{name} must have at least one column, got shape {tuple(x.shape)}")
    return n, c


def readonly_tensor(a: np.ndarray) -> "torch.Tensor":
    """A torch view of a NumPy array that pcoreset only reads (read-only
    memory maps included: torch warns about those, and nothing writes)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


def _row_chunks(n: int, c: int, itemsize: int, chunk_bytes: int):
    step = max(1, chunk_bytes // max(1, c * max(itemsize, 4)))
    for start in range(0, n, step):
        yield start, min(n, start + step)


_F16_TABLE: Optional[np.ndarray] = None


def _float16_as_float32(chunk: np.ndarray, buf: Optional[np.ndarray] = None) -> np.ndarray:
    """float32 values of a float16 array: the same values as astype (NaN and
    inf included). NumPy's cast takes a slow path for subnormals, which
    softmax rows over many classes are full of. The extension converts with
    vcvtph2ps where the processor has it; without the extension, a table of
    all 65,536 bit patterns (check_values at 100k x 1000: 1.33 s CPU by the
    cast, 0.46-0.75 s by the table, 0.07 s by the extension in 1 MiB chunks).
    buf: float32 memory to reuse (at least chunk.size values)."""
    global _F16_TABLE
    try:
        from . import _C
    except ImportError:
        _C = None
    bits = np.ascontiguousarray(chunk).view(np.uint16)
    if _C is not None and hasattr(_C, "half_to_float"):
        if buf is not None and buf.size >= bits.size:
            out = buf.reshape(-1)[:bits.size].reshape(bits.shape)
        else:
            out = np.empty(bits.shape, dtype=np.float32)
        _C.half_to_float(bits, out)
        return out
    if _F16_TABLE is None:
        _F16_TABLE = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    return _F16_TABLE[bits]


def check_values(x: Any, dtype: str, simplex: bool, name: str = "probs",
                 atol: Optional[float] = None) -> None:
    """Raise on NaN/inf (naming the first bad row) and, with `simplex`, on rows
    that are not probability vectors. Streams the pool in chunks."""
    n, c = int(x.shape[0]), int(x.shape[1])
    tol = SIMPLEX_ATOL[dtype] if atol is None else float(atol)
    itemsize = dtype_itemsize(dtype)
    buf = None  # float32 values of a float16 chunk, reused chunk after chunk
    chunk_bytes = _CHECK_CHUNK_BYTES if _is_torch(x) else _HOST_CHECK_CHUNK_BYTES
    for start, stop in _row_chunks(n, c, itemsize, chunk_bytes):
        if _is_torch(x):
            chunk = x[start:stop]
            acc = chunk.double() if dtype == "float64" else chunk.float()
            sums, mins = acc.sum(dim=1), acc.amin(dim=1)
            not_finite = None if bool(torch.isfinite(sums).all()) else ~torch.isfinite(acc).all(dim=1)
            sums, mins = sums.cpu().numpy(), mins.cpu().numpy()
            not_finite = None if not_finite is None else not_finite.cpu().numpy()
        else:
            chunk = np.asarray(x[start:stop])
            if chunk.dtype == np.float16:
                acc = _float16_as_float32(chunk, buf)
                buf = acc
            else:
                acc = chunk.astype(np.float64 if dtype == "float64" else np.float32, copy=False)
            with np.errstate(over="ignore", invalid="ignore"):  # an overflowed sum is tested per value below
                sums = acc.sum(axis=1)
            not_finite = None if np.isfinite(sums).all() else ~np.isfinite(acc).all(axis=1)
            mins = acc.min(axis=1) if simplex else None
        # A row sum is finite only if every value is: one fast reduction
        # clears the common case; the per-value test runs only on a chunk
        # whose sums are not all finite (or that overflowed).
        if not_finite is not None and not_finite.any():
            row = start + int(np.flatnonzero(not_finite)[0])
            raise InvalidInputError(f"{name} has a NaN or inf value in row {row}")
        if simplex:
            bad = (mins < -tol) | (np.abs(sums.astype(np.float64) - 1.0) > tol)
            if bad.any():
                row = start + int(np.flatnonzero(bad)[0])
                _raise_simplex(name, row, float(mins[row - start]), float(sums[row - start]), tol)
        # a file-backed pool is checked without staying resident
        _memory.release_rows(x, start, stop)


def _raise_simplex(name: str, row: int, vmin: float, total: float, tol: float) -> None:
    if vmin < -tol:
        why = f"has a negative value {vmin:.6g}"
    else:
        why = f"sums to {total:.6g}"
    raise InvalidInputError(
        f"{name} row {row} is not a probability vector: it {why} (tolerance {tol:g}); "
        f"{LOGITS_HINT.get()} if the rows are logits, or use kcenter_greedy for arbitrary vectors"
    )


def check_labeled(labeled_idx: Any, n: int, device: str, name: str = "labeled_idx") -> np.ndarray:
    if labeled_idx is None:
        return np.zeros(0, dtype=np.int64)
    if _is_torch(labeled_idx):
        if labeled_idx.device.type != "cpu" and str(labeled_idx.device) != device:
            raise InvalidInputError(
                f"{name} is on {labeled_idx.device} but probs is on {device}; put them on the same device"
            )
        if labeled_idx.dtype.is_floating_point or labeled_idx.dtype == torch.bool or labeled_idx.is_complex():
            raise InvalidTypeError(f"{name} must hold integers, got dtype {labeled_idx.dtype}")
        arr = labeled_idx.detach().cpu().numpy()
    else:
        arr = np.asarray(labeled_idx)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        if arr.dtype == object and all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))
                                       for v in arr.ravel()):
            # Python ints too large for int64 (a list of them becomes an object array)
            big = [v for v in arr.ravel() if not -2**63 <= int(v) < 2**63]
            if big:
                raise InvalidInputError(f"{name} has an index out of range: {int(big[0])} (pool has {n} rows)")
        if arr.dtype.kind not in "iu":
            raise InvalidTypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.reshape(-1) if arr.ndim == 0 else arr
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
        raise InvalidInputError(f"{name} has an index out of range: {int(arr.max())} (pool has {n} rows)")
    idx = arr.astype(np.int64, copy=True)
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise InvalidInputError(f"{name} has an index out of range: {bad} (pool has {n} rows, valid 0..{n - 1})")
    sorted_idx = np.sort(idx)
    dup = sorted_idx[1:] == sorted_idx[:-1]
    if dup.any():
        raise InvalidInputError(f"{name} has a duplicated index: {int(sorted_idx[1:][dup][0])}")
    return idx


def check_count(k: Any, name: str) -> int:
    """A count >= 0: a Python/NumPy integer or an integer 0-d torch tensor
    (never a boolean: True is not a count)."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        if (_is_torch(k) and k.ndim == 0 and not k.dtype.is_floating_point and not k.is_complex()
                and k.dtype != torch.bool):
            k = int(k)
        else:
            raise InvalidTypeError(f"{name} must be an integer, got {k!r} ({type(k).__name__})")
    k = int(k)
    if k < 0:
        raise InvalidInputError(f"{name} must be >= 0, got {k}")
    return k


def check_budget(budget: Any, available: int, name: str = "budget") -> int:
    budget = check_count(budget, name)
    if budget > available:
        raise PoolExhaustedError(available, budget, what=name)
    return budget


def check_temperature(temperature: Any, dtype: str = "float64") -> float:
    """A positive finite temperature whose inverse is finite in the
    accumulation dtype of `dtype` (the kernels multiply by 1/temperature)."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise InvalidTypeError(f"temperature must be a positive number, got {temperature!r}")
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise InvalidInputError(f"temperature must be a positive finite number, got {temperature!r}")
    acc = np.float64 if dtype == "float64" else np.float32
    with np.errstate(over="ignore", divide="ignore"):
        inv = acc(1.0 / t)
    if not np.isfinite(inv) or acc(t) < np.finfo(acc).tiny:
        smallest = 1.0 / float(np.finfo(acc).max)
        raise InvalidInputError(
            f"temperature={temperature!r} is too small: 1/temperature overflows {np.dtype(acc).name}, "
            f"the accumulation dtype of {dtype} input (use temperature >= {max(smallest, float(np.finfo(acc).tiny)):.3g})")
    return t


def check_centers(centers: Any, c: int, device: str, *, simplex: bool, from_logits: bool,
                  temperature: float, atol: Optional[float] = None,
                  name: str = "centers") -> Optional[np.ndarray]:
    """Initial center vectors: an (M, C) float array (NumPy, or a torch tensor
    on the CPU or on the pool's device), checked like the pool (finite values,
    simplex rows for `select` unless from_logits). Returns them as the kernels
    see rows, in float64 (softmax(row / temperature) for logits), or None when
    there are none."""
    if centers is None:
        return None
    if _is_torch(centers) and centers.device.type != "cpu" and str(centers.device) != device:
        raise InvalidInputError(
            f"{name} is on {centers.device} but probs is on {device}; put them on the same device "
            "(or pass centers on the CPU)")
    arr, _, _, dtype = as_pool(centers, name)
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D (M, C) with C={c}, got shape {tuple(arr.shape)}")
    if int(arr.shape[1]) != c:
        raise InvalidInputError(f"{name} has {int(arr.shape[1])} columns but probs has C={c}: "
                                f"shape {tuple(arr.shape)}, expected (M, {c})")
    if int(arr.shape[0]) == 0:
        return None
    check_values(arr, dtype, simplex=simplex and not from_logits, name=name, atol=atol)
    if _is_torch(arr):
        if arr.dtype == torch.bfloat16:
            arr = arr.float()
        arr = arr.detach().cpu().numpy()
    if from_logits:
        return softmax(arr, temperature, dtype=np.float64)
    return np.array(arr, dtype=np.float64)


def check_simplex_atol(atol: Any) -> Optional[float]:
    """None (the dtype's default) or a finite tolerance >= 0."""
    if atol is None:
        return None
    if isinstance(atol, (bool, np.bool_)) or not isinstance(atol, numbers.Real):
        if _is_torch(atol) and atol.ndim == 0 and atol.dtype.is_floating_point:
            atol = float(atol)
        else:
            raise InvalidTypeError(f"simplex_atol must be a number >= 0 (or None for the dtype's default), "
                                   f"got {atol!r} ({type(atol).__name__})")
    value = float(atol)
    if not np.isfinite(value) or value < 0:
        raise InvalidInputError(f"simplex_atol must be a finite number >= 0, got {atol!r}")
    return value


def make_problem(probs, labeled_idx, budget, *, simplex: bool, from_logits: bool, temperature,
                 prune: bool, num_threads: int, progress, simplex_atol=None,
                 check_finite: bool = True, name: str = "probs", centers=None) -> Problem:
    simplex_atol = check_simplex_atol(simplex_atol)
    x, kind, device, dtype = as_pool(probs, name)
    n, c = check_shape(x, name)
    if not isinstance(from_logits, (bool, np.bool_)):
        raise InvalidTypeError(f"from_logits must be True or False, got {from_logits!r}")
    t = check_temperature(temperature, dtype)
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral) or num_threads < 0:
        raise InvalidInputError(f"num_threads must be an integer >= 0 (0 = all cores), got {num_threads!r}")
    labeled = check_labeled(labeled_idx, n, device)
    b = check_budget(budget, n - labeled.size)
    ctr = check_centers(centers, c, device, simplex=simplex, from_logits=bool(from_logits),
                        temperature=t, atol=simplex_atol)
    if check_finite:
        check_values(x, dtype, simplex=simplex and not from_logits, name=name, atol=simplex_atol)
    return Problem(x=x, kind=kind, device=device, dtype=dtype, n=n, c=c, labeled=labeled, budget=b,
                   centers=ctr, from_logits=bool(from_logits), temperature=t, prune=bool(prune),
                   num_threads=int(num_threads), progress=progress, source=probs)


# --------------------------------------------------------------------------- conversions

def chunk_rows(n: int, c: int, other: int = 1) -> int:
    """Rows per chunk so that a chunk x max(c, other) float32 block stays near 64 MiB."""
    return max(1, min(n, _memory.CHUNK_BYTES // (4 * max(c, other, 1))))


# rows as the kernels see them (torch is imported only in the torch helpers,
# for torch pools and the torch/faiss backends)


def torch_pool(problem: Problem):
    """The pool as a torch tensor (no copy)."""
    import torch

    x = problem.x
    if isinstance(x, torch.Tensor):
        return x
    t = readonly_tensor(x)
    if problem.dtype == "bfloat16":
        t = t.view(torch.bfloat16)
    return t


def accum_dtype(problem: Problem):
    """The torch accumulation dtype (float64 for float64 pools, else float32)."""
    import torch

    return torch.float64 if problem.dtype == "float64" else torch.float32


def rows_as_values(problem: Problem, x, start: int, stop: int):
    """Rows [start, stop) of a torch pool as the kernels see them, in the
    accumulation dtype: the stored values, or softmax(row / temperature)."""
    import torch

    chunk = x[start:stop].to(accum_dtype(problem))
    if problem.from_logits:
        chunk = torch.softmax(chunk / problem.temperature, dim=1)
    return chunk


Values = Callable[[np.ndarray], object]


def torch_values(problem: Problem) -> Values:
    """values(rows) -> the rows (int64 indices, NumPy or torch) as the torch
    backend sees them, a torch tensor in the accumulation dtype on the pool's
    device."""
    import torch

    x = torch_pool(problem)

    def values(rows):
        rows = torch.as_tensor(rows, dtype=torch.int64).to(x.device)
        return rows_as_values(problem, x[rows], 0, int(rows.numel()))

    return values


def numpy_values(problem: Problem) -> Values:
    """values(rows) -> the rows of a host pool in the accumulation dtype
    (NumPy), softmax(row / temperature) for logits."""
    x = problem.numpy_view()
    acc = acc_dtype(problem)

    def values(rows):
        part = x[np.asarray(rows, dtype=np.int64)]
        if problem.dtype == "bfloat16":  # raw bits: the high half of a float32
            part = (part.astype(np.uint32) << 16).view(np.float32)
        if problem.from_logits:
            return softmax(part, problem.temperature, dtype=acc)
        return part.astype(acc)

    return values


def default_values(problem: Problem) -> Values:
    """The start's view of pool rows when the caller gives none: the torch
    backend's (torch pools, or any pool while torch is installed, so that the
    torch and FAISS states see the same rounding), else NumPy's."""
    if problem.kind == "torch":
        return torch_values(problem)
    try:
        import torch  # noqa: F401
    except ImportError:
        return numpy_values(problem)
    return torch_values(problem)


def dtype_itemsize(dtype: str) -> int:
    """Bytes of one stored value of a pool dtype ("float16" ... "float64")."""
    return 2 if dtype in ("float16", "bfloat16") else (4 if dtype == "float32" else 8)


def acc_dtype(problem: Problem) -> np.dtype:
    """The NumPy accumulation dtype (float64 for float64 pools, else float32)."""
    return np.dtype(np.float64 if problem.dtype == "float64" else np.float32)


def softmax(logits, temperature: float = 1.0, dtype=None) -> np.ndarray:
    """softmax(row / temperature) of every row, in NumPy: in `dtype`
    (default float32, float64 for float64 logits), in row chunks so that no
    N x C float64 temporary is made."""
    logits = np.asarray(logits)
    dtype = np.dtype(dtype or (np.float64 if logits.dtype == np.float64 else np.float32))
    out = np.empty(logits.shape, dtype=dtype)
    step = max(1, (32 << 20) // (8 * max(1, logits.shape[1] if logits.ndim == 2 else 1)))
    for start in range(0, logits.shape[0], step):
        z = np.array(logits[start:start + step], dtype=dtype)
        if temperature != 1.0:
            z = z / temperature
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        out[start:start + step] = z
    return out


def radii_to_kind(radii2, problem: Problem):
    """Radii from squared radii (NumPy or torch, any device), as to_kind
    gives float64 results. The square root is always NumPy's, correctly
    rounded: torch's float64 CPU sqrt was measured one unit in the last
    place off on an AMD EPYC (sqrt(0.15917834639549255) gave
    0.3989716110144838, not 0.39897161101448375), and every radius the
    package reports (select, Selector.radii, Selector.radius) must agree."""
    if _is_torch(radii2):
        radii2 = radii2.detach().cpu().numpy()
    return to_kind(np.sqrt(np.asarray(radii2, dtype=np.float64)), problem, np.float64)


def to_kind(values, problem: Problem, dtype):
    """Results (NumPy or torch) as the kind of array the caller passed: NumPy
    in, NumPy out; torch in, torch out on the pool's device."""
    if problem.kind == "numpy":
        if _is_torch(values):
            values = values.cpu().numpy()
        return np.asarray(values, dtype=dtype)
    tdtype = torch.int64 if dtype is np.int64 else torch.float64
    if isinstance(values, torch.Tensor):
        return values.to(device=problem.device, dtype=tdtype)
    return torch.as_tensor(np.asarray(values, dtype=dtype)).to(problem.device)
