"""A slow, obviously correct float64 oracle for k-center greedy, and a
checker of greedy validity. Written for reading, not for speed."""
from __future__ import annotations

import numpy as np


def as_float64_rows(x, from_logits=False, temperature=1.0) -> np.ndarray:
    """The rows as the kernels see them, in float64 (softmax for logits)."""
    if type(x).__module__.startswith("torch"):  # a torch tensor (torch need not be installed)
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if from_logits:
        z = x / temperature
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        x = e / e.sum(axis=1, keepdims=True)
    return x


def reference_kcenter(x64: np.ndarray, labeled, budget: int):
    """Picks and radii of k-center greedy, recomputing every distance to
    every center at each step (as the paper's code does), in float64."""
    n = x64.shape[0]
    centers = [int(i) for i in labeled]
    taken = set(centers)
    picks, radii = [], []
    if budget and not centers:
        mean = x64.mean(axis=0)
        d = np.sqrt(((x64 - mean) ** 2).sum(axis=1))
        first = int(np.argmax(d))  # numpy argmax: lowest index on ties
        picks.append(first)
        radii.append(np.inf)
        centers.append(first)
        taken.add(first)
    while len(picks) < budget:
        best, best_d = -1, -1.0
        for i in range(n):
            if i in taken:
                continue
            d = min(np.sqrt(((x64[i] - x64[c]) ** 2).sum()) for c in centers)
            if d > best_d:  # strict: the lowest index wins ties
                best, best_d = i, d
        picks.append(best)
        radii.append(best_d)
        centers.append(best)
        taken.add(best)
    return np.array(picks, dtype=np.int64), np.array(radii, dtype=np.float64)


def check_greedy_valid(x64: np.ndarray, labeled, picks, rtol: float = 1e-5) -> None:
    """Assert that every pick, given the earlier picks, is within `rtol` of
    the farthest available row (recomputed in float64)."""
    n = x64.shape[0]
    picks = [int(p) for p in picks]
    labeled = [int(i) for i in labeled]
    assert len(set(picks)) == len(picks), "duplicate picks"
    assert not set(picks) & set(labeled), "a labeled row was picked"
    mind = np.full(n, np.inf)
    taken = np.zeros(n, dtype=bool)
    for c in labeled:
        mind = np.minimum(mind, ((x64 - x64[c]) ** 2).sum(axis=1))
        taken[c] = True
    for t, p in enumerate(picks):
        if t == 0 and not labeled:
            mean = x64.mean(axis=0)
            d = ((x64 - mean) ** 2).sum(axis=1)
            assert d[p] >= d.max() * (1 - rtol) ** 2, f"first pick {p} is not farthest from the mean"
        else:
            avail = np.where(taken, -1.0, mind)
            best = np.sqrt(avail.max())
            got = np.sqrt(mind[p])
            assert not taken[p]
            assert got >= best * (1 - rtol) - 1e-12, f"pick {t} (row {p}): {got} < best {best}"
        taken[p] = True
        mind = np.minimum(mind, ((x64 - x64[p]) ** 2).sum(axis=1))
