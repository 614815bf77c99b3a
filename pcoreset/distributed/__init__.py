"""Sharded PCoreSet selection over `torch.distributed` (gloo on CPUs, NCCL on GPUs).

Every rank holds a contiguous shard of the pool's rows, in rank order: rank 0
holds global rows [0, n0), rank 1 [n0, n0 + n1), and so on (shards may be
empty). `select` returns the same global picks on every rank, identical to
single-process `pcoreset.select` on the concatenated pool with the same kernel.

Per greedy step:
  1. every rank runs the fused update + argmax over its shard with the local
     kernel (running minimum, exact pruning);
  2. one `all_reduce(MAX)` of the kernels' 8-byte key (the distance's float32
     bits above the inverted global row index) names the winner: larger
     distance, and on equal distances the lowest global index;
  3. the rank that holds the winning row broadcasts it (C values, as the
     kernel sees it) and every rank adds it as the next center.

Why the picks are bit-identical to one process: distances are computed by
the same row math whichever rank holds a row, centers travel as their exact
accumulation-type values, the running minimum is order-independent (pruning
never changes it), and the global tie rule is the kernel's tie rule. With no
labeled rows, the pool mean that the first pick depends on is rebuilt with
the single-process arithmetic (the kernels' fixed row blocks summed in
order; see `_local.global_mean`).

Failures: every collective waits at most `timeout`; a rank that died, hung or
lost its connection surfaces as `RankFailureError` on the others. Disagreeing
arguments across ranks (budget, C, dtype, ...) and a bad input on any rank
are found in one all-gather at the start, and every rank raises the same
error naming the ranks.

The modules: `_comm` (the bounded collectives), `_agree` (validation and
agreement), `_local` (this rank's kernel state, the start across ranks, the
pool mean), `_loop` (the greedy loop), `_select` (`select`, `Selector`).
"""
from .._deps import require_torch

require_torch("distributed selection (pcoreset.distributed)")

from ..errors import RankFailureError, RankMismatchError  # noqa: E402
from ._comm import DEFAULT_TIMEOUT_S  # noqa: E402
from ._select import Selector, last_stats, select  # noqa: E402

__all__ = ["select", "Selector", "RankFailureError", "RankMismatchError", "last_stats", "DEFAULT_TIMEOUT_S"]
