"""What this installation was built with: `pcoreset.info()` and `pcoreset info`."""
from __future__ import annotations

import platform

import numpy as np

from . import backends
from ._version import __version__


def info() -> dict:
    """A dict describing the build and the backends available here."""
    out = {
        "pcoreset": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_module": backends.get("cpu").build_info(),
    }
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
    lines = []
    for key, value in d.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {v}" for k, v in value.items())
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
