"""Oracles: where a run's labels come from when a person gives them (``--oracle``).

An oracle is named by its spec, the ``--oracle`` value:

=========================================  ==============================================
``labels.csv``                             a CSV file ``id,label`` a person fills in
                                           (:class:`~pcoreset.activekd.oracles.csv.CsvOracle`)
``label-studio://HOST:PORT/PROJECT_ID``    a Label Studio project (``oracles.label_studio``)
=========================================  ==============================================

The run loop talks to every oracle through :class:`Oracle`:

1. :meth:`Oracle.check` before any work (one-line errors);
2. :meth:`Oracle.prepare` once per invocation, with the dataset and the run folder;
3. per open round: :meth:`Oracle.request` with the round's picks in pick
   order (again after replacements, and on every resume: it must be
   idempotent), :meth:`Oracle.wait` for at most ``--oracle-wait`` seconds, then
   :meth:`Oracle.answers` for the picks and :meth:`Oracle.unrequested` for
   rows labeled without being asked.

Answers are label *texts*; the loop turns them into classes with
:func:`label_code`, so every oracle accepts the same words: a class name, a
class index, or ``skip`` (also ``skipped`` and ``?``, any case) for a row a
person cannot label. A skipped pick is excluded for good and replaced at once;
a ``skip`` for a row nobody asked is ignored until the row is picked (it is
then skipped and replaced). A label for a row never asked becomes a labeled
row of the open round (a center of the round's selection, for ``pcoreset``)."""
from __future__ import annotations

import importlib
from typing import Callable, Optional

from ...errors import InvalidInputError
from .base import (LABEL_STUDIO_SCHEME, SKIP_LABELS, SKIPPED, UNKNOWN, Oracle, is_skip,  # noqa: F401
                   label_code, pool_rows)
from .csv import CsvOracle

__all__ = ["Oracle", "make_oracle", "label_code", "is_skip", "SKIP_LABELS", "SKIPPED", "UNKNOWN"]


def make_oracle(spec: str, *, echo: Callable[[str], None] = print) -> Optional[Oracle]:
    """The oracle named by `spec` (None for an empty spec): ``label-studio://``
    specs go to :class:`oracles.label_studio.LabelStudioOracle`, anything else
    is a CSV file."""
    if not spec:
        return None
    if spec.startswith(LABEL_STUDIO_SCHEME):
        try:
            module = importlib.import_module(f"{__name__}.label_studio")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.label_studio":
                raise InvalidInputError(f"oracle={spec!r}: the Label Studio oracle cannot import "
                                        f"{exc.name!r}; this pcoreset install is incomplete (reinstall it)") from None
            raise InvalidInputError(f"oracle={spec!r}: this pcoreset has no Label Studio oracle") from None
        return module.LabelStudioOracle(spec, echo=echo)
    return CsvOracle(spec, echo=echo)
