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

`estimate_memory` predicts what a selection allocates besides the pool, and
`check_fits` turns a request that cannot fit into an `OutOfMemoryError` that
names the bytes needed and available.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import mmap
import os
from typing import Dict, Optional

import numpy as np

from .errors import InvalidInputError, OutOfMemoryError

_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
_CHUNK_BYTES = 64 << 20  # the row chunk of the Python passes (_start, torch backend)
_TILE_BYTES = 32 << 20  # the C++ kernel's tile on file-backed pools (kcenter_cpu.cpp)
CANDIDATES = 4

_libc = None


def _madvise():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _libc.madvise.restype = ctypes.c_int
    return _libc.madvise


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


def memory_parts(n: int, c: int, dtype: str, backend: str = "cpu", n_labeled: int = 0,
                 budget: int = 0, from_logits: bool = False, in_memory: bool = True,
                 start: Optional[str] = None, n_centers: int = 0) -> Dict[str, int]:
    """The allocations of one selection, by name, in bytes (see estimate_memory)."""
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
        # one tile of the kernel (at most 32 MiB; mean_vector reads 4096-row blocks)
        parts["pool tile (file-backed)"] = min(n * c * item, max(_TILE_BYTES, 4096 * c * item))
    if backend == "cpu":
        # kcenter_cpu.cpp: mind_ (acc) and nearest_ (int32) per row; the cells
        # keep each row once as a member (row uint32 + running minimum, padded
        # to 8 or 16 bytes), with its values for C <= 16; a scratch list of
        # the rows one step computes (at most every row) while a step runs
        member = 8 if acc == 4 else 16
        parts["running minimum, nearest center"] = n * (acc + 4)
        parts["cells (members, short rows' values, step scratch)"] = (
            n * member + (n * c * acc if c <= 16 else 0) + n * 8)
        parts["centers (values, radius, heap, anchor index)"] = centers * (c * acc + 64)
        if from_logits:
            parts["softmax row constants"] = n * 2 * acc
    elif backend == "faiss":
        if dtype != "float32" or from_logits:
            parts["float32 copy of the pool"] = n * c * (8 if dtype == "float64" else 4)
        parts["running minimum, nearest center, step temporaries"] = n * (acc + 8 + 1 + 8 + 8 + 4)
        parts["centers"] = centers * (c + 3) * 4
    elif backend == "torch":
        parts["running minimum, taken"] = n * (acc + 1)
        parts["row chunk temporaries"] = 3 * min(n * c * acc, _CHUNK_BYTES)
    elif backend == "cuda":
        # device memory, as pcoreset._C_cuda.state_bytes counts it (kcenter_cuda.cu)
        slots = max(64, centers)
        parts["running minimum, nearest center, center vector"] = n * (acc + 4) + c * acc
        if from_logits:
            parts["softmax row constants"] = n * 2 * acc
        parts["centers (values, radius, center distances)"] = slots * (c + 2) * acc
        parts["picks, radii, step slots"] = max(64, budget + 1) * (16 + (16 if acc == 8 else 8))
        # the control block (struct Ctl, 64 bytes) and, for float64, one
        # argmax slot per block of the pass (kMaxGridBlocks = 4096, 16 bytes)
        parts["control block, argmax slots"] = 64 + (4096 * 16 if acc == 8 else 0)
        parts["row chunk temporaries (start)"] = 3 * min(n * c * acc, _CHUNK_BYTES)
    else:
        raise InvalidInputError(f"backend={backend!r}: choose cpu, cuda, faiss or torch")
    m = n_labeled + n_centers
    if m and start != "exact" and float(n) * m * c > 2e9:
        # the certified start (pcoreset._start): (N, k) candidates, each row's
        # pivot and distance to it, the centers in the accumulation dtype and
        # in float64, a block of center-to-pivot distances, one row chunk.
        pivots = min(m, 1024, int(math.ceil(2.0 * math.sqrt(m))))
        rows = max(1, min(n, _CHUNK_BYTES // (4 * max(c, pivots, 1))))
        parts["start (candidates, pivots, centers, one chunk)"] = (
            n * (CANDIDATES * 8 + 16) + m * c * (acc + 8) + _CHUNK_BYTES + rows * (c + pivots) * acc)
    parts["picks and radii"] = budget * 16
    return parts


def estimate_memory(n: int, c: int, dtype="float32", *, backend: str = "cpu", n_labeled: int = 0,
                    budget: int = 0, from_logits: bool = False, in_memory: bool = True,
                    n_centers: int = 0) -> int:
    """Bytes a selection allocates besides the pool itself.

    Args:
        n, c: pool shape (rows, values per row).
        dtype: storage dtype name ("float16", "bfloat16", "float32",
            "float64") or a NumPy dtype.
        backend: "cpu", "faiss", "torch" or "cuda" (for cuda the figure is
            device memory).
        n_labeled: labeled rows (the initial centers).
        budget: rows to pick.
        from_logits: rows are logits (the cpu backend keeps two softmax
            constants per row; faiss needs a float32 copy of the softmax).
        in_memory: False for a file-backed pool (.npy path or np.memmap):
            one row tile is resident at a time (the pool itself is not).
        n_centers: initial center vectors given with `centers=`.

    Returns:
        int: bytes. The pool is not included: it is the caller's (in RAM,
        or file-backed and streamed).

    Raises:
        InvalidInputError: an argument is negative or unknown.
    """
    dt = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
    return int(sum(memory_parts(int(n), int(c), dt, backend, int(n_labeled), int(budget),
                                bool(from_logits), bool(in_memory), n_centers=int(n_centers)).values()))


def check_fits(what: str, needed: int, available: Optional[int] = None) -> None:
    """Raise OutOfMemoryError when `needed` bytes exceed what is available."""
    avail = available_bytes() if available is None else int(available)
    if needed > avail:
        raise OutOfMemoryError(what, needed, avail)
