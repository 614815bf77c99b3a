"""
Coverage curve: choosing a budget
=================================

After each pick, the **coverage radius** is the distance from the farthest
unlabeled row to its nearest center (a labeled row or an earlier pick), in
probability space. PCoreSet makes it fall as fast as a greedy can (within a
factor 2 of the best possible k centers); random picks leave far rows
uncovered much longer. Where the curve flattens, more labels buy little
coverage: a way to choose the budget (``pcoreset coverage`` draws the same
curve from a ``.npy`` file).

The pool here stands in for a classifier's softmax outputs: 6,000 rows around
10 class prototypes, some confident, some unsure, 20 rows labeled.
"""
import matplotlib.pyplot as plt
import numpy as np

import pcoreset

rng = np.random.default_rng(0)
n, c = 6000, 10
prototypes = rng.normal(0.0, 4.0, (c, c))
logits = prototypes[rng.integers(0, c, n)] + rng.normal(0.0, 1.5, (n, c))
probs = np.exp(logits - logits.max(axis=1, keepdims=True))
probs /= probs.sum(axis=1, keepdims=True)
labeled = rng.choice(n, 20, replace=False)

budget = 400
# radii[k]: the coverage radius when k rows have been picked (the distance of
# the (k+1)-th pick to its nearest center)
picks, radii = pcoreset.select(probs, labeled, budget, return_radii=True)


def coverage_of(order):
    """The coverage radius after each pick of `order` (NumPy, for comparison)."""
    nearest = np.full(n, np.inf)
    for row in labeled:
        nearest = np.minimum(nearest, np.linalg.norm(probs - probs[row], axis=1))
    taken = np.zeros(n, bool)
    taken[labeled] = True
    out = []
    for row in order:
        out.append(nearest[~taken].max())
        taken[row] = True
        nearest = np.minimum(nearest, np.linalg.norm(probs - probs[row], axis=1))
    return np.array(out)


random_order = rng.permutation(np.setdiff1d(np.arange(n), labeled))[:budget]
random_radii = coverage_of(random_order)
assert np.allclose(coverage_of(picks), radii)  # the same definition as pcoreset's radii

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(np.arange(budget), radii, lw=2.2, label="PCoreSet (k-center greedy)")
ax.plot(np.arange(budget), random_radii, lw=1.4, label="random picks")
ax.set_xlabel("rows picked (beyond the 20 labeled)")
ax.set_ylabel("coverage radius (L2 in probability space)")
ax.set_title("Farthest unlabeled row from its nearest center")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The radius at a few budgets, and how many random picks reach the same one:
for k in (50, 100, 200, 399):
    reached = np.flatnonzero(random_radii <= radii[k])
    print(f"{k:4d} picks: PCoreSet radius {radii[k]:.3f}; random picks "
          + (f"need {reached[0]} for it" if reached.size else f"stay above it for all {budget}"))
