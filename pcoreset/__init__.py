"""pcoreset: fast k-center greedy selection in probability space (PCoreSet)
with C++/CUDA kernels, and an ActiveKD driver.

    import pcoreset
    idx = pcoreset.select(probs, labeled_idx, budget)
"""
from ._version import __version__
from .errors import (  # noqa: E402
    BackendUnavailableError,
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
    OutOfMemoryError,
    PcoresetError,
    PoolExhaustedError,
)
from .backends import estimate_memory  # noqa: E402
from .info import info  # noqa: E402
from .select import kcenter_greedy, select  # noqa: E402
from .selector import Selector  # noqa: E402

__all__ = [
    "select",
    "kcenter_greedy",
    "Selector",
    "info",
    "estimate_memory",
    "PcoresetError",
    "InvalidInputError",
    "InvalidTypeError",
    "PoolExhaustedError",
    "BackendUnavailableError",
    "OutOfMemoryError",
    "MissingDependencyError",
    "__version__",
]
