"""pcoreset against fpsample (PyPI), an independent exact farthest-point
sampling: the same picks, in the same order, on pools without ties."""
import numpy as np
import pytest

import pcoreset

fpsample = pytest.importorskip("fpsample", reason="fpsample is in the test extra: pip install '.[test]'")


@pytest.mark.parametrize("dim", [3, 10])
@pytest.mark.parametrize("threads", [1, 2])
def test_same_picks_as_fpsample_fps_sampling(dim, threads):
    # fps_sampling(start_idx=0) keeps row 0 and then the farthest row each
    # step: k-center greedy with row 0 labeled
    x = np.random.default_rng(dim).random((30_000, dim)).astype(np.float32)
    theirs = np.asarray(fpsample.fps_sampling(x, 400, start_idx=0))
    ours = pcoreset.kcenter_greedy(x, [0], 399, num_threads=threads)
    assert theirs[0] == 0
    np.testing.assert_array_equal(ours, theirs[1:])


def test_quickfps_order_is_a_greedy_order_pcoreset_reproduces():
    # QuickFPS (bucket_fps_kdline_sampling) chooses its own first row; from
    # that row, pcoreset's cell steps give the same sequence
    x = np.random.default_rng(4).random((50_000, 3)).astype(np.float32)
    theirs = np.asarray(fpsample.bucket_fps_kdline_sampling(x, 500, h=7))
    ours = pcoreset.kcenter_greedy(x, [int(theirs[0])], 499)
    np.testing.assert_array_equal(ours, theirs[1:])
