"""The oracle interface and the label words every oracle accepts (see the
package docstring); the oracles import it from here."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Iterable

import numpy as np

from ...errors import InvalidInputError

# An oracle label that says the person could not label the row.
SKIP_LABELS = ("skip", "skipped", "?")
SKIPPED = -2
UNKNOWN = -1

LABEL_STUDIO_SCHEME = "label-studio://"


class Oracle:
    """Where labels come from. Subclasses override what they need; the defaults
    do nothing and know no label.

    Attributes:
        spec: the ``--oracle`` value as given on the command line; errors name it
            as ``oracle=<spec>``.
        echo: prints one line for a person (the run's ``echo``).
    """

    def __init__(self, spec: str, *, echo: Callable[[str], None] = print) -> None:
        self.spec = spec
        self.echo = echo

    def check(self) -> None:
        """Before any work: the file can be read, the server answers, the
        project exists. Raises InvalidInputError with one line naming
        ``oracle=<spec>``; does not change anything."""

    def prepare(self, ds, run_dir: Path) -> None:
        """Once per invocation, after the run folder is locked and before the
        first round: e.g. import the pool as tasks (idempotently: a rerun
        must not duplicate them). `ds` is the run's Dataset (``ds.ids`` are
        the ids shown to people, ``ds.class_names`` the classes)."""

    def request(self, round_k: int, rows: np.ndarray, ds) -> None:
        """Show round `round_k`'s picks (dataset rows, in pick order; ``len(rows)``
        labels are wanted) to the people labeling. Called when a round's
        picks are made, after replacements for skipped picks (the list then
        holds the kept picks and the replacements), and on every resume of an
        open round: it must be idempotent."""

    def answers(self, ds, rows: np.ndarray) -> Dict[int, str]:
        """row -> label text for the `rows` (dataset rows) that have an answer:
        a class name, a class index, or a skip word. A row without an answer
        is absent (not yet labeled). Raise InvalidInputError (one line, naming
        the spec and where: line number, task id) for answers that cannot
        be read."""
        return {}

    def unrequested(self, ds, asked: set) -> Dict[int, str]:
        """row -> label text for pool rows that were labeled although they
        are not in `asked` (every row picked, labeled or excluded so far):
        people label what they like. Default: none."""
        return {}

    def waiting_hint(self, run_dir: Path) -> str:
        """What a person should do when the run stops for labels (one line);
        "" for the driver's default (fill in the CSV of export-picks)."""
        return ""

    def wait(self, ds, rows: np.ndarray, seconds: float) -> None:
        """Block until every one of `rows` has an answer or `seconds` have
        passed (``--oracle-wait``; 0 = return at once). The default returns
        at once: a file does not change while the run waits."""


def is_skip(text: str, ds) -> bool:
    """True when `text` says the person could not label the row (a class that
    happens to be named "skip" is a class)."""
    return text.strip().lower() in SKIP_LABELS and text.strip() not in ds.class_names


def label_code(text: str, ds, where: str) -> int:
    """The class index of an answer `text` (class name or index), SKIPPED for a
    skip word. Raises InvalidInputError naming `where` (e.g. "oracle='l.csv'
    line 7: label 'unicorn' of id 's001'") for anything else."""
    lab = text.strip()
    if is_skip(lab, ds):
        return SKIPPED
    if lab in ds.class_names:
        return ds.class_names.index(lab)
    if lab.isdigit() and int(lab) < ds.num_classes:
        return int(lab)
    raise InvalidInputError(f"{where}: label {lab!r} is not one of {ds.class_names} "
                            f"(or a class index 0..{ds.num_classes - 1}, or 'skip')")


def pool_rows(ds, rows: Iterable[int]):
    """The rows among `rows` that belong to the pool (not the test split)."""
    return [int(r) for r in rows if not ds.is_test[int(r)]]
