"""Thread counts that do not collapse on a busy machine.

A parallel region whose threads spin at a barrier while the scheduler has
preempted one of them (other processes keep every core busy: data loaders,
a build) waits a whole time slice per barrier. Measured on the 2-core
development machine: torch element-wise ops in the start's certified search
ran 10 times slower on two threads than on one under a load of 6, and the C++
kernel's OpenMP steps up to 16 times slower (issue 18). The default thread
count therefore follows the machine: cores minus the tasks that other
processes are running right now (/proc/loadavg counts running tasks; this
process's own running threads, from /proc/self/task, are not counted against
it). The C++ kernel applies the same rule (ThreadPolicy in kcenter_cpu.cpp).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _running_tasks() -> Optional[int]:
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def _own_running_tasks() -> int:
    count = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat[stat.rfind(")") + 2:stat.rfind(")") + 3] == "R":
                count += 1
    except OSError:
        return 1
    return max(count, 1)


def available(requested: int = 0) -> int:
    """Threads to use now: `requested` when it is > 0 (the caller's choice),
    else the cores that other processes leave free (at least 1)."""
    if requested > 0:
        return requested
    cpus = _cpus()
    running = _running_tasks()
    if running is None:
        return cpus
    others = max(0, running - _own_running_tasks())
    return max(1, min(cpus, cpus - others))


@contextlib.contextmanager
def torch_threads(requested: int = 0) -> Iterator[int]:
    """torch's intra-op thread count set to `available(requested)` (never
    more than it was) for the block, then restored."""
    if torch is None:  # pragma: no cover
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
