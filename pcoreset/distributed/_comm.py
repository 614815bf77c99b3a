"""The process group, with every collective bounded by a timeout: a rank
that died, hung or lost its connection surfaces as `RankFailureError`."""
from __future__ import annotations

import datetime
import numbers
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from ..errors import InvalidInputError, InvalidTypeError, RankFailureError

DEFAULT_TIMEOUT_S = 1800.0  # as torch.distributed's own default


class Comm:
    """The process group, with every collective bounded by `timeout`.
    `phase` names what the ranks are doing, for the failure message."""

    def __init__(self, group, timeout: datetime.timedelta) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self.timeout = timeout
        backend = str(dist.get_backend(group)).lower()
        # NCCL moves device memory only; gloo (and the rest) host memory.
        self.device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" \
            else torch.device("cpu")
        self.phase = "setup"

    def global_rank(self, group_rank: int) -> int:
        return group_rank if self.group is None else dist.get_global_rank(self.group, group_rank)

    def _fail(self, exc: BaseException):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        secs = self.timeout.total_seconds()
        if "timed out" in text.lower() or "timeout" in text.lower():
            why = f"the other ranks did not answer within timeout={secs:g}s"
        else:
            why = "the connection to another rank failed"
        return RankFailureError(
            f"pcoreset.distributed.select on rank {self.rank} of {self.world}: {why} during "
            f"{self.phase} ({text}). A rank died, hung, raised an error of its own, or is still "
            "busy with local work longer than the timeout; check the other ranks' logs, or raise "
            "`timeout`.", self.phase)

    def _run(self, start: Callable[[], Any]):
        try:
            work = start()
            work.wait(self.timeout)
        except RuntimeError as exc:  # DistBackendError/DistNetworkError subclass it
            raise self._fail(exc) from exc

    def start(self, start: Callable[[], Any]):
        try:
            return start()
        except RuntimeError as exc:
            raise self._fail(exc) from exc

    def wait(self, work) -> None:
        try:
            work.wait(self.timeout)
        except RuntimeError as exc:
            raise self._fail(exc) from exc

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """(world, *t.shape): every rank's `t`."""
        t = t.to(self.device)
        out = [torch.empty_like(t) for _ in range(self.world)]
        self._run(lambda: dist.all_gather(out, t, group=self.group, async_op=True))
        return torch.stack(out).cpu()

    def all_reduce_max(self, t: torch.Tensor) -> None:
        self._run(lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group, async_op=True))

    def broadcast_start(self, t: torch.Tensor, src: int):
        return self.start(lambda: dist.broadcast(t, src=self.global_rank(src), group=self.group,
                                                 async_op=True))

    def broadcast(self, t: torch.Tensor, src: int) -> None:
        self.wait(self.broadcast_start(t, src))


def as_timeout(timeout: Any) -> datetime.timedelta:
    if isinstance(timeout, datetime.timedelta):
        secs = timeout.total_seconds()
    elif isinstance(timeout, numbers.Real) and not isinstance(timeout, bool):
        secs = float(timeout)
    else:
        raise InvalidTypeError(f"timeout must be seconds (a number) or a datetime.timedelta, got {timeout!r}")
    if not np.isfinite(secs) or secs <= 0:
        raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return datetime.timedelta(seconds=secs)


def ranks_by_value(values, show: Callable[[Any], str] = str) -> str:
    """"x on rank 0, y on ranks [1, 2]": who passed what."""
    groups = {}
    for r, v in enumerate(values):
        groups.setdefault(v, []).append(r)
    parts = []
    for v, ranks in groups.items():
        who = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks}"
        parts.append(f"{show(v)} on {who}")
    return ", ".join(parts)
