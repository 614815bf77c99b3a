"""Dual-head students (docs/guide/activekd.rst): a shared backbone with a CE head and a KD head.

Loss (distill=True):  0.5 * CE(ce_head, labeled)
                    + 0.5 * (KD(kd_head, labeled) + KD(kd_head, unlabeled)),
KD = T^2 * KL(softmax(teacher / T) || softmax(student / T)), T = cfg.temperature.
Prediction: 0.5 * softmax(ce) + 0.5 * softmax(kd). With distill=False ("No Distill")
only the CE head is trained and the prediction is softmax(ce).

A student subclasses :class:`DualHeadStudent`: it builds the backbone and turns
rows into batch inputs; the training loop, the losses and the prediction are
shared (and so are the pairing rules: with the same seed, every strategy's
student starts from the same weights and visits the pool in the same order)."""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._torch import torch_threads
from ..config import RunConfig
from ..datasets.base import Dataset


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


def unlabeled_order(pool_rows: torch.Tensor, is_unlabeled: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One pass over the unlabeled rows: a random permutation of the whole pool
    (`pool_rows`, sorted), drawn from `gen`, with the labeled rows left out.

    The permutation depends only on the pool size and the generator's state, not
    on which rows are labeled: with the same seed, two strategies visit the rows
    that are unlabeled for both in the same relative order (paired runs)."""
    seq = pool_rows[torch.randperm(len(pool_rows), generator=gen)]
    return seq[is_unlabeled[seq]]


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
        with torch_threads(self.num_threads):
            return self._fit(*args, **kwargs)

    def predict(self, rows: np.ndarray, batch_size: int = 4096):
        """(ce_logits, kd_logits or None, features, probs) as float32 numpy for `rows`."""
        with torch_threads(self.num_threads):
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
        pool_rows = torch.sort(torch.cat([labeled_idx, unl])).values
        is_unl = torch.zeros(int(pool_rows.max()) + 1 if len(pool_rows) else 0, dtype=torch.bool)
        is_unl[unl] = True
        unl_order = unlabeled_order(pool_rows, is_unl, gen) if distill and len(unl) else unl
        cursor = 0
        for _ in it:
            if len(labeled_idx) > cfg.batch_size:
                pick = torch.randint(len(labeled_idx), (cfg.batch_size,), generator=gen)
            else:
                pick = torch.arange(len(labeled_idx))
            lab_rows, y = labeled_idx[pick], y_all[pick]
            if distill and len(unl):
                if cursor + cfg.batch_size > len(unl_order):
                    unl_order, cursor = unlabeled_order(pool_rows, is_unl, gen), 0
                unl_rows = unl_order[cursor:cursor + cfg.batch_size]
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
