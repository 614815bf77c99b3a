"""The sizes that bound the certified search's memory and work. Every module
of the search reads them from here at call time, so tests shrink them to
force each path at small sizes."""
from __future__ import annotations

import math

from .. import _memory

# Candidate centers per row handed to the kernel (rows with fewer repeat
# their first one; rows with more keep the K_OUT nearest in float64).
K_OUT = _memory.CANDIDATES
# Elements of one tile (rows x centers): 2 MiB of float32, read twice by the
# fused epilogue while it is still in cache.
TILE = 1 << 19
# Centers nearest the pivot in each group's first, bounding GEMM (on
# clustered pools 32 bound each row's nearest distance within a few per cent
# of the truth; more cost more than they save).
PROBE = 32
# Bytes of the largest block of one chunk of rows or centers (values or
# distances) in the passes over the pool and over the centers; a worker
# keeps up to 8 such blocks of a group's shifted centers (beyond, a group's
# farthest-reaching rows are searched block of centers by block).
ROW_CHUNK_BYTES = 1 << 20
NEAR_BLOCKS = 8
# The distinct centers are read once and kept (in the accumulation dtype)
# when they take at most this fraction of the pool's bytes; else they are
# read on demand, as each group needs them.
CENTER_CACHE = 1 / 32
# Bytes of one block of center-to-pivot lower bounds (float32).
PAIR_BYTES = 4 << 20
# Pivots are chosen among at most this many centers (a strided sample).
PIVOT_SAMPLE = 8192
# The projected bound (bounds.Projection, C++ only): used on rows of at
# least PROJ_MIN_C values, in tiles whose rows reach at least PROJ_MIN_COLS
# centers; proj_dims(c) directions. Below these the GEMM tiles cost less
# (measured, 2 cores: at C = 100 and 300 the projected start took 1.14x and
# 1.05x the tiles' time, at C = 1000 0.81x).
PROJ_MIN_C = 512
PROJ_MIN_COLS = 256
# Rounds of the projected search that score the pairs of lowest bound first
# (each over the lowest PROJ_FRAC of the bounds' range that is left).
PROJ_ROUNDS = 2
PROJ_FRAC = 0.25
# Set to a list to collect (rows, columns, pairs kept) of each projected tile.
PROJ_STATS = None
# Rows per chunk when the candidates are widened to int64 in place.
WIDEN_ROWS = 1 << 16


def n_pivots(m: int) -> int:
    """Pivots for m distinct centers: enough that every cluster of a clustered
    pool gets its own (farthest-first visits clusters first), few enough that
    assigning the rows to them (an N x P GEMM) stays cheap. 2 sqrt(m) cost
    10-25% less than 4 sqrt(m) on the clustered 200k x 100 pools (L = 2k and
    10k) and on the real pool of the benchmarks."""
    return max(1, min(m, 1024, max(64, int(math.ceil(2.0 * math.sqrt(m))))))


def proj_dims(c: int) -> int:
    """Directions of the projected bound for rows of c values: about
    3 sqrt(c), a multiple of 8 (96 at C = 1000: 64 and 128 were slower)."""
    return int(min(c - 1, max(8, 8 * round(3.0 * math.sqrt(c) / 8.0))))
