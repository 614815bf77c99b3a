"""The ActiveKD round loop (DESIGN.md §5) and its resumable run directory.

    RUN_DIR/config.json                 the RunConfig (a resume must match it)
    RUN_DIR/teacher_logits.npy          (N, C) frozen teacher outputs for the dataset
    RUN_DIR/rounds/<k>/picks.npy        rows labeled in round k (round 0: initial set)
    RUN_DIR/rounds/<k>/labels.npy       their revealed labels
    RUN_DIR/rounds/<k>/skipped.npy      picks a person could not label (--oracle, label
                                        "skip"): excluded for good, replaced in the round
    RUN_DIR/rounds/<k>/selector.npz     the pcoreset strategy's Selector state and the
    RUN_DIR/rounds/<k>/pool_probs.npy   prediction it selects on, so replacements for
                                        skipped picks continue the same selection
    RUN_DIR/rounds/<k>/metrics.json     written last: a round is finished iff it exists
    RUN_DIR/summary.csv, curves.png

Every file is written to a temporary name and renamed. Re-running on the same
directory skips finished rounds (their picks and labels are reused, never asked
again), reuses pending picks, and retrains the last student deterministically."""
from __future__ import annotations

import dataclasses
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from .. import _paths
from ..errors import InvalidInputError, PcoresetError, PoolExhaustedError
from . import _io
from .config import RunConfig, upgrade_saved
from .datasets import Dataset, load_dataset
from .oracles import SKIPPED, UNKNOWN, Oracle, label_code, make_oracle
from .students import build_student
from .teachers import build_teacher, check_logits, default_cache_dir, teacher_defaults, teacher_logits

SUMMARY_FIELDS = ["strategy", "distill", "seed", "round", "num_labeled", "test_acc", "test_acc_ce",
                  "test_acc_kd", "teacher_test_acc"]


@dataclass
class RunResult:
    """status: "finished" or "awaiting_labels" (an --oracle run stopped for labels)."""

    run_dir: Path
    status: str
    metrics: List[dict]
    pending_round: Optional[int] = None


def get_strategy(cfg: RunConfig):
    """The strategy object for cfg.strategy, with clear errors for unknown names."""
    try:
        from .. import strategies
        names = list(strategies.names())
        get = strategies.get
    except (ImportError, AttributeError) as exc:
        raise PcoresetError(f"pcoreset.strategies is not available ({exc})") from exc
    if cfg.strategy not in names:
        raise InvalidInputError(f"strategy={cfg.strategy!r} is not known; choose one of {sorted(names)}")
    try:
        return get(cfg.strategy, **cfg.strategy_kwargs)
    except TypeError as exc:
        raise InvalidInputError(f"strategy_kwargs={cfg.strategy_kwargs!r} for strategy {cfg.strategy!r}: {exc}") from exc


def _check_input(path, setting: str, flag: str, suffixes=None) -> None:
    try:
        _paths.check_input_file(Path(path).expanduser(), flag, suffixes)
    except InvalidInputError as exc:
        why = str(exc).split(": ", 1)[-1] if str(exc).startswith(f"{flag} ") else str(exc)
        raise InvalidInputError(f"{setting}={path!r}: {why} ({flag})") from None


def check_run_paths(cfg: RunConfig, out) -> None:
    """Every file a run reads or writes, checked before any work: the run
    directory and the cache can be written, the input files exist and can be
    read. Raises InvalidInputError with a one-line message naming the setting."""
    from .datasets import DATASETS

    _paths.check_output_dir(Path(out).expanduser(), "--out")
    _paths.check_output_dir(Path(cfg.cache_dir or default_cache_dir()).expanduser(), "--cache-dir")
    if not any(cfg.dataset == n or cfg.dataset.startswith(n + ":") for n in DATASETS.names()):
        _check_input(cfg.dataset, "dataset", "--dataset")
    if cfg.teacher == "precomputed" and cfg.teacher_logits:
        _check_input(cfg.teacher_logits, "teacher_logits", "--teacher-logits", (".npy", ".npz", ".pt", ".pth"))
    if cfg.initial_labeled:
        _check_input(cfg.initial_labeled, "initial_labeled", "--initial-labeled")
    if cfg.oracle:
        make_oracle(cfg.oracle).check()


def _crash_point(name: str) -> None:
    """Fault injection for the resume tests: PCORESET_TEST_KILL_AT=<name> SIGKILLs
    this process at that point (no cleanup, like a power cut)."""
    if os.environ.get("PCORESET_TEST_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def resolve_config(cfg: RunConfig, ds: Dataset) -> RunConfig:
    """`cfg` with the fields left at None filled in: ``prompt`` and
    ``teacher_scale`` by the teacher, ``student`` by the dataset's modality."""
    from .students import default_student

    filled = {k: v for k, v in teacher_defaults(cfg, ds).items() if getattr(cfg, k, None) is None}
    if cfg.student is None:
        filled["student"] = default_student(ds)
    return dataclasses.replace(cfg, **filled) if filled else cfg


def prepare_run_dir(out: Path, cfg: RunConfig, ds: Dataset) -> RunConfig:
    """Write config.json for a new run; for an existing one check that `cfg` matches
    it (except RunConfig.RESUMABLE_CHANGES) and return the merged config. Both
    are compared with their None fields resolved (:func:`resolve_config`)."""
    path = out / "config.json"
    cfg = resolve_config(cfg, ds)
    if path.is_file():
        saved = RunConfig.from_dict(upgrade_saved(_io.read_json(path)), source=str(path))
        saved = resolve_config(saved, ds)
        new, old = cfg.to_dict(), saved.to_dict()
        diff = {k: (old[k], new[k]) for k in new if new[k] != old[k] and k not in RunConfig.RESUMABLE_CHANGES}
        if diff:
            lines = ", ".join(f"{k}: run has {a!r}, asked {b!r}" for k, (a, b) in sorted(diff.items()))
            raise InvalidInputError(f"run directory {str(out)!r} was started with other settings ({lines}); "
                                    "use a new directory or the same settings to resume")
    out.mkdir(parents=True, exist_ok=True)
    _io.write_json(path, cfg.to_dict())
    return cfg


def _initial_set(cfg: RunConfig, ds: Dataset, rng: np.random.Generator) -> np.ndarray:
    pool = ds.pool_idx
    if cfg.initial_labeled:
        path = Path(cfg.initial_labeled)
        if not path.is_file():
            raise InvalidInputError(f"initial_labeled={cfg.initial_labeled!r}: file does not exist")
        tokens = [t.strip() for t in path.read_text(encoding="utf-8").replace(",", "\n").splitlines() if t.strip()]
        pos = {sid: i for i, sid in enumerate(ds.ids)}
        rows = []
        for t in tokens:
            if t in pos:
                rows.append(pos[t])
            elif t.isdigit() and int(t) < len(ds):
                rows.append(int(t))
            else:
                raise InvalidInputError(f"initial_labeled={cfg.initial_labeled!r}: {t!r} is neither a sample id "
                                        f"nor a row index < {len(ds)}")
        rows = np.array(sorted(set(rows)), dtype=np.int64)
        if ds.is_test[rows].any():
            raise InvalidInputError(f"initial_labeled={cfg.initial_labeled!r}: lists test rows")
        return rows
    known = ds.labels[pool]
    if cfg.initial_per_class and (known < 0).all():
        raise InvalidInputError("initial_per_class needs pool labels; this dataset has none: pass "
                                "initial_labeled=FILE and an oracle")
    rows = []
    for c in range(ds.num_classes):
        members = pool[known == c]
        take = min(cfg.initial_per_class, len(members))
        rows.extend(rng.choice(members, size=take, replace=False).tolist())
    return np.array(sorted(rows), dtype=np.int64)


def _reveal(ds: Dataset, rows: np.ndarray, oracle: Optional[Oracle]):
    """Labels of `rows`: from the oracle when one is given, else from the
    dataset; SKIPPED (-2) where the person wrote "skip", UNKNOWN (-1) where no
    label is known yet (the run waits for a person)."""
    given = oracle.answers(ds, rows) if oracle is not None else {}
    out = np.empty(len(rows), dtype=np.int64)
    for j, r in enumerate(np.asarray(rows, dtype=np.int64).tolist()):
        if r in given:
            out[j] = label_code(given[r], ds, f"oracle={oracle.spec!r}: id {ds.ids[r]!r}")
        elif ds.labels[r] >= 0:
            out[j] = ds.labels[r]
        else:
            out[j] = UNKNOWN
    return out


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean()) if len(y) else float("nan")


def run(cfg: RunConfig, out, *, progress: bool = True, echo: Callable[[str], None] = print,
        plot: bool = True) -> RunResult:
    """Run (or resume) an ActiveKD run in directory `out`. Raises InvalidInputError /
    PoolExhaustedError for bad settings before any expensive work."""
    cfg.validate()
    out = Path(out)
    check_run_paths(cfg, out)
    ds = load_dataset(cfg)
    strategy = get_strategy(cfg)
    pool = ds.pool_idx
    if cfg.budget > len(pool):
        raise PoolExhaustedError(len(pool), cfg.budget, "budget")
    rng0 = np.random.default_rng([cfg.seed, 0])
    initial = _initial_set(cfg, ds, rng0)
    need = len(initial) + cfg.rounds * cfg.budget
    if need > len(pool):
        raise PoolExhaustedError(len(pool) - len(initial), cfg.rounds * cfg.budget,
                                 f"rounds*budget={cfg.rounds}*{cfg.budget}")
    cfg = prepare_run_dir(out, cfg, ds)

    teacher = build_teacher(cfg)  # cheap: model teachers load their model on first use
    if hasattr(teacher, "show_progress"):
        teacher.show_progress = progress
    t_path = out / "teacher_logits.npy"
    if t_path.is_file():  # computed by an earlier (stopped) invocation of this run
        t_logits = _io.load_array(t_path, "teacher_logits.npy").astype(np.float32)
        check_logits(t_logits, ds, str(t_path))
    else:
        t0 = time.perf_counter()
        t_logits, cached = teacher_logits(teacher, ds, cfg.cache_dir or None)
        echo(f"teacher {cfg.teacher}: {'cached' if cached else 'computed'} logits for {len(ds)} rows "
             f"({time.perf_counter() - t0:.1f}s)")
        _io.write_npy(t_path, t_logits)
    test = ds.test_idx
    y_test = ds.labels[test]
    teacher_acc = _accuracy(t_logits[test], y_test)

    oracle = make_oracle(cfg.oracle, echo=echo)
    if oracle is not None:
        oracle.prepare(ds, out)
    student = build_student(cfg, ds)
    # rows a person could not label (any round): never offered again
    excluded = set()
    for rd_k in sorted((out / "rounds").glob("*/skipped.npy")):
        excluded.update(_io.load_array(rd_k, "skipped.npy").astype(np.int64).tolist())
    labeled_rows: List[int] = []
    labeled_y: List[int] = []
    metrics: List[dict] = []
    trained_round = None

    def train(k):
        lab = np.array(labeled_rows, dtype=np.int64)
        mask = np.zeros(len(ds), dtype=bool)
        mask[lab] = True
        unl = pool[~mask[pool]]
        lab_y = np.array(labeled_y, dtype=np.int64)
        targets = t_logits
        if teacher.adaptive:  # few-shot teachers are refit on each round's labeled set
            refit = teacher.adapt(ds, lab, lab_y, t_logits)
            if refit is not None:
                check_logits(refit, ds, f"teacher {cfg.teacher!r} (adapted)")
                targets = refit
        t0 = time.perf_counter()
        student.fit(lab, lab_y, targets, unl, distill=cfg.distill,
                    seed=cfg.seed * 1000 + k, progress=progress)
        return time.perf_counter() - t0

    for k in range(cfg.rounds + 1):
        rd = out / "rounds" / str(k)
        if (rd / "metrics.json").is_file():  # finished earlier: reuse, never re-ask
            picks = _io.load_array(rd / "picks.npy", "picks.npy").astype(np.int64)
            labels = _io.load_array(rd / "labels.npy", "labels.npy").astype(np.int64)
            if len(set(picks.tolist()) & set(labeled_rows)) or len(picks) != len(labels):
                raise PcoresetError(f"{rd}: picks overlap earlier rounds or lack labels; the run directory is damaged")
            labeled_rows.extend(picks.tolist())
            labeled_y.extend(labels.tolist())
            metrics.append(_io.read_json(rd / "metrics.json"))
            continue
        t_select = 0.0
        if (rd / "picks.npy").is_file():  # chosen before a stop: keep them
            picks = _io.load_array(rd / "picks.npy", "picks.npy").astype(np.int64)
        elif k == 0:
            picks = initial
            _io.write_npy(rd / "picks.npy", picks)
        else:
            if trained_round != k - 1:
                train(k - 1)
            t0 = time.perf_counter()
            picks = _select(strategy, student, ds, _open_pool(pool, excluded), labeled_rows, labeled_y, cfg, k,
                            rd if oracle is not None else None)
            t_select = time.perf_counter() - t0
            _io.write_npy(rd / "picks.npy", picks)
            _crash_point(f"round{k}:after_picks")
        if (rd / "labels.npy").is_file():
            labels = _io.load_array(rd / "labels.npy", "labels.npy").astype(np.int64)
        else:
            while True:
                if oracle is not None:
                    oracle.request(k, picks, ds)
                    oracle.wait(ds, picks, cfg.oracle_wait)
                labels = _reveal(ds, picks, oracle)
                skipped = picks[labels == SKIPPED]
                if skipped.size == 0 and (labels == UNKNOWN).any():
                    echo(f"round {k}: {int((labels == UNKNOWN).sum())} picks await labels. Run `pcoreset export-picks {out}`, fill "
                         "in the 'label' column ('skip' for a row that cannot be labeled), and run again "
                         "with --oracle FILE.")
                    _write_outputs(out, metrics, plot)
                    return RunResult(out, "awaiting_labels", metrics, pending_round=k)
                if skipped.size == 0:
                    break
                # rows a person could not label: excluded for good, replaced
                # by the strategy's next picks (round 0 keeps fewer rows)
                excluded.update(skipped.tolist())
                _io.write_npy(rd / "skipped.npy", np.array(sorted(set(skipped.tolist()) | _round_skipped(rd)),
                                                           dtype=np.int64))
                kept = picks[labels != SKIPPED]
                extra = np.zeros(0, dtype=np.int64)
                if k > 0:
                    if not (rd / "selector.npz").is_file() and trained_round != k - 1:
                        train(k - 1)  # the strategy selects on the previous round's student
                        trained_round = k - 1
                    room = len(_open_pool(pool, excluded)) - len(labeled_rows) - len(kept)
                    extra = _replace(strategy, student, ds, _open_pool(pool, excluded), labeled_rows + kept.tolist(),
                                     cfg, k, rd, skipped, min(len(skipped), room))
                    echo(f"round {k}: {len(skipped)} picks skipped, {len(extra)} replacements")
                picks = np.concatenate([kept, extra])
                _io.write_npy(rd / "picks.npy", picks)
            _io.write_npy(rd / "labels.npy", labels)
        labeled_rows.extend(picks.tolist())
        labeled_y.extend(labels.tolist())
        train_s = train(k)
        trained_round = k
        ce, kd, _, probs = student.predict(test)
        m = {
            "round": k, "strategy": cfg.strategy, "distill": cfg.distill, "seed": cfg.seed,
            "num_labeled": len(labeled_rows), "num_picked": int(len(picks)),
            "test_acc": _accuracy(probs, y_test),
            "test_acc_ce": _accuracy(ce, y_test),
            "test_acc_kd": _accuracy(kd, y_test) if kd is not None else None,
            "teacher_test_acc": teacher_acc,
            "labeled_per_class": np.bincount(np.array(labeled_y), minlength=ds.num_classes).tolist(),
            "select_s": round(t_select, 3), "train_s": round(train_s, 3),
        }
        _io.write_json(rd / "metrics.json", m)
        metrics.append(m)
        echo(f"round {k}: {m['num_labeled']} labels, test acc {m['test_acc']:.4f}"
             + (f" (teacher {teacher_acc:.4f})" if teacher_acc is not None else ""))
        _crash_point(f"round{k}:after_metrics")
    _write_outputs(out, metrics, plot)
    return RunResult(out, "finished", metrics)


def _open_pool(pool: np.ndarray, excluded) -> np.ndarray:
    """The pool without the rows a person could not label."""
    if not excluded:
        return pool
    return pool[~np.isin(pool, np.fromiter(excluded, dtype=np.int64))]


def _round_skipped(rd: Path) -> set:
    path = rd / "skipped.npy"
    return set(_io.load_array(path, "skipped.npy").astype(np.int64).tolist()) if path.is_file() else set()


def _pool_state(student, ds, pool, labeled_rows, labeled_y):
    from ..strategies.base import PoolState

    ce, kd, feats, probs = student.predict(pool)
    mask = np.zeros(len(ds), dtype=bool)
    mask[np.array(labeled_rows, dtype=np.int64)] = True
    known = np.full(len(ds), -1, dtype=np.int64)
    known[np.array(labeled_rows, dtype=np.int64)] = np.array(labeled_y, dtype=np.int64)
    return PoolState(indices=pool.copy(), labeled_mask=mask[pool], ce_logits=ce, kd_logits=kd, probs=probs,
                     features=feats, labels=known[pool], num_classes=ds.num_classes), mask


def _selector_of(strategy, state) -> Optional[tuple]:
    """(probs, Selector) for the pcoreset strategy (the prediction it selects
    on and an incremental selection over it), else None."""
    from ..selector import Selector
    from ..strategies._common import check_pool, pool_probs
    from ..strategies.pcoreset_strategy import PCoreSetStrategy

    if not isinstance(strategy, PCoreSetStrategy):
        return None
    checked = check_pool(state, 0, strategy.name)
    probs = np.ascontiguousarray(pool_probs(state, strategy.name, checked.n))
    centers = state.center_probs
    return probs, Selector(probs, checked.labeled_rows, centers=centers, backend=strategy.backend,
                           num_threads=strategy.num_threads)


def _select(strategy, student, ds, pool, labeled_rows, labeled_y, cfg, k, rd: Optional[Path] = None) -> np.ndarray:
    state, mask = _pool_state(student, ds, pool, labeled_rows, labeled_y)
    rng = np.random.default_rng([cfg.seed, k])
    sel = _selector_of(strategy, state) if rd is not None else None
    if sel is not None:
        # the same picks as strategy.select; the Selector state is kept so that
        # a person's skipped rows can be replaced by continuing the selection
        probs, selector = sel
        picks = pool[np.asarray(selector.next(cfg.budget), dtype=np.int64)]
        _io.write_npy(rd / "pool_probs.npy", probs)
        _save_selector(rd, selector, pool)
    else:
        picks = np.asarray(strategy.select(state, cfg.budget, rng=rng), dtype=np.int64).ravel()
    bad = (len(picks) != cfg.budget or len(np.unique(picks)) != len(picks)
           or not np.isin(picks, pool).all() or mask[picks].any())
    if bad:
        raise PcoresetError(f"strategy {cfg.strategy!r} returned {len(picks)} picks that are not {cfg.budget} "
                            "distinct unlabeled pool rows")
    return picks


def _save_selector(rd: Path, selector, pool_rows: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, pool_rows=np.asarray(pool_rows, dtype=np.int64), **selector.state_dict())
    _io.write_bytes(rd / "selector.npz", buf.getvalue())


def _replace(strategy, student, ds, pool, labeled_rows, cfg, k, rd: Path, skipped, count: int) -> np.ndarray:
    """`count` replacements for skipped picks of round k. The pcoreset
    strategy continues its saved Selector (skipped picks excluded: they stop
    being centers); other strategies select again on the pool without the
    excluded rows, with the labeled rows and the kept picks as labeled."""
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    if (rd / "selector.npz").is_file() and (rd / "pool_probs.npy").is_file():
        from ..selector import Selector

        probs = _io.load_array(rd / "pool_probs.npy", "pool_probs.npy")
        with np.load(rd / "selector.npz", allow_pickle=False) as f:
            saved = {key: f[key] for key in f.files}
        selector = Selector.from_state_dict(probs, saved)
        full_pool = _selector_pool(ds, saved, probs)
        pos = np.flatnonzero(np.isin(full_pool, skipped))
        selector.exclude(pos)
        extra = full_pool[np.asarray(selector.next(count), dtype=np.int64)]
        _save_selector(rd, selector, full_pool)
        return extra
    known_y = [0] * len(labeled_rows)  # labels are not used to choose replacements here
    state, _ = _pool_state(student, ds, pool, labeled_rows, known_y)
    rng = np.random.default_rng([cfg.seed, k, len(labeled_rows)])
    return np.asarray(strategy.select(state, count, rng=rng), dtype=np.int64).ravel()


def _selector_pool(ds, saved, probs) -> np.ndarray:  # noqa: ARG001
    """The pool rows the saved Selector's positions refer to."""
    rows = saved.get("pool_rows")
    if rows is None:
        raise PcoresetError("selector.npz lacks its pool rows; the run directory is damaged")
    return np.asarray(rows, dtype=np.int64)


def summary_rows(metrics: List[dict]) -> List[dict]:
    return [{f: m.get(f) for f in SUMMARY_FIELDS} for m in metrics]


def _write_outputs(out: Path, metrics: List[dict], plot: bool) -> None:
    _io.write_csv(out / "summary.csv", summary_rows(metrics), SUMMARY_FIELDS)
    if plot and metrics:
        from .plot import plot_curves
        from .report import aggregate, collect, teacher_accuracy

        records = collect([out])
        plot_curves(aggregate(records), out / "curves.png", teacher_accuracy(records))
