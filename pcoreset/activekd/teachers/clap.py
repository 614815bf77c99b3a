"""``fewshot``: a CLAP-style few-shot CLIP teacher (Silva-Rodriguez et al., CVPR
2024): the zero-shot CLIP logits before any label, then, after each round's
labels, a class-adaptive linear probe on the cached CLIP image features."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InvalidInputError
from ..datasets.base import Dataset
from .clip import CLIP_LOGIT_SCALE, CLIPTeacher, resolve_templates_for


def fit_clap(feats: np.ndarray, labels: np.ndarray, zs_weights: np.ndarray, scale: float = CLIP_LOGIT_SCALE,
             *, penalty: float = 1.0, steps: int = 300, lr: float = 1e-3) -> np.ndarray:
    """CLAP-style class-adaptive linear probe (Silva-Rodriguez et al., CVPR 2024).

    feats: (L, D) unit image features of the labeled rows; labels: (L,) int class
    ids; zs_weights: (C, D) zero-shot class embeddings (the initialisation).
    Minimises mean CE(scale * feats @ W^T, labels) + penalty * sum_c lambda_c
    ||W_c - zs_c||^2, where lambda_c is the zero-shot model's mean probability of
    the true class on class c's labeled rows (classes the zero-shot model already
    gets right stay close to their text embedding) and 1 for classes with no
    labeled row. Full-batch Adam, deterministic. Returns W: (C, D) float32."""
    x = torch.as_tensor(np.asarray(feats, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    w0 = torch.as_tensor(np.asarray(zs_weights, dtype=np.float32))
    num_classes = w0.shape[0]
    if len(y) == 0:
        return w0.numpy().copy()
    with torch.no_grad():
        p_true = (scale * x @ w0.T).softmax(1).gather(1, y[:, None]).squeeze(1)
        counts = torch.bincount(y, minlength=num_classes).float()
        sums = torch.zeros(num_classes).index_add_(0, y, p_true)
        lam = torch.where(counts > 0, sums / counts.clamp(min=1), torch.ones(num_classes))
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(scale * x @ w.T, y) + penalty * (lam[:, None] * (w - w0) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return w.detach().numpy().astype(np.float32)


class FewShotCLIPTeacher(CLIPTeacher):
    """Few-shot CLIP: zero-shot logits before any label, then after each round's
    labels a CLAP probe (:func:`fit_clap`) on the cached image features."""

    name = "fewshot"
    adaptive = True

    def __init__(self, *args, penalty: float = 1.0, steps: int = 300, lr: float = 1e-3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.penalty, self.steps, self.lr = float(penalty), int(steps), float(lr)

    def identity(self):
        return {**super().identity(), "probe": {"penalty": self.penalty, "steps": self.steps, "lr": self.lr}}

    def adapt(self, ds: Dataset, labeled_idx: np.ndarray, labels: np.ndarray,
              base_logits: np.ndarray) -> Optional[np.ndarray]:
        """(N, C) logits of the probe refit on rows `labeled_idx` with classes `labels`."""
        labeled_idx = np.asarray(labeled_idx, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        if labeled_idx.shape != labels.shape:
            raise InvalidInputError(f"labeled_idx has shape {labeled_idx.shape} but labels {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= ds.num_classes):
            raise InvalidInputError(f"labels must be in 0..{ds.num_classes - 1}; got {labels.min()}..{labels.max()}")
        feats = self.image_features(ds)
        w0 = self.text_weights(ds.class_names, resolve_templates_for(self, ds))
        w = fit_clap(feats[labeled_idx], labels, w0, self.scale, penalty=self.penalty, steps=self.steps, lr=self.lr)
        return (self.scale * feats @ w.T).astype(np.float32)
