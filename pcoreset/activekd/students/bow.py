"""``bow``: the text student, a hashed bag of words, word bigrams and character
trigrams through an EmbeddingBag and one hidden layer."""
from __future__ import annotations

import re
import zlib

import numpy as np
import torch
from torch import nn

from ...errors import InvalidInputError
from ..config import RunConfig
from ..datasets.base import Dataset
from .base import DualHeadStudent

_TOKEN = re.compile(r"[a-z0-9]+")


def hash_tokens(text: str, num_buckets: int) -> list:
    """Stable (crc32) bucket ids of the lower-cased words, word bigrams and character
    trigrams of each word (fastText-style subwords: glosses use many rare words, and
    trigrams let the student generalise across their forms)."""
    words = _TOKEN.findall(text.lower())
    grams = words + [a + " " + b for a, b in zip(words, words[1:])]
    for w in words:
        w = f"<{w}>"
        grams.extend(w[i:i + 3] for i in range(len(w) - 2))
    return [zlib.crc32(g.encode()) % num_buckets for g in grams] or [0]


class _BowBackbone(nn.Module):
    def __init__(self, num_buckets: int, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(num_buckets, embed_dim, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.ReLU())

    def forward(self, flat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.bag(flat, offsets))


class BowStudent(DualHeadStudent):
    """Hashed bag of words, bigrams and character trigrams -> EmbeddingBag(mean) ->
    Linear+ReLU -> two heads. Its steps are a few milliseconds of work, so it runs
    on one thread: more threads only wait on each other (badly on a busy CPU)."""

    num_threads = 1

    def __init__(self, cfg: RunConfig, ds: Dataset) -> None:
        super().__init__(cfg, ds)
        if ds.texts is None:
            raise InvalidInputError(f"student='bow' needs a text dataset; {ds.name!r} has no texts")
        toks = [hash_tokens(t, cfg.num_buckets) for t in ds.texts]
        self._lens = np.array([len(t) for t in toks], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._lens)[:-1]]).astype(np.int64)
        self._flat = np.fromiter((b for t in toks for b in t), dtype=np.int64, count=int(self._lens.sum()))

    def make_backbone(self):
        return _BowBackbone(self.cfg.num_buckets, self.cfg.embed_dim, self.cfg.hidden_dim), self.cfg.hidden_dim

    def inputs(self, rows, train):
        lens = self._lens[rows]
        offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
        idx = np.concatenate([self._flat[s:s + n] for s, n in zip(self._starts[rows], lens)]) if len(rows) else \
            np.zeros(0, np.int64)
        return torch.from_numpy(idx), torch.from_numpy(offsets.astype(np.int64))
