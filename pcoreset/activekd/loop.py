"""The ActiveKD round loop and its resumable run directory.

    RUN_DIR/.pcoreset.lock              held (flock) by the one process working on the run
    RUN_DIR/config.json                 the RunConfig (a resume must match it)
    RUN_DIR/teacher_logits.npy          (N, C) frozen teacher outputs for the dataset
    RUN_DIR/rounds/<k>/round.npz        the open round's state, one file replaced at each
                                        change (see rounds.py): picks, skipped rows, rows
                                        labeled out of order, the continued selection
    RUN_DIR/rounds/<k>/pool_probs.npy   the prediction a continued selection runs on
    RUN_DIR/rounds/<k>/picks.npy        rows labeled in round k (round 0: initial set): the
                                        strategy's picks in order, then the rows labeled
                                        out of order; while the round is open, its picks
    RUN_DIR/rounds/<k>/skipped.npy      rows a person could not label ("skip"): excluded for
                                        good, replaced in the round
    RUN_DIR/rounds/<k>/labels.npy       labels of picks.npy (written once the round's labels
                                        are all in)
    RUN_DIR/rounds/<k>/metrics.json     written last: a round is finished iff it exists
    RUN_DIR/summary.csv, curves.png

Every file is written atomically and durably (pcoreset._atomic), in an order
such that a run killed at any moment resumes to the run an uninterrupted one
would have made: finished rounds are reused (their picks and labels are never
asked again), an open round continues from its last saved state, and the
last student is retrained deterministically. A resume first removes the
temporary files of writes that a kill cut short.

A round runs in four steps, each a method of :class:`_Run`: ``train`` the
student on the labeled rows, ``select`` the round's picks, ``settle`` their
labels with the oracle (replacing skipped picks, adding rows labeled out of
order), and ``record`` the round's labels and metrics."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from .. import _atomic, _paths
from ..errors import InvalidInputError, PcoresetError, PoolExhaustedError
from . import _io
from .config import RunConfig, read_saved_config
from .datasets import Dataset, load_dataset
from .oracles import SKIPPED, UNKNOWN, Oracle, label_code, make_oracle
from .rounds import OpenRound
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
        saved = resolve_config(read_saved_config(out), ds)
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
    PoolExhaustedError for bad settings before any expensive work, and
    PcoresetError when another process is working on `out`."""
    cfg.validate()
    out = Path(out)
    check_run_paths(cfg, out)
    with _io.run_lock(out):
        return _Run.start(cfg, out, progress=progress, echo=echo).go(plot)


class _Run:
    """One invocation of a run: the settings, the data, and what is labeled so
    far. The steps of a round are its methods; every state change is
    written before the next step starts."""

    def __init__(self, cfg, out, ds, strategy, oracle, progress, echo) -> None:
        self.cfg, self.out, self.ds, self.strategy, self.oracle = cfg, out, ds, strategy, oracle
        self.progress, self.echo = progress, echo
        self.pool = ds.pool_idx
        self.labeled_rows: List[int] = []
        self.labeled_y: List[int] = []
        self.excluded: set = set()  # rows a person could not label (any round): never offered again
        self.metrics: List[dict] = []
        self.trained_round: Optional[int] = None

    @classmethod
    def start(cls, cfg: RunConfig, out: Path, *, progress: bool, echo) -> "_Run":
        """Everything checked and prepared before the first round (the caller
        holds the run folder's lock)."""
        ds = load_dataset(cfg)
        strategy = get_strategy(cfg)
        pool = ds.pool_idx
        if cfg.budget > len(pool):
            raise PoolExhaustedError(len(pool), cfg.budget, "budget")
        initial = _initial_set(cfg, ds, np.random.default_rng([cfg.seed, 0]))
        if len(initial) == 0:
            raise InvalidInputError(f"initial_per_class={cfg.initial_per_class} and no initial_labeled file: round 0 "
                                    "would have no labeled row to train on")
        if len(initial) + cfg.rounds * cfg.budget > len(pool):
            raise PoolExhaustedError(len(pool) - len(initial), cfg.rounds * cfg.budget,
                                     f"rounds*budget={cfg.rounds}*{cfg.budget}")
        oracle = make_oracle(cfg.oracle, echo=echo)
        _atomic.remove_orphans(out)  # writes a kill cut short
        cfg = prepare_run_dir(out, cfg, ds)
        self = cls(cfg, out, ds, strategy, oracle, progress, echo)
        self.initial = initial
        self._teacher()
        if oracle is not None:
            oracle.prepare(ds, out)
        return self

    def _teacher(self) -> None:
        cfg, ds, out = self.cfg, self.ds, self.out
        self.teacher = build_teacher(cfg)  # cheap: model teachers load their model on first use
        if hasattr(self.teacher, "show_progress"):
            self.teacher.show_progress = self.progress
        t_path = out / "teacher_logits.npy"
        if t_path.is_file():  # computed by an earlier (stopped) invocation of this run
            self.t_logits = _io.load_array(t_path, "teacher_logits.npy").astype(np.float32)
            check_logits(self.t_logits, ds, str(t_path))
        else:
            t0 = time.perf_counter()
            self.t_logits, cached = teacher_logits(self.teacher, ds, cfg.cache_dir or None)
            self.echo(f"teacher {cfg.teacher}: {'cached' if cached else 'computed'} logits for {len(ds)} rows "
                      f"({time.perf_counter() - t0:.1f}s)")
            _io.write_npy(t_path, self.t_logits)
        self.y_test = ds.labels[ds.test_idx]
        self.teacher_acc = _accuracy(self.t_logits[ds.test_idx], self.y_test)
        self.student = build_student(cfg, ds)

    # ------------------------------------------------------------ the rounds

    def go(self, plot: bool) -> RunResult:
        out = self.out
        for k in range(self.cfg.rounds + 1):  # skipped rows of every round, open ones included
            st = OpenRound.load(out / "rounds" / str(k), k)
            if st is not None:
                self.excluded.update(st.check(len(self.ds), self.ds.is_test).skipped.tolist())
        for k in range(self.cfg.rounds + 1):
            rd = out / "rounds" / str(k)
            if (rd / "metrics.json").is_file():  # finished earlier: reuse, never re-ask
                self._reuse(k, rd)
                continue
            t_select = 0.0
            if (rd / "labels.npy").is_file():  # labels all in before a stop
                rows, y = self._labeled_of(k, rd)
                st = OpenRound.load(rd, k)
                num_given = 0 if st is None else len(st.given_rows)
            else:
                st = OpenRound.load(rd, k)
                if st is None:
                    t0 = time.perf_counter()
                    st = self.select(k, rd)
                    t_select = time.perf_counter() - t0
                else:  # chosen before a stop: keep them
                    st.check(len(self.ds), self.ds.is_test).write_copies(rd)
                labels = self.settle(k, rd, st)
                if labels is None:
                    _write_outputs(out, self.metrics, plot)
                    return RunResult(out, "awaiting_labels", self.metrics, pending_round=k)
                rows, y = self.reveal(rd, st, labels)
                num_given = len(st.given_rows)
            self.record(k, rd, rows, y, num_given, t_select)
        _write_outputs(out, self.metrics, plot)
        return RunResult(out, "finished", self.metrics)

    def _labeled_of(self, k: int, rd: Path):
        picks = _io.load_array(rd / "picks.npy", f"rounds/{k}/picks.npy").astype(np.int64)
        labels = _io.load_array(rd / "labels.npy", f"rounds/{k}/labels.npy").astype(np.int64)
        if (len(picks) != len(labels) or len(set(picks.tolist()) & set(self.labeled_rows))
                or (labels.size and (labels.min() < 0 or labels.max() >= self.ds.num_classes))):
            raise PcoresetError(f"{rd}: picks overlap earlier rounds or do not match their labels; the run "
                                "directory is damaged")
        return picks, labels

    def _reuse(self, k: int, rd: Path) -> None:
        picks, labels = self._labeled_of(k, rd)
        self.labeled_rows.extend(picks.tolist())
        self.labeled_y.extend(labels.tolist())
        m = _io.read_json(rd / "metrics.json", f"rounds/{k}/metrics.json")
        if not isinstance(m, dict) or m.get("round") != k:
            raise PcoresetError(f"rounds/{k}/metrics.json: {str(rd / 'metrics.json')!r} is damaged")
        self.metrics.append(m)

    def train(self, k: int) -> float:
        """Fit the student on the labeled rows (seeded by round `k`); seconds taken."""
        ds, cfg = self.ds, self.cfg
        lab = np.array(self.labeled_rows, dtype=np.int64)
        mask = np.zeros(len(ds), dtype=bool)
        mask[lab] = True
        unl = self.pool[~mask[self.pool]]
        lab_y = np.array(self.labeled_y, dtype=np.int64)
        targets = self.t_logits
        if self.teacher.adaptive:  # few-shot teachers are refit on each round's labeled set
            refit = self.teacher.adapt(ds, lab, lab_y, self.t_logits)
            if refit is not None:
                check_logits(refit, ds, f"teacher {cfg.teacher!r} (adapted)")
                targets = refit
        t0 = time.perf_counter()
        self.student.fit(lab, lab_y, targets, unl, distill=cfg.distill, seed=cfg.seed * 1000 + k,
                         progress=self.progress)
        self.trained_round = k
        return time.perf_counter() - t0

    def _trained(self, k: int) -> None:
        if self.trained_round != k:
            self.train(k)

    def _open_pool(self) -> np.ndarray:
        return _open_pool(self.pool, self.excluded)

    def select(self, k: int, rd: Path) -> OpenRound:
        """Round k's picks (round 0: the initial set), saved. Rows labeled out of
        order before the picks are made join the round first (as centers of a
        continued selection)."""
        if k == 0:
            st = OpenRound(0, self.initial)
            st.save(rd)
            return st
        st = OpenRound(k, np.zeros(0, dtype=np.int64))
        self._add_given(st, self._unrequested(st))
        self._trained(k - 1)
        cfg, pool = self.cfg, self._open_pool()
        given = st.given_rows.tolist()
        taken = np.isin(pool, self.labeled_rows + given)
        count = min(cfg.budget, len(pool) - int(taken.sum()))
        if self.oracle is not None and self.strategy.can_continue:
            # the same picks as strategy.select; the selection is kept so that a
            # person's skipped rows are replaced by continuing it
            state, _ = _pool_state(self.student, self.ds, pool, self.labeled_rows, self.labeled_y)
            space, selector = self.strategy.selector(state)
            selector.add_centers(np.flatnonzero(np.isin(pool, st.given_rows)))
            picks = pool[np.asarray(selector.next(count), dtype=np.int64)]
            _io.write_npy(rd / "pool_probs.npy", space)
            st.pool_rows, st.selector = pool, selector.state_dict()
        else:
            state, _ = _pool_state(self.student, self.ds, pool, self.labeled_rows + given,
                                   self.labeled_y + st.given_labels.tolist())
            rng = np.random.default_rng([cfg.seed, k])
            picks = np.asarray(self.strategy.select(state, count, rng=rng), dtype=np.int64).ravel()
        if (len(picks) != count or len(np.unique(picks)) != len(picks) or not np.isin(picks, pool[~taken]).all()):
            raise PcoresetError(f"strategy {cfg.strategy!r} returned {len(picks)} picks that are not {count} "
                                "distinct unlabeled pool rows")
        if count < cfg.budget:
            self.echo(f"round {k}: only {count} unlabeled rows left for a budget of {cfg.budget}")
        st.picks = picks
        st.save(rd)
        return st

    def _asked(self, st: OpenRound) -> set:
        return (set(self.labeled_rows) | self.excluded | set(st.picks.tolist()) | set(st.given_rows.tolist())
                | set(st.skipped.tolist()))

    def _unrequested(self, st: OpenRound) -> Dict[int, int]:
        """Rows the oracle labeled without being asked: row -> class."""
        if self.oracle is None:
            return {}
        out = {}
        for r, text in sorted(self.oracle.unrequested(self.ds, self._asked(st)).items()):
            code = label_code(text, self.ds, f"oracle={self.oracle.spec!r}: id {self.ds.ids[r]!r}")
            if code >= 0 and not self.ds.is_test[r]:
                out[int(r)] = code
        return out

    def _add_given(self, st: OpenRound, new: Dict[int, int]) -> None:
        if not new:
            return
        rows = np.array(sorted(new), dtype=np.int64)
        st.given_rows = np.concatenate([st.given_rows, rows])
        st.given_labels = np.concatenate([st.given_labels, np.array([new[r] for r in rows.tolist()], dtype=np.int64)])
        self.echo(f"round {st.k}: {len(rows)} row(s) labeled without being asked join the labeled set")

    def settle(self, k: int, rd: Path, st: OpenRound) -> Optional[np.ndarray]:
        """The labels of the round's picks, once all are in; None when some are
        still awaited. Skipped picks are excluded and replaced at once; rows
        labeled out of order join the round. Every change is saved."""
        oracle = self.oracle
        while True:
            if oracle is not None:
                oracle.request(k, st.picks, self.ds)
                oracle.wait(self.ds, st.picks, self.cfg.oracle_wait)
                new = self._unrequested(st)
                if new:
                    self._add_given(st, new)
                    if st.selector is not None:
                        selector = self._restore(rd, st)
                        selector.add_centers(np.flatnonzero(np.isin(st.pool_rows, list(new))))
                        st.selector = selector.state_dict()
                    st.save(rd)
            labels = _reveal(self.ds, st.picks, oracle)
            skipped = st.picks[labels == SKIPPED]
            if skipped.size:
                self.replace(k, rd, st, skipped)
                continue
            waiting = int((labels == UNKNOWN).sum())
            if waiting:
                hint = oracle.waiting_hint(self.out) if oracle is not None else ""
                self.echo(f"round {k}: waiting for {waiting} labels. " + (hint or (
                    f"Run `pcoreset export-picks {self.out}`, fill in the 'label' column ('skip' for a row that "
                    "cannot be labeled), and run again with --oracle FILE.")))
                return None
            if len(st.picks) + len(st.given_rows) == 0:
                if k == 0:
                    self.echo("round 0: every pick was skipped, so no row is labeled and the student cannot be "
                              "trained. Label other pool rows in the oracle (any id) and run again.")
                    return None
                self.echo(f"round {k}: every pick was skipped and the pool has no rows left to replace them")
            return labels

    def _restore(self, rd: Path, st: OpenRound):
        space = _io.load_array(rd / "pool_probs.npy", f"rounds/{st.k}/pool_probs.npy")
        return self.strategy.restore_selector(space, st.selector)

    def replace(self, k: int, rd: Path, st: OpenRound, skipped: np.ndarray) -> None:
        """Exclude the skipped picks for good and replace them by the strategy's
        next picks: a continued selection goes on without them; other
        strategies select again with the kept picks as labeled. Round 0 keeps
        fewer rows. Saves the round."""
        self.excluded.update(skipped.tolist())
        kept = st.picks[~np.isin(st.picks, skipped)]
        extra = np.zeros(0, dtype=np.int64)
        if k > 0:
            pool = self._open_pool()
            taken = set(self.labeled_rows) | set(kept.tolist()) | set(st.given_rows.tolist())
            count = min(len(skipped), len(pool) - int(np.isin(pool, list(taken)).sum()))
            if count > 0 and st.selector is not None:
                selector = self._restore(rd, st)
                selector.exclude(np.flatnonzero(np.isin(st.pool_rows, skipped)))
                extra = st.pool_rows[np.asarray(selector.next(count), dtype=np.int64)]
                st.selector = selector.state_dict()
            elif count > 0:
                self._trained(k - 1)  # the strategy selects on the previous round's student
                labeled = self.labeled_rows + kept.tolist() + st.given_rows.tolist()
                state, _ = _pool_state(self.student, self.ds, pool, labeled, [0] * len(labeled))
                rng = np.random.default_rng([self.cfg.seed, k, len(labeled)])
                extra = np.asarray(self.strategy.select(state, count, rng=rng), dtype=np.int64).ravel()
            self.echo(f"round {k}: {len(skipped)} picks skipped, {len(extra)} replacements")
        st.picks = np.concatenate([kept, extra])
        st.skipped = np.union1d(st.skipped, skipped)
        st.save(rd)

    def reveal(self, rd: Path, st: OpenRound, labels: np.ndarray):
        """Write the round's labeled rows (its picks, then the rows labeled out
        of order) and their labels; picks.npy first, so that a labels.npy on
        disk always matches it."""
        rows = np.concatenate([st.picks, st.given_rows])
        y = np.concatenate([labels, st.given_labels]).astype(np.int64)
        if st.given_rows.size:
            _io.write_npy(rd / "picks.npy", rows)
        _io.write_npy(rd / "labels.npy", y)
        return rows, y

    def record(self, k: int, rd: Path, rows: np.ndarray, y: np.ndarray, num_given: int, t_select: float) -> None:
        """Train on the labeled rows with round k's labels and write its metrics."""
        self.labeled_rows.extend(rows.tolist())
        self.labeled_y.extend(y.tolist())
        train_s = self.train(k)
        ce, kd, _, probs = self.student.predict(self.ds.test_idx)
        y_test = self.y_test
        m = {
            "round": k, "strategy": self.cfg.strategy, "distill": self.cfg.distill, "seed": self.cfg.seed,
            "num_labeled": len(self.labeled_rows), "num_picked": int(len(rows) - num_given),
            "num_given": int(num_given),
            "test_acc": _accuracy(probs, y_test),
            "test_acc_ce": _accuracy(ce, y_test),
            "test_acc_kd": _accuracy(kd, y_test) if kd is not None else None,
            "teacher_test_acc": self.teacher_acc,
            "labeled_per_class": np.bincount(np.array(self.labeled_y, dtype=np.int64),
                                             minlength=self.ds.num_classes).tolist(),
            "select_s": round(t_select, 3), "train_s": round(train_s, 3),
        }
        _io.write_json(rd / "metrics.json", m)
        self.metrics.append(m)
        self.echo(f"round {k}: {m['num_labeled']} labels, test acc {m['test_acc']:.4f}"
                  + (f" (teacher {self.teacher_acc:.4f})" if self.teacher_acc is not None else ""))


def _open_pool(pool: np.ndarray, excluded) -> np.ndarray:
    """The pool without the rows a person could not label."""
    if not excluded:
        return pool
    return pool[~np.isin(pool, np.fromiter(excluded, dtype=np.int64))]


def _pool_state(student, ds, pool, labeled_rows, labeled_y):
    from ..strategies.base import PoolState

    ce, kd, feats, probs = student.predict(pool)
    mask = np.zeros(len(ds), dtype=bool)
    mask[np.array(labeled_rows, dtype=np.int64)] = True
    known = np.full(len(ds), -1, dtype=np.int64)
    known[np.array(labeled_rows, dtype=np.int64)] = np.array(labeled_y, dtype=np.int64)
    return PoolState(indices=pool.copy(), labeled_mask=mask[pool], ce_logits=ce, kd_logits=kd, probs=probs,
                     features=feats, labels=known[pool], num_classes=ds.num_classes), mask

def summary_rows(metrics: List[dict]) -> List[dict]:
    return [{f: m.get(f) for f in SUMMARY_FIELDS} for m in metrics]


def _write_outputs(out: Path, metrics: List[dict], plot: bool) -> None:
    _io.write_csv(out / "summary.csv", summary_rows(metrics), SUMMARY_FIELDS)
    if plot and metrics:
        from .plot import plot_curves
        from .report import aggregate, collect, teacher_accuracy

        records = collect([out])
        plot_curves(aggregate(records), out / "curves.png", teacher_accuracy(records))
