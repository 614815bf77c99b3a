"""Backend registry and the `auto` dispatch (cuda, cpu, faiss, torch, in that
order). Each backend says why it cannot take an input; when none can, the
error lists every reason."""
from __future__ import annotations

import sys
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


_LOADED = []


def _load() -> None:
    if _LOADED:
        return
    from . import cpu  # noqa: F401  (registers itself)

    # The torch and FAISS backends import torch, which takes seconds: until
    # torch is imported anyway (a torch input, the caller's own import) they
    # stay placeholders that import them when first asked, so a NumPy pool
    # that the cpu backend takes never loads torch.
    defer = "torch" not in sys.modules
    for optional, name in (("torch_backend", "torch"), ("cuda", "cuda"), ("faiss_backend", "faiss")):
        if defer and name in ("torch", "faiss"):
            if name not in _REGISTRY:
                register(_Deferred(name, optional))
            continue
        _import_backend(optional, name)
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


def _import_backend(module: str, name: str) -> None:
    """Import backends/<module>.py (it registers itself); without torch,
    register a placeholder that says what to install instead of leaving the
    backend out of the list."""
    try:
        __import__(f"{__name__}.{module}")
    except ImportError as exc:
        if getattr(exc, "name", None) == "torch" and (name not in _REGISTRY or isinstance(_REGISTRY[name], _Deferred)):
            register(_NeedsTorch(name, str(exc)))


class _Deferred(Backend):
    """A backend whose module is imported (with torch) when first used."""

    def __init__(self, name: str, module: str) -> None:
        self.name = name
        self._module = module

    def real(self) -> Backend:
        if _REGISTRY.get(self.name) is self:
            _import_backend(self._module, self.name)
        b = _REGISTRY[self.name]
        if b is self:  # pragma: no cover - the module did not register itself
            raise RuntimeError(f"pcoreset: the {self.name} backend did not register")
        return b

    def unavailable(self):
        return self.real().unavailable()

    def rejects(self, problem):
        return self.real().rejects(problem)

    def run(self, problem):
        return self.real().run(problem)

    def state_unsupported(self, problem):
        return self.real().state_unsupported(problem)

    def make_state(self, problem):
        return self.real().make_state(problem)

    def seed(self, state, problem):
        return self.real().seed(state, problem)
