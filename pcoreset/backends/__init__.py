"""The backend registry: each backend by name, the `auto` choice (cuda, cpu,
faiss, torch, in that order), and each backend's memory footprint. Each
backend says why it cannot take an input; when none can, the error lists
every reason.

A backend is one module of this package that defines `BACKEND`, an instance
of `base.Backend`; adding one is that module plus one line in `_BUILTIN`.
"""
from __future__ import annotations

import importlib
import sys
from typing import Dict, List

import numpy as np

from .. import _memory
from .._deps import install_hint
from .._problem import Problem
from ..errors import BackendUnavailableError, InvalidInputError
from .base import Backend

# name -> module, in the order `auto` tries them. A module whose optional
# library is missing still registers (its backend says why it is unavailable).
_BUILTIN = {
    "cuda": "cuda",
    "cpu": "cpu",
    "faiss": "faiss_backend",
    "torch": "torch_backend",
}
AUTO_ORDER = tuple(_BUILTIN)
_REGISTRY: Dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Make `backend` known by its name (tried by `auto` after the built-in ones)."""
    if not isinstance(backend, Backend):
        raise InvalidInputError(f"backend must be a pcoreset.backends.base.Backend, got {type(backend).__name__}")
    _REGISTRY[backend.name] = backend
    return backend


def unregister(name: str) -> None:
    """Forget a backend registered with `register` (the built-in ones stay)."""
    if name in _BUILTIN:
        raise InvalidInputError(f"backend={name!r} is built in and cannot be unregistered")
    _REGISTRY.pop(name, None)


def names() -> List[str]:
    _load()
    return [n for n in AUTO_ORDER if n in _REGISTRY] + sorted(set(_REGISTRY) - set(AUTO_ORDER))


def get(name: str) -> Backend:
    _load()
    if name not in _REGISTRY:
        raise InvalidInputError(f"backend={name!r} is not known; choose one of {['auto'] + names()}")
    return _resolve(_REGISTRY[name])


def _resolve(b: Backend) -> Backend:
    return b.real() if isinstance(b, _Deferred) else b


def why_not(backend: Backend, problem: Problem):
    return backend.unavailable() or backend.rejects(problem)


def choose(problem: Problem, backend: str = "auto") -> Backend:
    _load()
    if not isinstance(backend, str):
        raise InvalidInputError(f"backend must be a string, got {backend!r}")
    if backend != "auto":
        b = get(backend)
        reason = why_not(b, problem)
        if reason:
            raise BackendUnavailableError(f"backend={backend!r} cannot run this input", {backend: reason})
        return b
    reasons = {}
    for name in names():
        b = _REGISTRY[name]
        reason = why_not(b, problem)
        if reason is None:
            return _resolve(b)
        reasons[name] = reason
    raise BackendUnavailableError("no backend can run this input", reasons)


def choose_stateful(problem: Problem, backend: str = "auto") -> Backend:
    """As `choose`, for a backend that can keep a state between calls
    (pcoreset.Selector, distributed selection)."""
    chosen = choose(problem, backend)
    why = chosen.state_unsupported(problem)
    if why is None:
        return chosen
    if backend != "auto":
        raise BackendUnavailableError(f"backend={backend!r} cannot continue a selection", {backend: why})
    reasons = {chosen.name: why}
    for name in names():
        b = _REGISTRY[name]
        reason = why_not(b, problem) or b.state_unsupported(problem)
        if reason is None:
            return _resolve(b)
        reasons[name] = reason
    raise BackendUnavailableError("no backend can continue a selection on this input", reasons)


def memory_parts(n: int, c: int, dtype: str, backend: str = "cpu", n_labeled: int = 0,
                 budget: int = 0, from_logits: bool = False, in_memory: bool = True,
                 start=None, n_centers: int = 0) -> Dict[str, int]:
    """The allocations of one selection on `backend`, by name, in bytes (see estimate_memory)."""
    if not isinstance(backend, str) or backend == "auto":
        raise InvalidInputError(f"backend={backend!r}: choose one of {names()}")
    return _memory.memory_parts(n, c, dtype, get(backend).memory_parts, n_labeled, budget, from_logits,
                                in_memory, start, n_centers)


def estimate_memory(n: int, c: int, dtype="float32", *, backend: str = "cpu", n_labeled: int = 0,
                    budget: int = 0, from_logits: bool = False, in_memory: bool = True,
                    n_centers: int = 0) -> int:
    """Bytes a selection allocates besides the pool itself.

    Args:
        n, c: pool shape (rows, values per row).
        dtype: storage dtype name ("float16", "bfloat16", "float32",
            "float64") or a NumPy dtype.
        backend: "cpu", "faiss", "torch" or "cuda" (for cuda the figure is
            device memory), or a registered backend's name.
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


_LOADED = []


def _load() -> None:
    if _LOADED:
        return
    # The torch and FAISS backends import torch, which takes seconds: until
    # torch is imported anyway (a torch input, the caller's own import) they
    # stay placeholders that import their module when first asked, so a NumPy
    # pool that the cpu backend takes never loads torch.
    defer = "torch" not in sys.modules
    for name, module in _BUILTIN.items():
        if name in _REGISTRY:
            continue
        if defer and name in ("faiss", "torch"):
            register(_Deferred(name, module))
        else:
            _import_builtin(name, module)
    # only now: an interrupted import (Ctrl-C while a CUDA or FAISS library
    # loads) must not leave a backend unregistered for the rest of the process
    _LOADED.append(True)


class _NeedsTorch(Backend):
    """A backend that cannot even be imported here because torch is missing."""

    def __init__(self, name: str) -> None:
        self.name = name

    def unavailable(self):
        return f"torch is not installed: {install_hint('torch')}"

    def make_state(self, problem: Problem):
        raise BackendUnavailableError(f"backend={self.name!r} cannot run", {self.name: self.unavailable()})

    def memory_parts(self, n, c, dtype, centers, budget, from_logits):
        return {}


def _import_builtin(name: str, module: str) -> None:
    try:
        register(importlib.import_module(f"{__name__}.{module}").BACKEND)
    except ImportError as exc:
        if getattr(exc, "name", None) != "torch":
            raise
        # the NumPy-only install: say what to install instead of leaving
        # the backend out of the list
        register(_NeedsTorch(name))


class _Deferred(Backend):
    """A built-in backend whose module (and torch) is imported when it is
    first asked anything; `get` and `choose` hand out the real one."""

    def __init__(self, name: str, module: str) -> None:
        self.name = name
        self._module = module

    def real(self) -> Backend:
        if _REGISTRY.get(self.name) is self:
            _import_builtin(self.name, self._module)
        return _REGISTRY[self.name]

    def unavailable(self):
        return self.real().unavailable()

    def rejects(self, problem):
        return self.real().rejects(problem)

    def state_unsupported(self, problem):
        return self.real().state_unsupported(problem)

    def make_state(self, problem):
        return self.real().make_state(problem)

    def memory_parts(self, *args, **kwargs):
        return self.real().memory_parts(*args, **kwargs)
