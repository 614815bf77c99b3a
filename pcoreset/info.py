"""What this installation was built with: `pcoreset.info()` and `pcoreset info`."""
from __future__ import annotations

import platform

import numpy as np

from . import backends
from ._version import __version__


class Info(dict):
    """`pcoreset.info()`: a plain dict (keys below), printed as readable lines."""

    def __str__(self) -> str:
        return format_info(self)


def info() -> Info:
    """What this installation was built with and which backends run here: a
    dict (pcoreset, python, numpy, cpu_module, torch, cuda_module, faiss,
    backends) whose ``str()`` is the report of ``pcoreset info``."""
    out = Info({
        "pcoreset": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_module": backends.get("cpu").build_info(),
    })
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        out["torch"] = None
    out["cuda_module"] = backends.get("cuda").build_info()
    try:
        import faiss

        out["faiss"] = faiss.__version__
    except ImportError:
        out["faiss"] = None
    out["backends"] = {}
    for name in backends.names():
        reason = backends.get(name).unavailable()
        out["backends"][name] = "available" if reason is None else f"unavailable: {reason}"
    return out


def format_info(d: dict) -> str:
    """One line per entry, nested dicts indented; None reads "not installed"."""
    def show(v):
        if v is None:
            return "not installed"
        if isinstance(v, (tuple, list)):
            return ", ".join(map(str, v))
        return str(v)

    lines = []
    for key, value in d.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {show(v)}" for k, v in value.items())
        else:
            lines.append(f"{key}: {show(value)}")
    return "\n".join(lines)
