"""Optional dependencies: the core (NumPy arrays through the C++ kernel)
needs only NumPy; torch tensors, the torch and FAISS backends, distributed
selection and the ActiveKD driver need torch (pip install "pcoreset[torch]")."""
from __future__ import annotations

import importlib

from .errors import MissingDependencyError

# module -> (pip extra of pcoreset, the package it installs)
EXTRAS = {
    "torch": ("torch", "torch"),
    "faiss": ("faiss", "faiss-cpu"),
}


def install_hint(module: str) -> str:
    extra, package = EXTRAS.get(module, (None, module))
    if extra is None:
        return f'pip install "{package}"'
    return f'pip install "pcoreset[{extra}]" (or: pip install {package})'


def require(module: str, feature: str):
    """Import `module`, or raise MissingDependencyError naming `feature` and
    the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs {module}, which is not installed: {install_hint(module)} "
            f"[{exc}]") from exc


def require_torch(feature: str):
    return require("torch", feature)
