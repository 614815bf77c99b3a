"""Memory: file-backed pools, page release, and the predictable footprint.

A pool passed as a `.npy` path or an `np.memmap` is read through a shared file
mapping. Pages of such a mapping count in the process's resident set (RSS)
once touched, so a pass over a 2 GB pool would make the process 2 GB big even
though nothing was copied. Every pass over such a pool therefore runs in row
tiles and hands each tile's pages back with `madvise(MADV_DONTNEED)` after
reading it: the data stays in the file (and in the page cache, which the
kernel may drop under pressure), the process keeps only a tile resident.
This is only safe for *shared* mappings (np.memmap modes 'r', 'r+', 'w+');
copy-on-write mappings (mode 'c') may hold private edits and are left alone.

`memory_parts` adds up what a selection allocates besides the pool (each
backend declares its own share; `pcoreset.estimate_memory` looks the backend
up by name), and `check_fits` turns a request that cannot fit into an `OutOfMemoryError` that
names the bytes needed and available.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from typing import Callable, Dict, Optional

import numpy as np

from .errors import InvalidInputError, OutOfMemoryError

_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
CHUNK_BYTES = 64 << 20  # the row chunk of the Python passes (the start, the torch backend)
TILE_BYTES = 32 << 20  # the C++ kernel's tile on file-backed pools
# Rows per partial sum of a state's mean_vector (the first pick's pool mean):
# blocks summed in row order from 0.0, the block sums added in block order,
# then divided by N. Distributed selection rebuilds that sum across ranks;
# a test checks it against the kernel.
MEAN_BLOCK_ROWS = 4096
CANDIDATES = 4

_libc = None


def _madvise():
    return _libc_handle().madvise


def trim_heap() -> None:
    """Hand the C heap's free memory back to the system (glibc's malloc_trim;
    a no-op elsewhere): after a pass whose temporaries are gone, so that the
    next pass's peak does not sit on top of memory nobody uses."""
    try:
        libc = _libc_handle()
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        return
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim(0)


def _libc_handle():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _libc.madvise.restype = ctypes.c_int
    return _libc


def file_backed(x) -> bool:
    """True when `x` is a NumPy array that reads a shared file mapping (whose
    pages may be handed back without losing data)."""
    if not isinstance(x, np.memmap) or getattr(x, "_mmap", None) is None:
        return False
    return getattr(x, "mode", "c") in ("r", "r+", "w+", "readonly", "readwrite", "write")


def release_rows(x, start: int, stop: int) -> None:
    """Drop the resident pages of rows [start, stop) of a file-backed pool
    (no-op for anything else)."""
    if stop <= start or not file_backed(x) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    row_bytes = x.strides[0]
    page = mmap.PAGESIZE
    lo = x.ctypes.data + start * row_bytes
    hi = x.ctypes.data + stop * row_bytes
    lo -= lo % page
    hi += (-hi) % page
    _madvise()(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), mmap.MADV_DONTNEED)


def available_bytes() -> int:
    """Memory this process may still allocate: MemAvailable, capped by a
    cgroup (container) limit when one is set."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
            return 1 << 62
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                raw = f.read().strip()
            if raw == "max":
                break
            limit = int(raw)
            used_path = path.replace("memory.max", "memory.current").replace(
                "memory.limit_in_bytes", "memory.usage_in_bytes")
            with open(used_path) as f:
                used = int(f.read().strip())
            if limit < (1 << 60):
                avail = min(avail, max(0, limit - used))
            break
        except (OSError, ValueError):
            continue
    return int(avail)


def memory_parts(n: int, c: int, dtype: str, backend_parts: Callable[..., Dict[str, int]],
                 n_labeled: int = 0, budget: int = 0, from_logits: bool = False, in_memory: bool = True,
                 start: Optional[str] = None, n_centers: int = 0) -> Dict[str, int]:
    """The allocations of one selection, by name, in bytes: what every
    backend shares (center vectors, a file-backed pool's tile, the start,
    the picks) and what `backend_parts(n, c, dtype, centers, budget,
    from_logits)` says the backend itself allocates (each backend declares
    its own: Backend.memory_parts)."""
    if dtype not in _ITEMSIZE:
        raise InvalidInputError(f"dtype={dtype!r} is not one of {sorted(_ITEMSIZE)}")
    for name, v in (("n", n), ("c", c), ("n_labeled", n_labeled), ("budget", budget),
                    ("n_centers", n_centers)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InvalidInputError(f"{name} must be an integer >= 0, got {v!r}")
    if n_labeled + budget > n:
        raise InvalidInputError(f"n_labeled={n_labeled} + budget={budget} exceeds n={n}")
    acc = 8 if dtype == "float64" else 4
    item = _ITEMSIZE[dtype]
    centers = n_labeled + n_centers + budget
    parts: Dict[str, int] = {}
    if n_centers:
        parts["center vectors (float64)"] = n_centers * c * 8
    if not in_memory:
        # one tile of the kernel (at most 32 MiB; mean_vector reads whole blocks)
        parts["pool tile (file-backed)"] = min(n * c * item, max(TILE_BYTES, MEAN_BLOCK_ROWS * c * item))
    parts.update(backend_parts(n, c, dtype, centers, budget, from_logits))
    m = n_labeled + n_centers
    if m and start != "exact" and float(n) * m * c > 2e9:
        # the certified start (pcoreset._start): per row an int32 pivot order,
        # a squared norm and CANDIDATES int32 candidates, then the kernel's
        # int64 copy of at most CANDIDATES of them (12 bytes per candidate at
        # the peak); a strided sample of at most 8192 centers for the pivots,
        # a 4 MiB block of center-to-pivot bounds, and a few chunks of 1-2 MiB
        # on each of two workers. The centers themselves are read in chunks.
        parts["start (candidates, per-row pivot order, chunks)"] = (
            n * CANDIDATES * 12 + min(m, 8192) * c * acc + (4 << 20) + 2 * (10 << 20))
    parts["picks and radii"] = budget * 16
    return parts


def check_fits(what: str, needed: int, available: Optional[int] = None) -> None:
    """Raise OutOfMemoryError when `needed` bytes exceed what is available."""
    avail = available_bytes() if available is None else int(available)
    if needed > avail:
        raise OutOfMemoryError(what, needed, avail)
