"""Thread counts that do not collapse on a busy machine.

A parallel region whose threads spin at a barrier while the scheduler has
preempted one of them (other processes keep every core busy: data loaders,
a build) waits a whole time slice per barrier. Measured on the 2-core
development machine: torch element-wise ops in the start's certified search
ran 10 times slower on two threads than on one under a load of 6, and the C++
kernel's OpenMP steps up to 16 times slower. The default thread count
therefore follows the machine: cores minus the tasks that other processes are
running right now. The rule has one implementation, the C++ kernel's
(csrc/cpu/thread_policy.cpp, which also re-reads it between the kernel's
steps); this module asks it through the extension.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

import sys

try:
    from ._C import available_threads as _available_threads, cpu_cores as _cpu_cores
except ImportError:  # the extension was not built: no load to adapt to but the cores
    _available_threads = _cpu_cores = None


def cores() -> int:
    """The cores this process may use: its CPU affinity, fewer under a cgroup
    CPU quota (a container limited to 2 CPUs on a 64-core host); the
    kernel's rule (cpu_cores) when the extension is built, else the affinity
    alone."""
    if _cpu_cores is not None:
        return int(_cpu_cores())
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


# Seconds between the two readings of a count below the cores (see available).
CONFIRM = 0.003


def available(requested: int = 0) -> int:
    """Threads to use now: `requested` when it is > 0 (the caller's choice),
    else the cores that other processes leave free (at least 1). Without the
    C++ extension, every core this process may run on.

    The callers here read it once for a whole phase (a student's fit), so a
    reading below the cores is taken again CONFIRM seconds later and the
    larger count is kept: a reading counts the tasks running at one moment,
    and a kernel thread running for a few milliseconds, or a thread of this
    process that has just gone to sleep (Linux 6.x can keep it in the
    run-queue count for up to a time slice), would otherwise put the whole
    phase on fewer threads. A process that keeps a core busy is there at
    both readings. (The kernel re-reads the rule between its steps and
    confirms a lower count in the same way.)"""
    if requested > 0:
        return requested
    if _available_threads is None:
        return cores()
    n = int(_available_threads(0))
    if n < cores():
        time.sleep(CONFIRM)
        n = max(n, int(_available_threads(0)))
    return n


@contextlib.contextmanager
def torch_threads(requested: int = 0) -> Iterator[int]:
    """torch's intra-op thread count set to `available(requested)` (never
    more than it was) for the block, then restored."""
    torch = sys.modules.get("torch")  # never imported here: no torch, no torch threads to set
    if torch is None:
        yield 1
        return
    before = torch.get_num_threads()
    n = min(before, available(requested))
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if n != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def blas_threads(requested: int = 0) -> Iterator[int]:
    """The BLAS behind NumPy's matmul limited to `available(requested)`
    threads for the block (through threadpoolctl when it is installed; the
    BLAS's own count otherwise). Yields the thread count chosen for the
    package's own kernels in the block."""
    n = available(requested)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency, but never needed for correctness
        yield n
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield n
