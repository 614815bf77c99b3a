"""One pivot group's certified search: the rows nearest one pivot against
the centers sorted by their distance to it.

The pivot is itself a center, so the nearest center y* of a row x at
distance a from the pivot r lies within 2a of it; a first, small GEMM with
the PROBE centers nearest the pivot bounds the row's nearest distance D from
above, so y* lies within a + D (each row gets its own reach). The centers
within a reach are a prefix of the pivot's centers sorted by their (lower
bounded) distance to it, so the rows are sorted by how long their prefix is
and searched in tiles of similar reach. Rows and centers are shifted by the
pivot before every GEMM (bounds.py says why).

Long rows (sizes.PROJ_MIN_C values and more): a tile whose rows reach many
centers skips the GEMM; the projected lower bound (bounds.Projection) of
every pair, from a GEMM of a few principal directions, keeps the pairs that
could hold a row's nearest center, and only those get a distance, nearest
bounds first (C++: certify_tile_proj).

Memory: the group's shifted centers are fetched as far as its rows reach,
up to a few MiB a worker; rows that reach farther are searched block of
centers by block (wide)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import bounds, sizes
from .bounds import Bounds, GroupProjection, Projection, rank, rank_exact, sq_norms, tile_candidates


class Near:
    """The centers of one pivot's group, nearest the pivot first, shifted by
    the pivot and fetched only as far as the group's rows reach."""

    def __init__(self, yget, near: np.ndarray, pivot: np.ndarray, limit: int,
                 proj: Optional[GroupProjection] = None) -> None:
        self.yget, self.near, self.pivot, self.limit, self.proj = yget, near, pivot, limit, proj
        self.have = 0
        self.sh = np.empty((0, pivot.shape[0]), dtype=pivot.dtype)
        self.ny = np.empty(0)
        self.ny2 = np.empty(0, dtype=pivot.dtype)
        if proj is not None:
            self.pb = np.empty((0, proj.pr.d), dtype=np.float32)
            self.col = np.empty((4, 0))

    def upto(self, m: int) -> None:
        """Fetch at least the first m centers (growing geometrically)."""
        if m <= self.have:
            return
        cap = min(int(self.near.size), max(m, min(2 * self.have, self.limit)))
        sh = np.empty((cap, self.pivot.shape[0]), dtype=self.pivot.dtype)
        sh[:self.have] = self.sh[:self.have]
        np.subtract(self.yget(self.near[self.have:cap]), self.pivot, out=sh[self.have:cap])
        ny, ny2 = sq_norms(sh[self.have:cap])
        if self.proj is not None:
            pb, col = self.proj.cols(self.near[self.have:cap], ny)
            self.pb = np.concatenate([self.pb[:self.have], pb])
            self.col = np.concatenate([self.col[:, :self.have], col], axis=1)
        self.sh = sh
        self.ny = np.concatenate([self.ny[:self.have], ny])
        self.ny2 = np.concatenate([self.ny2[:self.have], ny2])
        self.have = cap

    def block(self, c0: int, c1: int):
        """(shifted centers, float64 norms, squared norms in the accumulation
        dtype) of centers [c0, c1): from the cache, or read afresh (not kept)."""
        if c1 <= self.have:
            return self.sh[c0:c1], self.ny[c0:c1], self.ny2[c0:c1]
        sh = self.yget(self.near[c0:c1])
        sh -= self.pivot
        ny, ny2 = sq_norms(sh)
        return sh, ny, ny2

    def __getitem__(self, ids) -> np.ndarray:
        """The unshifted centers ids (for the exact ranking of over-full rows)."""
        return self.yget(self.near[ids])


def group(values, rows, ra, s2, near, near_lb2, yget, pivot, rep, b: Bounds, out,
          proj: Optional[Projection] = None) -> None:
    """Candidates for the rows of one pivot, written into out[rows] (indices
    rep[near[j]] into the original centers). ra: the rows' distances to the
    pivot (upper bounds); s2: the squared norms of the shifted rows fl(x -
    pivot), rounded up into the accumulation dtype; near: the centers within
    the group's reach, nearest the pivot first; near_lb2: lower bounds of
    their squared distances to the pivot (float64, sorted); proj: the
    projected bound, used in tiles of at least sizes.PROJ_MIN_COLS centers
    (with the C++ module only)."""
    mn = int(near.size)
    c = int(pivot.shape[0])
    probe = sizes.PROBE
    # the most centers one worker holds at once
    wide_at = max(2 * probe, (sizes.NEAR_BLOCKS * sizes.ROW_CHUNK_BYTES) // (pivot.itemsize * max(1, c)))
    gproj = None
    if proj is not None and bounds._C is not None and mn > 2 * probe and mn >= sizes.PROJ_MIN_COLS:
        gproj = proj.group(pivot)
    cs = Near(yget, near, pivot, wide_at, gproj)
    rep_near = rep[near]
    chunk = max(1, sizes.TILE // max(c, probe))
    for s in range(0, int(rows.size), chunk):
        rows_c = rows[s:s + chunk]
        v = values(rows_c)
        xs = v - pivot
        nx2 = s2[s:s + chunk]
        nx = np.sqrt(nx2.astype(np.float64))
        big = ~np.isfinite(nx)
        if big.any():  # the squared norm overflowed the accumulation dtype
            nx[big] = np.sqrt(np.einsum("ij,ij->i", xs[big], xs[big], dtype=np.float64))
        if mn > 2 * probe:
            cs.upto(probe)
            # centers x rows, so that the minimum runs down the columns
            g0 = cs.sh[:probe] @ xs.T
            g0 *= -2.0
            g0 += cs.ny2[:probe, None]
            # min_j fl(g_ij + nx2_i) = fl(min_j g_ij + nx2_i) (rounding is
            # monotone): the nearest probe center's GEMM distance, bounded with
            # the probe's largest norm (still an upper bound of D^2)
            d0 = g0.min(0)
            del g0
            d0 += nx2
            ub = d0.astype(np.float64) + b.kappa * (nx + cs.ny[:probe].max()) ** 2 + b.tiny
            reach = b.reach2_near(ra[s:s + chunk], ub)
            need = np.maximum(np.searchsorted(near_lb2, reach, side="right"), 1)
            o = np.argsort(need.astype(np.uint16) if mn < 1 << 16 else need, kind="stable")
            need = need[o]
            if gproj is not None:
                # the bound of each row's nearest squared distance, widened as
                # the candidates test widens it
                thr = ub * (1.0 + 2.0 * b.kernel_rel) + 2.0 * b.tiny
                thr[~np.isfinite(thr)] = np.inf
                thr = thr[o]
        else:
            o = np.arange(rows_c.size)
            need = np.full(rows_c.size, mn, dtype=np.int64)
        cs.upto(min(int(need[-1]), wide_at))  # one read for the chunk's tiles
        # the chunk's rows in order of need, so that each tile is a slice
        xs, nx2, nx, ra_c, rows_c = xs[o], nx2[o], nx[o], ra[s:s + chunk][o], rows_c[o]
        cnt = int(rows_c.size)
        ids = np.empty((cnt, b.k), dtype=np.int64)
        t = 0
        while t < cnt:
            # a tile: rows whose reach holds at most about 1.5x the centers
            # of its first row's (little GEMM wasted, few tiles)
            lim = int(need[t]) * 3 // 2 + 32
            e = int(np.searchsorted(need, lim, side="right"))
            e = max(t + 1, min(e, t + max(1, sizes.TILE // int(need[max(t, e - 1)]))))
            m_here = int(need[e - 1])
            if m_here > wide_at:
                # the rest reach more centers than a worker keeps: searched
                # together, block of centers by block
                ids[t:] = wide(xs[t:], nx2[t:], nx[t:], ra_c[t:], v[o[t:]], cs, near_lb2, need[t:], wide_at, b)
                break
            cs.upto(m_here)
            if gproj is not None and m_here >= sizes.PROJ_MIN_COLS:
                ids[t:e] = projected_tile(xs[t:e], nx2[t:e], nx[t:e], thr[t:e], cs, m_here,
                                          lambda: v[o[t:e]], b, gproj)
                t = e
                continue
            g = xs[t:e] @ cs.sh[:m_here].T
            ids[t:e] = tile_candidates(g, nx2[t:e], cs.ny2[:m_here], nx[t:e], cs.ny[:m_here],
                                       lambda: v[o[t:e]], cs, b)
            t = e
        out[rows_c] = rep_near[ids]


def projected_tile(xs, nx2, nx, thr, cs: Near, m: int, rows, b: Bounds, proj: GroupProjection) -> np.ndarray:
    """tile_candidates for the tile's rows against the group's first m
    centers, under the projected bound: the GEMM of the projections (d
    values a row) bounds every pair, and only the pairs whose bound is below
    the row's thr get a distance, from a direct dot product in C++ (the same
    candidates test)."""
    pa, rt = proj.rows(xs, sq_norms(xs)[0])
    rt = np.ascontiguousarray(np.vstack([rt, thr[None, :]]).T)
    gp = pa @ cs.pb[:m].T
    cand, _, over_r, over_c, kept = bounds._C.certify_tile_proj(
        xs, cs.sh[:m], nx2, cs.ny2[:m], nx, cs.ny[:m], gp, rt, np.ascontiguousarray(cs.col[:, :m]),
        proj.e, proj.ea, proj.ea0, sizes.PROJ_ROUNDS, sizes.PROJ_FRAC, b.kappa, b.tiny, b.kernel_rel, b.k)
    if sizes.PROJ_STATS is not None:
        sizes.PROJ_STATS.append((xs.shape[0], m, kept))
    if over_r.size:
        over = np.unique(over_r)
        cand[over] = rank_exact(np.asarray(over_r, dtype=np.int64), np.asarray(over_c, dtype=np.int64),
                                rows(), cs, xs.shape[0], b.k)[over]
    return cand


def wide(xs, nx2, nx, ra, v, cs: Near, near_lb2, need, block: int, b: Bounds) -> np.ndarray:
    """Candidates (as tile_candidates gives them) for rows, sorted by need
    (the centers their reach holds), that reach more centers than one block
    holds. A first pass over the blocks finds each row's smallest GEMM
    distance (and the bound ub from it), which also narrows each row's
    reach; a second pass collects the centers whose lower bound is within
    ub. Each block is read once a pass, and each row meets only the blocks
    within its reach."""
    r = xs.shape[0]
    need = np.asarray(need, dtype=np.int64)
    dmin = np.full(r, np.inf, dtype=xs.dtype)
    ny_at = np.zeros(r)
    batch = max(1, sizes.TILE // block)

    def blocks(upto):
        """(c0, block, rows in reach of it) for the blocks within upto[-1]."""
        for c0 in range(0, int(upto.max()), block):
            first = int(np.searchsorted(upto, c0, side="right"))  # rows reaching past c0
            yield c0, cs.block(c0, min(int(upto.max()), c0 + block)), first

    for c0, (sh, ny, ny2), first in blocks(need):
        for s in range(first, r, batch):
            e = min(r, s + batch)
            g = gemm_part(xs[s:e], sh, ny2)
            g += nx2[s:e, None]
            j = np.argmin(g, axis=1)
            d = g[np.arange(e - s), j]
            better = d < dmin[s:e]  # strict: the lowest column keeps ties
            dmin[s:e][better] = d[better]
            ny_at[s:e][better] = ny[j[better]]
    d0 = dmin.astype(np.float64) + b.kappa * (nx + ny_at) ** 2 + b.tiny
    ub = d0 * (1.0 + b.kernel_rel) + b.tiny
    need2 = np.minimum(need, np.maximum(np.searchsorted(near_lb2, b.reach2_near(ra, d0), side="right"), 1))
    o = np.argsort(need2, kind="stable")
    need2 = need2[o]
    hr, hc, hk = [], [], []
    for c0, (sh, ny, ny2), first in blocks(need2):
        for s in range(first, r, batch):
            rows = o[s:s + batch]
            g = gemm_part(xs[rows], sh, ny2)
            g += nx2[rows, None]
            thr = np.nextafter((ub[rows] + b.kappa * (nx[rows] + ny.max()) ** 2 + b.tiny).astype(g.dtype), np.inf)
            rr, cc = np.nonzero(g <= thr[:, None])
            key = g[rr, cc].astype(np.float64)
            rr = rows[rr]
            keep = key - b.kappa * (nx[rr] + ny[cc]) ** 2 - b.tiny <= ub[rr]
            hr.append(rr[keep])
            hc.append(cc[keep] + c0)
            hk.append(key[keep])
    hit_r, hit_c, key = np.concatenate(hr), np.concatenate(hc), np.concatenate(hk)
    # the same order as one tile's hits (by row, then column)
    srt = np.lexsort((hit_c, hit_r))
    return rank(hit_r[srt], hit_c[srt], key[srt], lambda: v, cs, r, b.k)


def gemm_part(xs: np.ndarray, ys: np.ndarray, ny2: np.ndarray) -> np.ndarray:
    """||y'||^2 - 2 x'.y' (rows x centers) in the accumulation dtype: one
    GEMM; the scaling by -2 is exact."""
    g = xs @ ys.T
    g *= -2.0
    g += ny2[None, :]
    return g
