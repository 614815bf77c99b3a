"""Backend registry and the `auto` dispatch (cuda, cpu, faiss, torch, in that
order). Each backend says why it cannot take an input; when none can, the
error lists every reason."""
from __future__ import annotations

from typing import Dict, List

from ..errors import BackendUnavailableError, InvalidInputError
from .._problem import Problem
from .base import Backend

AUTO_ORDER = ("cuda", "cpu", "faiss", "torch")
_REGISTRY: Dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    _REGISTRY[backend.name] = backend
    return backend


def names() -> List[str]:
    _load()
    return [n for n in AUTO_ORDER if n in _REGISTRY] + sorted(set(_REGISTRY) - set(AUTO_ORDER))


def get(name: str) -> Backend:
    _load()
    if name not in _REGISTRY:
        raise InvalidInputError(f"backend={name!r} is not known; choose one of {['auto'] + names()}")
    return _REGISTRY[name]


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
            return b
        reasons[name] = reason
    raise BackendUnavailableError("no backend can run this input", reasons)


_LOADED = []


def _load() -> None:
    if _LOADED:
        return
    from . import cpu  # noqa: F401  (registers itself)

    for optional, name in (("torch_backend", "torch"), ("cuda", "cuda"), ("faiss_backend", "faiss")):
        try:
            __import__(f"{__name__}.{optional}")
        except ImportError as exc:
            if getattr(exc, "name", None) == "torch" and name not in _REGISTRY:
                # the NumPy-only install: say what to install instead of
                # leaving the backend out of the list
                register(_NeedsTorch(name, str(exc)))
    # only now: an interrupted import (Ctrl-C while a CUDA or FAISS library
    # loads) must not leave a backend unregistered for the rest of the process
    _LOADED.append(True)


class _NeedsTorch(Backend):
    """A backend that cannot even be imported here because torch is missing."""

    def __init__(self, name: str, error: str) -> None:
        self.name = name
        self._error = error

    def unavailable(self):
        from .._deps import install_hint

        return f"torch is not installed: {install_hint('torch')}"
