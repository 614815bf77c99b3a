"""Torch settings shared by the teachers and the students."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch


@contextlib.contextmanager
def torch_threads(n: Optional[int]):
    """Run with `n` intra-op threads (None: leave torch's setting alone).

    Float results depend on the thread count (reductions are split between
    threads), so the driver fixes it wherever results must be reproducible: the
    students train on one thread, the text teacher embeds on one thread."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
