"""Dual-head students (DESIGN.md §5): a shared backbone with a CE head and a KD head.

Loss (distill=True):  0.5 * CE(ce_head, labeled)
                    + 0.5 * (KD(kd_head, labeled) + KD(kd_head, unlabeled)),
KD = T^2 * KL(softmax(teacher / T) || softmax(student / T)), T = cfg.temperature.
Prediction: 0.5 * softmax(ce) + 0.5 * softmax(kd). With distill=False ("No Distill")
only the CE head is trained and the prediction is softmax(ce).

The text student is a hashed bag of words, bigrams and character trigrams through an EmbeddingBag and
one hidden layer. Other modalities subclass :class:`DualHeadStudent` (backbone and
batch inputs) and register a factory with :func:`register_student`."""
from __future__ import annotations

import contextlib
import math
import re
import zlib
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from .config import RunConfig
from .data import Dataset


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), mean over rows."""
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return kl.mean() * (t * t)


class DualHead(nn.Module):
    """backbone(x) -> (B, D) features; ce_head, kd_head: D -> C."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.ce_head = nn.Linear(feature_dim, num_classes)
        self.kd_head = nn.Linear(feature_dim, num_classes)

    def forward(self, *inputs):
        feats = self.backbone(*inputs)
        return self.ce_head(feats), self.kd_head(feats), feats


@contextlib.contextmanager
def _torch_threads(n: Optional[int]):
    """Run with `n` intra-op threads (None: leave torch's setting alone)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class DualHeadStudent:
    """Trains a fresh DualHead on each call to fit(); subclasses say how rows become
    model inputs (`inputs(rows, train)`) and build the backbone (`make_backbone()`
    -> (module, feature_dim)). `num_threads`: intra-op threads while training and
    predicting (None = torch's default; small models run fastest on one)."""

    num_threads: Optional[int] = None

    def __init__(self, cfg: RunConfig, ds: Dataset) -> None:
        self.cfg = cfg
        self.ds = ds
        self.model: Optional[DualHead] = None

    def make_backbone(self) -> Tuple[nn.Module, int]:
        raise NotImplementedError

    def inputs(self, rows: np.ndarray, train: bool) -> tuple:
        raise NotImplementedError

    def fit(self, *args, **kwargs) -> Dict[str, float]:
        with _torch_threads(self.num_threads):
            return self._fit(*args, **kwargs)

    def predict(self, rows: np.ndarray, batch_size: int = 4096):
        """(ce_logits, kd_logits or None, features, probs) as float32 numpy for `rows`."""
        with _torch_threads(self.num_threads):
            return self._predict(rows, batch_size)

    def _fit(self, labeled_idx: np.ndarray, labels: np.ndarray, teacher_logits: Optional[np.ndarray],
            unlabeled_idx: np.ndarray, *, distill: bool, seed: int, progress: bool = False) -> Dict[str, float]:
        """Train from scratch. labeled_idx/labels: rows and their classes;
        teacher_logits: (N, C) for every dataset row (needed when distill);
        unlabeled_idx: pool rows without labels (KD targets only)."""
        cfg = self.cfg
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        backbone, dim = self.make_backbone()
        model = DualHead(backbone, dim, self.ds.num_classes)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        labeled_idx = torch.as_tensor(np.asarray(labeled_idx, dtype=np.int64))
        y_all = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        unl = torch.as_tensor(np.asarray(unlabeled_idx, dtype=np.int64))
        t_all = torch.as_tensor(teacher_logits) if distill else None
        n_pool = len(labeled_idx) + len(unl)
        steps_per_epoch = max(1, math.ceil(n_pool / cfg.batch_size))
        total = cfg.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        model.train()
        it = range(total)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="train", leave=False, unit="step")
        last = 0.0
        unl_perm = torch.randperm(len(unl), generator=gen) if len(unl) else unl
        cursor = 0
        for _ in it:
            if len(labeled_idx) > cfg.batch_size:
                pick = torch.randint(len(labeled_idx), (cfg.batch_size,), generator=gen)
            else:
                pick = torch.arange(len(labeled_idx))
            lab_rows, y = labeled_idx[pick], y_all[pick]
            if distill and len(unl):
                if cursor + cfg.batch_size > len(unl_perm):
                    unl_perm, cursor = torch.randperm(len(unl), generator=gen), 0
                unl_rows = unl[unl_perm[cursor:cursor + cfg.batch_size]]
                cursor += cfg.batch_size
            else:
                unl_rows = unl[:0]
            rows = torch.cat([lab_rows, unl_rows]).numpy()
            ce, kd, _ = model(*self.inputs(rows, train=True))
            n_lab = len(lab_rows)
            loss = ce.new_zeros(())
            if n_lab:
                loss = F.cross_entropy(ce[:n_lab], y)
            if distill:
                t = t_all[torch.as_tensor(rows)]
                kd_lab = kd_loss(kd[:n_lab], t[:n_lab], cfg.temperature) if n_lab else loss.new_zeros(())
                kd_unl = kd_loss(kd[n_lab:], t[n_lab:], cfg.temperature) if len(unl_rows) else loss.new_zeros(())
                loss = 0.5 * loss + 0.5 * (kd_lab + kd_unl)
            if loss.requires_grad:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
            last = float(loss.detach())
        model.eval()
        self.model = model
        self.distill = distill
        return {"final_loss": last, "steps": total}

    @torch.no_grad()
    def _predict(self, rows: np.ndarray, batch_size: int):
        if self.model is None:
            raise RuntimeError("predict() before fit()")
        outs = []
        rows = np.asarray(rows, dtype=np.int64)
        for s in range(0, len(rows), batch_size):
            ce, kd, feats = self.model(*self.inputs(rows[s:s + batch_size], train=False))
            outs.append((ce, kd, feats))
        ce = torch.cat([o[0] for o in outs]) if outs else torch.zeros(0, self.ds.num_classes)
        kd = torch.cat([o[1] for o in outs]) if outs else torch.zeros(0, self.ds.num_classes)
        feats = torch.cat([o[2] for o in outs]) if outs else torch.zeros(0, 1)
        if self.distill:
            probs = 0.5 * ce.softmax(1) + 0.5 * kd.softmax(1)
            kd_np = kd.numpy()
        else:
            probs = ce.softmax(1)
            kd_np = None
        return ce.numpy(), kd_np, feats.numpy(), probs.numpy().astype(np.float32)


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


StudentFactory = Callable[[RunConfig, Dataset], DualHeadStudent]
_STUDENTS: Dict[str, StudentFactory] = {"bow": BowStudent}


def register_student(name: str, factory: StudentFactory) -> None:
    """Register `factory(cfg, dataset) -> DualHeadStudent` under `name` (``--student NAME``)."""
    _STUDENTS[name] = factory


def build_student(cfg: RunConfig, ds: Dataset) -> DualHeadStudent:
    if cfg.student not in _STUDENTS:
        raise InvalidInputError(f"student={cfg.student!r} is not known; choose one of {sorted(_STUDENTS)}")
    return _STUDENTS[cfg.student](cfg, ds)
