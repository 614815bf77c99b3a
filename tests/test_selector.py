"""pcoreset.Selector: continuing a selection across calls, on every backend
that runs here and every dtype; each continuation must equal one call."""
import io

import numpy as np
import pytest
import torch

import pcoreset
from pcoreset import InvalidInputError, InvalidTypeError, PoolExhaustedError, Selector
from conftest import clustered_pool

BACKENDS = ["cpu", "torch"] + (["faiss"] if pcoreset.backends.get("faiss").unavailable() is None else [])
DTYPES = ["float16", "bfloat16", "float32", "float64"]


def pool(dtype, n=1500, c=12, seed=0):
    x = clustered_pool(n, c, seed=seed, dtype=np.float64)
    x[n - 40:] = x[:40]  # exact duplicates: ties the index rule decides
    if dtype == "bfloat16":
        return torch.from_numpy(x).to(torch.bfloat16)
    return x.astype(dtype)


def np_(a):
    return a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("labeled", [None, [5, 77, 900]])
def test_next_then_next_equals_one_select(backend, dtype, labeled):
    x = pool(dtype)
    sel = Selector(x, labeled, backend=backend)
    a = sel.next(17)
    b = sel.next(0)
    c = sel.next(40)
    want, want_r = pcoreset.select(x, labeled, 57, backend=backend, return_radii=True)
    np.testing.assert_array_equal(np.concatenate([np_(a), np_(b), np_(c)]), np_(want))
    np.testing.assert_array_equal(np_(sel.picks), np_(want))
    np.testing.assert_array_equal(np_(sel.radii), np_(want_r))
    assert sel.n_centers == (len(labeled) if labeled else 0) + 57
    assert sel.n_available == 1500 - sel.n_centers
    # the coverage radius is the next pick's radius
    nxt = pcoreset.select(x, labeled, 58, backend=backend, return_radii=True)[1][-1]
    assert sel.radius == pytest.approx(float(nxt), rel=0, abs=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_centers_vectors_continue(backend):
    x = pool("float32")
    v = clustered_pool(30, 12, seed=3)
    sel = Selector(x, [1], centers=v, backend=backend)
    got = np.concatenate([sel.next(10), sel.next(10)])
    np.testing.assert_array_equal(got, pcoreset.select(x, [1], 20, centers=v, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_add_centers_equals_a_fresh_select_with_them_labeled(backend, dtype):
    x = pool(dtype)
    sel = Selector(x, [3], backend=backend)
    first = np_(sel.next(12))
    out_of_order = [20, 300, 301, 1000]
    sel.add_centers(out_of_order + [int(first[0]), 3])  # picked and labeled rows are accepted
    rest = np_(sel.next(25))
    fresh = pcoreset.select(x, [3] + first.tolist() + out_of_order, 25, backend=backend)
    np.testing.assert_array_equal(rest, np_(fresh))
    assert not set(rest.tolist()) & set(out_of_order)
    # many rows at once take the start's path (exact, or certified)
    many = np.arange(500, 560)
    sel.add_centers(many)
    more = np_(sel.next(10))
    centers = [3] + first.tolist() + out_of_order + rest.tolist() + many.tolist()
    np.testing.assert_array_equal(more, np_(pcoreset.select(x, centers, 10, backend=backend)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_excluded_rows_are_never_picked(backend):
    x = pool("float32")
    sel = Selector(x, [0], backend=backend)
    full = np_(pcoreset.select(x, [0], 60, backend=backend))
    skip = full[5:15].tolist()  # rows that will not be picked: excluded in advance
    sel.exclude(skip)
    got = np_(sel.next(60))
    assert not set(got.tolist()) & set(skip)
    ref = Selector(x, [0], backend=backend)
    ref.exclude(skip[::-1])
    np.testing.assert_array_equal(np_(ref.next(60)), got)
    assert set(sel.excluded.tolist()) == set(skip)


@pytest.mark.parametrize("backend", BACKENDS)
def test_excluding_picks_removes_them_as_centers(backend):
    # a person could not label some of the rows picked: they stop being
    # centers and are never picked again; the rest continues as a fresh
    # selection with the other centers
    x = pool("float64")
    sel = Selector(x, [2], backend=backend)
    batch = np_(sel.next(20))
    skipped = batch[[3, 7, 8]]
    sel.exclude(skipped)
    assert sel.n_centers == 1 + 17
    rest = np_(sel.next(15))
    kept = [2] + [int(r) for r in batch if r not in set(skipped.tolist())]
    ref = Selector(x, kept, backend=backend)
    ref.exclude(skipped)
    np.testing.assert_array_equal(rest, np_(ref.next(15)))
    assert not set(rest.tolist()) & set(skipped.tolist())
    with pytest.raises(InvalidInputError, match="rows has a labeled row: 2"):
        sel.exclude([2])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_until_stops_at_the_first_radius_at_or_below(backend, dtype):
    x = pool(dtype)
    full, radii = pcoreset.select(x, [7], 200, backend=backend, return_radii=True)
    radii = np_(radii)
    r = float(radii[120])  # a radius reached at pick 120 (ties: the first pick with it)
    first = int(np.argmax(radii <= r))
    sel = Selector(x, [7], backend=backend)
    picks, got_r = sel.until(r)
    np.testing.assert_array_equal(np_(picks), np_(full)[:first])
    assert np.all(np_(got_r) > r) and sel.radius <= r
    # max_picks caps it; continuing afterwards gives the same sequence
    sel2 = Selector(x, [7], backend=backend)
    p1, _ = sel2.until(r, max_picks=30)
    p2 = sel2.next(first - 30)
    np.testing.assert_array_equal(np.concatenate([np_(p1), np_(p2)]), np_(full)[:first])
    # select() does the same in one call
    np.testing.assert_array_equal(np_(pcoreset.select(x, [7], stop_radius=r, backend=backend)), np_(full)[:first])
    capped = pcoreset.select(x, [7], stop_radius=r, max_budget=10, backend=backend)
    np.testing.assert_array_equal(np_(capped), np_(full)[:10])
    assert len(Selector(x, [7], backend=backend).until(10.0)[0]) == 0  # covered already


def test_until_without_centers_takes_the_mean_pick_first():
    x = pool("float32")
    sel = Selector(x)
    picks, radii = sel.until(0.0, max_picks=5)
    assert np.isinf(radii[0]) and len(picks) == 5
    np.testing.assert_array_equal(picks, pcoreset.select(x, None, 5))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_state_dict_round_trip(backend, dtype, tmp_path):
    x = pool(dtype)
    v = clustered_pool(5, 12, seed=4)
    sel = Selector(x, [4, 9], centers=v, backend=backend)
    sel.next(20)
    sel.add_centers([100, 200])
    sel.exclude([300, int(np_(sel.picks)[2])])
    sel.next(7)
    sd = sel.state_dict()
    buf = io.BytesIO()
    np.savez(buf, **sd)
    buf.seek(0)
    loaded = dict(np.load(buf, allow_pickle=False))
    back = Selector.from_state_dict(x, loaded, backend=backend)
    np.testing.assert_array_equal(np_(back.picks), np_(sel.picks))
    np.testing.assert_array_equal(np_(back.excluded), np_(sel.excluded))
    assert back.n_centers == sel.n_centers and back.radius == sel.radius
    np.testing.assert_array_equal(np_(back.next(30)), np_(sel.next(30)))


def test_state_dict_moves_between_backends():
    x = pool("float32")
    sel = Selector(x, [1], backend="cpu")
    sel.next(25)
    sd = sel.state_dict()
    other = Selector.from_state_dict(x, sd, backend="torch")
    np.testing.assert_array_equal(other.next(20), sel.next(20))


def test_state_dict_of_another_pool_is_refused():
    x = pool("float32")
    sel = Selector(x, [1])
    sel.next(5)
    sd = sel.state_dict()
    y = x.copy()
    y[10] = y[11]
    with pytest.raises(InvalidInputError, match="another pool.*checksum"):
        Selector.from_state_dict(y, sd)
    with pytest.raises(InvalidInputError, match=r"shape \(1500, 12\), but probs has shape \(1400, 12\)"):
        Selector.from_state_dict(x[:1400], sd)
    with pytest.raises(InvalidInputError, match="float32 pool, but probs is float64"):
        Selector.from_state_dict(x.astype(np.float64), sd)
    bad = dict(sd)
    del bad["mind"]
    with pytest.raises(InvalidInputError, match=r"missing \['mind'\]"):
        Selector.from_state_dict(x, bad)
    bad = dict(sd, picks=sd["picks"].astype(np.float64))
    with pytest.raises(InvalidInputError, match=r"state\['picks'\] has dtype float64"):
        Selector.from_state_dict(x, bad)
    with pytest.raises(InvalidTypeError, match="state must be a dict of arrays"):
        Selector.from_state_dict(x, [1, 2])


def test_bad_arguments_name_themselves():
    x = pool("float32")
    sel = Selector(x, [1])
    with pytest.raises(InvalidInputError, match="k must be >= 0, got -1"):
        sel.next(-1)
    with pytest.raises(InvalidTypeError, match="k must be an integer, got 2.5"):
        sel.next(2.5)
    with pytest.raises(PoolExhaustedError, match="k=1500 but only 1499"):
        sel.next(1500)
    with pytest.raises(InvalidInputError, match="radius must be a distance >= 0, got nan"):
        sel.until(float("nan"))
    with pytest.raises(InvalidInputError, match="radius must be a distance >= 0, got -0.5"):
        sel.until(-0.5)
    with pytest.raises(InvalidInputError, match="max_picks must be >= 0, got -3"):
        sel.until(0.1, max_picks=-3)
    with pytest.raises(InvalidInputError, match=r"rows has an index out of range: 1500 \(pool has 1500 rows"):
        sel.add_centers([3, 1500])
    with pytest.raises(InvalidInputError, match="rows has an index out of range: -2"):
        sel.exclude([-2])
    with pytest.raises(InvalidInputError, match="budget is required"):
        pcoreset.select(x, [1])
    with pytest.raises(InvalidInputError, match="max_budget=5 only applies with stop_radius"):
        pcoreset.select(x, [1], 3, max_budget=5)
    with pytest.raises(InvalidInputError, match="pass budget or max_budget with stop_radius, not both"):
        pcoreset.select(x, [1], 3, stop_radius=0.1, max_budget=5)


def test_next_one_at_a_time_equals_one_select():
    x = pool("float32", n=3000)
    sel = Selector(x, [0, 1])
    got = [int(sel.next(1)[0]) for _ in range(40)]
    np.testing.assert_array_equal(got, pcoreset.select(x, [0, 1], 40))


# ---- a damaged or edited state is refused, naming the field -----------------------

def _resign(sd):
    """The state with its array checksum recomputed: what a buggy writer (or
    someone editing on purpose) would produce; the field checks must catch it."""
    from pcoreset.selector import state_checksum

    sd = dict(sd)
    sd["state_checksum"] = np.array(state_checksum(sd), dtype=np.int64)
    return sd


def _damaged_states(sd):
    n = int(sd["shape"][0])
    free = np.flatnonzero(sd["mind"] >= 0)
    lab = sd["labeled"]

    def edit(**fields):
        return dict(sd, **fields)

    mind0 = sd["mind"].copy()
    mind0[:] = 0
    mind_inf = sd["mind"].copy()
    mind_inf[free[3]] = np.inf
    mind_nan = sd["mind"].copy()
    mind_nan[free[4]] = np.nan
    centers_nan = sd["centers"].copy()
    centers_nan[2, 1] = np.nan
    radii_nan = sd["radii2"].copy()
    radii_nan[1] = np.nan
    near = sd["nearest"].copy()
    near[free[0]] = 10 ** 6
    picks_m1 = sd["picks"].copy()
    picks_m1[0] = -1
    # a row far from every center set to distance 0
    mind_far0 = sd["mind"].copy()
    far = free[np.argmax(sd["mind"][free])]
    mind_far0[far] = 0
    return [
        ("mind set to 0", edit(mind=mind0), "mind"),
        ("mind 0 on a row that is no center's copy", edit(mind=mind_far0), "mind"),
        ("mind = inf", edit(mind=mind_inf), "mind"),
        ("mind NaN", edit(mind=mind_nan), "mind"),
        ("a pick of -1", edit(picks=picks_m1), "picks"),
        ("an excluded row of -1", edit(excluded=np.array([-1], dtype=np.int64)), "excluded"),
        ("an excluded row past the end", edit(excluded=np.array([n], dtype=np.int64)), "excluded"),
        ("a labeled row excluded", edit(excluded=lab[:1].copy()), "excluded"),
        ("NaN centers", edit(centers=centers_nan), "centers"),
        ("a center missing", edit(centers=sd["centers"][:-1].copy()), "centers"),
        ("NaN radii", edit(radii2=radii_nan), "radii2"),
        ("radii of another length", edit(radii2=sd["radii2"][:-1].copy()), "radii2"),
        ("zero-length shape", edit(shape=np.zeros(0, dtype=np.int64)), "shape"),
        ("three-value shape", edit(shape=np.array([n, 12, 1], dtype=np.int64)), "shape"),
        ("nearest out of range", edit(nearest=near), "nearest"),
        ("a labeled row twice", edit(labeled=np.array([lab[0], lab[0]], dtype=np.int64)), "labeled"),
        ("NaN temperature", edit(temperature=np.array(np.nan)), "temperature"),
        ("an unknown dtype code", edit(dtype=np.array(9, dtype=np.int64)), "dtype"),
        ("NaN center vectors", edit(center_vectors=np.full((1, 12), np.nan)), "center_vectors"),
    ]


def test_zero_distances_of_duplicates_are_consistent():
    """The pool's exact duplicates sit at distance 0 from their centers: such
    a state loads (no false alarm), for probabilities and for logits."""
    x = pool("float32")
    for probs, kw in ((x, {}), (np.log(x + 1e-3).astype(np.float32), {"from_logits": True})):
        sel = Selector(probs, [0, 1, 2, 3], **kw)
        sel.next(30)
        sd = sel.state_dict()
        assert (sd["mind"] == 0).sum() >= 4  # rows 1460.. copy rows 0..
        back = Selector.from_state_dict(probs, sd)
        np.testing.assert_array_equal(back.next(5), sel.next(5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_damaged_state_is_refused_naming_the_field(backend):
    x = pool("float32")
    sel = Selector(x, [1, 2, 3], backend=backend)
    sel.next(20)
    sel.exclude(sel.picks[5:7])
    sel.next(4)
    sd = sel.state_dict()
    Selector.from_state_dict(x, sd, backend=backend)  # the undamaged state loads
    for what, bad, field in _damaged_states(sd):
        # resigned: the field check names the field
        with pytest.raises(pcoreset.PcoresetError, match=rf"state\['{field}'\]") as err:
            Selector.from_state_dict(x, _resign(bad), backend=backend)
        assert isinstance(err.value, InvalidInputError), what
        # as edited (checksum not updated): refused too, naming a field
        with pytest.raises(InvalidInputError, match=r"state\['"):
            Selector.from_state_dict(x, bad, backend=backend)


def test_edited_or_mixed_state_fails_its_checksum():
    x = pool("float32")
    a = Selector(x, [1])
    a.next(10)
    first = a.state_dict()
    a.next(10)
    second = a.state_dict()
    mind = second["mind"].copy()
    i = int(np.flatnonzero(mind > 0)[0])
    mind[i] *= 0.5
    for bad in (dict(second, mind=mind),
                dict(second, radii2=second["radii2"] * 0.5),
                dict(second, nearest=first["nearest"])):
        with pytest.raises(InvalidInputError, match=r"state\['state_checksum'\] does not match"):
            Selector.from_state_dict(x, bad)
    mixed = dict(second, picks=first["picks"], radii2=first["radii2"])
    with pytest.raises(InvalidInputError, match=r"state\['"):
        Selector.from_state_dict(x, mixed)
    # round trip through a file keeps it valid
    buf = io.BytesIO()
    np.savez(buf, **second)
    buf.seek(0)
    back = Selector.from_state_dict(x, dict(np.load(buf, allow_pickle=False)))
    np.testing.assert_array_equal(back.next(3), a.next(3))


def test_state_of_an_older_format_is_refused_clearly():
    x = pool("float32")
    sd = Selector(x, [1]).state_dict()
    old = {k: v for k, v in sd.items() if k != "state_checksum"}
    old["format"] = np.array(1, dtype=np.int64)
    with pytest.raises(InvalidInputError, match="format 1 \\(saved by an older pcoreset\\).*reads format 2"):
        Selector.from_state_dict(x, old)


def test_state_after_a_pick_is_excluded_and_added_back_loads():
    x = pool("float32")
    sel = Selector(x, [1])
    picks = sel.next(8)
    sel.exclude(picks[2:3])
    sel.add_centers(picks[2:3])
    back = Selector.from_state_dict(x, sel.state_dict())
    np.testing.assert_array_equal(back.next(5), sel.next(5))
    assert back.n_centers == sel.n_centers == 1 + 8 + 5


# ---- until says whether the radius was reached ---------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_until_says_whether_the_radius_was_reached(backend):
    x = pool("float32")
    ref = Selector(x, [0], backend=backend)
    whole, _ = ref.until(0.3)
    n = len(whole)
    assert n > 10
    # reached: unpacks as before, and says so
    sel = Selector(x, [0], backend=backend)
    res = sel.until(0.3)
    picks, radii = res
    assert res.reached is True and sel.radius <= 0.3
    np.testing.assert_array_equal(picks, whole)
    np.testing.assert_array_equal(res.picks, whole)
    np.testing.assert_array_equal(res.radii, radii)
    assert len(res) == 2
    # the cap ends it first: not reached
    sel = Selector(x, [0], backend=backend)
    res = sel.until(0.3, max_picks=n - 1)
    assert res.reached is False and sel.radius > 0.3
    np.testing.assert_array_equal(res[0], whole[:n - 1])
    # the cap lands exactly where the radius is reached: reached
    sel = Selector(x, [0], backend=backend)
    res = sel.until(0.3, max_picks=n)
    assert res.reached is True
    # continuing after a capped call reaches it, and a call with nothing to
    # do says it is reached
    sel = Selector(x, [0], backend=backend)
    sel.until(0.3, max_picks=3)
    res = sel.until(0.3)
    assert res.reached is True and len(res[0]) == n - 3
    assert sel.until(0.3).reached is True and len(sel.until(0.3)[0]) == 0
    # no row left: radius 0, reached
    tiny = np.random.default_rng(0).dirichlet(np.ones(4), size=30).astype(np.float32)  # no duplicates
    sel = Selector(tiny, [0], backend=backend)
    assert sel.until(0.0).reached is True and sel.n_available == 0
    assert "reached=True" in repr(sel.until(0.0))


# ---- booleans are not counts ------------------------------------------------------------

@pytest.mark.parametrize("flag", [True, np.True_, torch.tensor(True), False, np.bool_(False)])
def test_booleans_are_not_counts(flag):
    x = pool("float32")
    sel = Selector(x, [1])
    with pytest.raises(InvalidTypeError, match="k must be an integer"):
        sel.next(flag)
    with pytest.raises(InvalidTypeError, match="max_picks must be an integer"):
        sel.until(0.1, max_picks=flag)
    with pytest.raises(InvalidTypeError, match="budget must be an integer"):
        pcoreset.select(x, [1], flag)
    with pytest.raises(InvalidTypeError, match="budget must be an integer"):
        pcoreset.kcenter_greedy(x, [1], flag)
    assert len(sel.picks) == 0
