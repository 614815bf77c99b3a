"""pytest-benchmark suite: `pytest benchmarks/test_bench_select.py`.

Not part of the test run (testpaths = tests); compare runs with
`--benchmark-save=NAME` and `--benchmark-compare`.
"""
import numpy as np
import pytest

import pcoreset
from pcoreset.bench import clustered_pool, torch_running_min

N, C, B = 50_000, 100, 200


@pytest.fixture(scope="module")
def pool():
    x = clustered_pool(N, C, seed=0)
    labeled = np.arange(0, N, 100, dtype=np.int64)
    return x, labeled


@pytest.mark.parametrize("backend", ["cpu", "torch", "faiss"])
def test_select_backend(benchmark, pool, backend):
    x, labeled = pool
    if backend == "faiss":
        pytest.importorskip("faiss")
    benchmark.group = f"select N={N} C={C} B={B}"
    benchmark.pedantic(pcoreset.select, args=(x, labeled, B), kwargs={"backend": backend}, rounds=3)


def test_select_cpu_float16(benchmark, pool):
    x, labeled = pool
    x16 = x.astype(np.float16)
    benchmark.group = f"select N={N} C={C} B={B}"
    benchmark.pedantic(pcoreset.select, args=(x16, labeled, B), kwargs={"backend": "cpu"}, rounds=3)


def test_torch_running_min(benchmark, pool):
    x, labeled = pool
    benchmark.group = f"select N={N} C={C} B={B}"
    benchmark.pedantic(torch_running_min, args=(x, labeled, B), rounds=3)
