"""The CSV oracle: a file with columns ``id,label`` that a person fills in
(``pcoreset export-picks`` writes the round's picks in this form). Other
columns are ignored; a blank label means "not yet"; a missing file reads as
empty (the run waits for it).

What the reader refuses, and what it lets pass:

- a file that is not UTF-8 (e.g. saved as Latin-1): an error naming the line;
- no ``id`` or ``label`` column: an error;
- one id with two different labels on two lines: an error naming both lines
  (the same label twice is accepted);
- a label that is not a class (nor a class index, nor ``skip``): an error
  naming the line, when the row is used;
- ids that are not in the dataset: ignored, and counted in one warning line
  (a labels file may cover more than this run's slice of the data, e.g. with
  ``--max-pool``).
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ...errors import InvalidInputError
from .base import Oracle, is_skip, label_code


class CsvOracle(Oracle):
    """Labels from the CSV file `spec` (re-read whenever it changes)."""

    def __init__(self, spec: str, **kwargs) -> None:
        super().__init__(spec, **kwargs)
        self.path = Path(spec).expanduser()
        self._key: Optional[Tuple[int, int]] = None
        self._table: Dict[str, Tuple[str, int]] = {}  # id -> (label, line)
        self._warned_key: Optional[Tuple[int, int]] = None
        self._rows_of: Tuple[object, Dict[str, int]] = (None, {})

    def _where(self) -> str:
        return f"oracle={self.spec!r}"

    def check(self) -> None:
        from ... import _paths

        if self.path.exists():
            try:
                _paths.check_input_file(self.path, "--oracle", (".csv",))
            except InvalidInputError as exc:
                why = str(exc).split(": ", 1)[-1]
                raise InvalidInputError(f"{self._where()}: {why} (--oracle)") from None
        elif not self.path.parent.is_dir():
            raise InvalidInputError(f"{self._where()}: directory {str(self.path.parent)!r} does not exist "
                                    "(--oracle)")

    def table(self) -> Dict[str, Tuple[str, int]]:
        """id -> (label, line number) of every non-blank label in the file."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._key, self._table = None, {}
            return self._table
        key = (st.st_mtime_ns, st.st_size)
        if key != self._key:
            self._table = read_oracle_csv(self.path, self.spec)
            self._key = key
        return self._table

    def _known(self, ds) -> Dict[int, Tuple[str, int, str]]:
        """row -> (label, line, id) for the ids of the dataset; the others are
        counted in one warning per version of the file."""
        if self._rows_of[0] is not ds:
            self._rows_of = (ds, {sid: i for i, sid in enumerate(ds.ids)})
        pos = self._rows_of[1]
        out, unknown = {}, []
        for sid, (lab, line) in self.table().items():
            r = pos.get(sid)
            if r is None:
                unknown.append((line, sid))
            else:
                out[r] = (lab, line, sid)
        if unknown and self._warned_key != self._key:
            self._warned_key = self._key
            unknown.sort()
            shown = ", ".join(f"line {ln}: {sid!r}" for ln, sid in unknown[:3])
            self.echo(f"warning: {self._where()}: {len(unknown)} id(s) are not in the dataset and were "
                      f"ignored ({shown}{', ...' if len(unknown) > 3 else ''})")
        return out

    def _checked(self, ds, lab: str, line: int, sid: str) -> str:
        label_code(lab, ds, f"{self._where()} line {line}: id {sid!r}")  # raises for a label that is no class
        return lab

    def answers(self, ds, rows: np.ndarray) -> Dict[int, str]:
        known = self._known(ds)
        out = {}
        for r in np.asarray(rows, dtype=np.int64).tolist():
            if r in known:
                out[r] = self._checked(ds, *known[r])
        return out

    def unrequested(self, ds, asked: set) -> Dict[int, str]:
        out = {}
        for r, (lab, line, sid) in sorted(self._known(ds).items()):
            if r in asked or ds.is_test[r] or is_skip(lab, ds):
                continue
            out[r] = self._checked(ds, lab, line, sid)
        return out


def read_oracle_csv(path, spec: Optional[str] = None) -> Dict[str, Tuple[str, int]]:
    """id -> (label, line number) from an ``id,label`` CSV (UTF-8, with or
    without a byte-order mark). Blank labels are left out. Raises
    InvalidInputError naming the line for a file that is not UTF-8 and for an
    id given two different labels."""
    where = f"oracle={spec if spec is not None else str(path)!r}"
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InvalidInputError(f"{where}: line {line} is not UTF-8 (byte 0x{raw[exc.start]:02x}); save the "
                                "file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None) or []
        cols = [c.strip() for c in header]
        if "id" not in cols or "label" not in cols:
            raise InvalidInputError(f"{where}: needs columns 'id' and 'label'; found {cols}")
        i_id, i_lab = cols.index("id"), cols.index("label")
        out: Dict[str, Tuple[str, int]] = {}
        for row in reader:
            line = reader.line_num
            if len(row) <= max(i_id, i_lab):
                continue  # a short or empty line: no label
            sid, lab = row[i_id].strip(), row[i_lab].strip()
            if not lab or not sid:
                continue
            if lab.lower() in ("skip", "skipped", "?"):
                lab_key = "skip"
            else:
                lab_key = lab
            if sid in out:
                old, old_line = out[sid]
                old_key = "skip" if old.lower() in ("skip", "skipped", "?") else old
                if old_key != lab_key:
                    raise InvalidInputError(f"{where}: id {sid!r} has label {old!r} on line {old_line} and {lab!r} "
                                            f"on line {line}; keep one of them")
                continue
            out[sid] = (lab, line)
    except csv.Error as exc:
        raise InvalidInputError(f"{where}: line {reader.line_num}: not a CSV row ({exc})") from None
    return out


def read_oracle(path) -> Dict[str, str]:
    """id -> label of an oracle CSV (a missing file reads as empty)."""
    path = Path(path)
    if not path.exists():
        return {}
    return {sid: lab for sid, (lab, _) in read_oracle_csv(path).items()}
