import os

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the NumPy-only install (pip install pcoreset): tests that need torch skip
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason='needs torch (pip install "pcoreset[torch]")')
# the backends every selection test runs on: the C++ kernel, and torch where it is installed
CPU_BACKENDS = ["cpu"] + (["torch"] if torch is not None else [])

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def clustered_pool(n, c, k=8, noise=2.0, seed=0, dtype=np.float32):
    """Softmax of one of k cluster centres plus Gaussian noise: the kind of
    pool PCoreSet sees (teacher predictions cluster in the simplex)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4.0, size=(k, c))
    logits = centres[rng.integers(0, k, size=n)] + rng.normal(0, noise, size=(n, c))
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
