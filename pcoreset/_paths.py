"""Checks for file arguments of the command line, run before any work starts.

A command that reads a missing file, or that cannot write its result, should
say so in one line before it spends minutes selecting or training, not end in
a traceback after the work is done. Every error here is an
`InvalidInputError` whose message starts with the option and the path:

    --labeled nosuch.npy: no such file
    --out /nonexistent/dir/p.npy: directory /nonexistent/dir does not exist

Two ways to use it:

- call the checks directly: `check_input_file`, `check_output_path`,
  `read_index_file`;
- declare file options with `add_input` / `add_output` instead of
  `parser.add_argument`: the parser then records which options are files,
  and `check_path_args(args)` checks all of them at once (the `pcoreset`
  entry point does this before running any subcommand). Adding a checked
  option is one line.
"""
from __future__ import annotations

import argparse
import os
import stat
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import _atomic
from .errors import InvalidInputError

__all__ = [
    "check_input_file", "check_output_path", "check_input_dir", "check_output_dir",
    "read_index_file", "read_npy_header", "load_npy", "save_npy_atomic", "save_text_atomic",
    "add_input", "add_output", "add_input_dir", "add_output_dir", "check_path_args",
]

_NPY_MAGIC = b"\x93NUMPY"


def _suffix_ok(path: str, suffixes: Optional[Sequence[str]]) -> bool:
    return not suffixes or any(path.lower().endswith(s.lower()) for s in suffixes)


def _suffix_words(suffixes: Sequence[str]) -> str:
    return " or ".join(suffixes)


def _fail(arg: str, path: str, why: str) -> InvalidInputError:
    return InvalidInputError(f"{arg} {path}: {why}")


def check_input_file(path, arg: str, suffixes: Optional[Sequence[str]] = None) -> str:
    """Check that `path` names an existing, readable regular file (with one of
    `suffixes`, e.g. (".npy",), when given). `arg` is the option as the user
    typed it ("--labeled"); it starts the error message. Returns the path as
    a str. Raises InvalidInputError with a one-line message otherwise.

    Readability is tested by opening the file, so it holds for root and for
    ACLs alike; the file is not read."""
    path = os.fspath(path)
    if not path:
        raise InvalidInputError(f"{arg}: empty file name")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _fail(arg, path, "no such file") from None
    except NotADirectoryError:
        raise _fail(arg, path, "no such file (a part of the path is not a directory)") from None
    except PermissionError:
        raise _fail(arg, path, "permission denied (cannot reach the file)") from None
    except OSError as exc:
        raise _fail(arg, path, exc.strerror or str(exc)) from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(arg, path, "is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(arg, path, "is not a regular file")
    if not _suffix_ok(path, suffixes):
        raise _fail(arg, path, f"expected a {_suffix_words(suffixes)} file")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise _fail(arg, path, "permission denied (cannot read the file)") from None
    except OSError as exc:
        raise _fail(arg, path, f"cannot read the file: {exc.strerror or exc}") from None
    return path


def check_output_path(path, arg: str, suffixes: Optional[Sequence[str]] = None) -> str:
    """Check, before any work, that a result can be written to `path`: it is
    not a directory or another non-regular file, its directory exists and is
    writable (results are written to a temporary file there and renamed, so
    the directory's permission is what counts), and it ends in one of
    `suffixes` when given. Returns the path as a str; raises
    InvalidInputError with a one-line message naming `arg` otherwise."""
    path = os.fspath(path)
    if not path:
        raise InvalidInputError(f"{arg}: empty file name")
    if path.endswith(os.sep) or os.path.isdir(path):
        raise _fail(arg, path, "is a directory; give a file name")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise _fail(arg, path, "exists and is not a regular file")
    if not _suffix_ok(path, suffixes):
        raise _fail(arg, path, f"the file name must end in {_suffix_words(suffixes)}")
    parent = os.path.dirname(path) or "."
    if not os.path.exists(parent):
        raise _fail(arg, path, f"directory {parent} does not exist")
    if not os.path.isdir(parent):
        raise _fail(arg, path, f"{parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _fail(arg, path, f"cannot write in directory {parent} (permission denied)")
    return path


def check_input_dir(path, arg: str) -> str:
    """Check that `path` is an existing directory that can be listed and
    entered. Returns the path as a str; raises InvalidInputError naming `arg`."""
    path = os.fspath(path)
    if not path:
        raise InvalidInputError(f"{arg}: empty directory name")
    if not os.path.exists(path):
        raise _fail(arg, path, "no such directory")
    if not os.path.isdir(path):
        raise _fail(arg, path, "is a file, expected a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise _fail(arg, path, "permission denied (cannot read the directory)")
    return path


def check_output_dir(path, arg: str) -> str:
    """Check, before any work, that results can be written into directory
    `path`: either it exists as a writable directory, or it can be created
    (its nearest existing ancestor is a writable directory). Creates nothing.
    Returns the path as a str; raises InvalidInputError naming `arg`."""
    path = os.fspath(path)
    if not path:
        raise InvalidInputError(f"{arg}: empty directory name")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise _fail(arg, path, "exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise _fail(arg, path, "cannot write in this directory (permission denied)")
        return path
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise _fail(arg, path, f"cannot be created: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise _fail(arg, path, f"cannot be created in {ancestor} (permission denied)")
    return path


def _shorten(text: str, limit: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def read_index_file(path, arg: str = "--labeled") -> np.ndarray:
    """Read row indices (None: no file, an empty array) from a .npy file of integers, or from a text file with
    one integer per line (blank lines are skipped). Whether a file is .npy is
    decided by its content, not its name. Returns a 1-D int64 array (empty for
    an empty file); range and duplicate checks are left to `select`, which
    knows the pool size.

    Raises InvalidInputError naming `arg`, the file and, for text files, the
    first offending line (e.g. a CSV of probabilities passed by mistake)."""
    if path is None:
        return np.zeros(0, dtype=np.int64)
    path = check_input_file(path, arg)
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
    if head == _NPY_MAGIC:
        arr = load_npy(path, arg)
        if arr.dtype.kind not in "iu":
            raise _fail(arg, path, f"holds {arr.dtype} values; expected integer row indices")
        arr = arr.reshape(-1) if arr.ndim == 0 else arr
        if arr.ndim != 1:
            raise _fail(arg, path, f"has shape {tuple(arr.shape)}; expected a 1-D array of row indices")
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise _fail(arg, path, f"index {int(arr.max())} is too large")
        return arr.astype(np.int64)
    if path.lower().endswith(".npy"):
        raise _fail(arg, path, "not a .npy file (no NumPy header); save it with numpy.save")
    values: List[int] = []
    try:
        with open(path, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                text = line.strip()
                if not text:
                    continue
                try:
                    value = int(text)
                except ValueError:
                    raise _fail(arg, path, f"line {lineno} is {_shorten(text)}, not an integer "
                                           "(expected a .npy file or one row index per line)") from None
                if not np.iinfo(np.int64).min <= value <= np.iinfo(np.int64).max:
                    raise _fail(arg, path, f"line {lineno}: index {value} is too large")
                values.append(value)
    except UnicodeDecodeError:
        raise _fail(arg, path, "neither a .npy file nor a text file of integers") from None
    return np.array(values, dtype=np.int64)


def read_npy_header(path, arg: str) -> Tuple[tuple, np.dtype]:
    """Check that `path` is a readable .npy file and return its (shape, dtype)
    from the header alone (the data are not read). Raises InvalidInputError
    naming `arg` for a missing file, a file that is not .npy (a CSV, a
    pickle) or a damaged header."""
    path = check_input_file(path, arg)
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
    if head != _NPY_MAGIC:
        raise _fail(arg, path, f"not a .npy file (no NumPy header; it starts with {_shorten(head.decode('latin-1'), 12)})")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError, EOFError) as exc:
        raise _fail(arg, path, f"not a .npy file ({str(exc).splitlines()[0] if str(exc) else 'bad header'})") from None
    if dtype.hasobject:
        raise _fail(arg, path, "holds Python objects; only numeric .npy files are read (never unpickled)")
    return shape, dtype


def load_npy(path, arg: str, mmap: bool = False) -> np.ndarray:
    """Read a numeric .npy file (never unpickled), memory-mapped when `mmap`.
    A file that is not .npy, holds objects, or is shorter than its header says
    (a truncated copy, a disk that filled up) raises InvalidInputError naming
    `arg` and the path; NumPy's own errors never reach the caller."""
    shape, dtype = read_npy_header(path, arg)
    path = os.fspath(path)
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
        offset = f.tell()
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = os.path.getsize(path) - offset
    if have < need:
        raise _fail(arg, path, f"truncated .npy file: its header says {shape} {dtype} ({need} bytes of data) "
                               f"but it holds {have} bytes")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _fail(arg, path, f"not a readable .npy file ({str(exc).splitlines()[0] if str(exc) else exc!r})") \
            from None


def save_npy_atomic(path: str, array) -> None:
    """Write `array` as .npy to exactly `path` (no ".npy" appended), through a
    temporary file in the same directory, synced and renamed into place, so
    a crash never leaves half a file. The file's mode follows the umask."""
    array = np.asarray(array)
    _atomic.write_atomic(path, lambda f: np.save(f, array, allow_pickle=False))


def save_text_atomic(path: str, text: str) -> None:
    """Write `text` (UTF-8) to exactly `path`, atomically (as save_npy_atomic)."""
    _atomic.write_text(path, text)


# ------------------------------------------------------------------ declaring file options

_KEY = "_pcoreset_path_args"


def _record(parser: argparse.ArgumentParser, action: argparse.Action, kind: str,
            suffixes: Optional[Sequence[str]]) -> None:
    specs = list(parser.get_default(_KEY) or [])
    flag = next((s for s in action.option_strings if s.startswith("--")), None) or \
        (action.option_strings[0] if action.option_strings else action.dest)
    specs.append((kind, action.dest, flag, tuple(suffixes) if suffixes else None))
    parser.set_defaults(**{_KEY: specs})


def add_input(parser: argparse.ArgumentParser, *flags, suffixes: Optional[Sequence[str]] = None,
              **kwargs) -> argparse.Action:
    """`parser.add_argument(*flags, **kwargs)` for an input file, recorded so
    that `check_path_args` checks it (exists, readable, suffix)."""
    action = parser.add_argument(*flags, **kwargs)
    _record(parser, action, "input", suffixes)
    return action


def add_output(parser: argparse.ArgumentParser, *flags, suffixes: Optional[Sequence[str]] = None,
               **kwargs) -> argparse.Action:
    """`parser.add_argument(*flags, **kwargs)` for an output file, recorded so
    that `check_path_args` checks it (its directory exists and is writable)."""
    action = parser.add_argument(*flags, **kwargs)
    _record(parser, action, "output", suffixes)
    return action


def add_input_dir(parser: argparse.ArgumentParser, *flags, **kwargs) -> argparse.Action:
    """`parser.add_argument` for an input directory (checked: exists, readable)."""
    action = parser.add_argument(*flags, **kwargs)
    _record(parser, action, "input_dir", None)
    return action


def add_output_dir(parser: argparse.ArgumentParser, *flags, **kwargs) -> argparse.Action:
    """`parser.add_argument` for an output directory (checked: writable, or can be created)."""
    action = parser.add_argument(*flags, **kwargs)
    _record(parser, action, "output_dir", None)
    return action


def _values(value) -> Iterable:
    if value is None:
        return ()
    return value if isinstance(value, (list, tuple)) else (value,)


def check_path_args(args: argparse.Namespace, outputs: bool = True,
                    skip: Sequence[str] = ()) -> None:
    """Check every file option declared with add_input/add_output that was
    given. `outputs=False` skips the output checks (e.g. on ranks other than
    the one that writes); `skip` lists option dests checked elsewhere. Also
    refuses an output that is the same file as an input or another output."""
    specs = getattr(args, _KEY, None) or []
    seen: List[Tuple[str, str, str]] = []  # (realpath, flag, kind)
    for kind, dest, flag, suffixes in specs:
        if dest in skip:
            continue
        for value in _values(getattr(args, dest, None)):
            if kind == "input":
                check_input_file(value, flag, suffixes)
            elif kind == "input_dir":
                check_input_dir(value, flag)
            elif not outputs:
                continue
            elif kind == "output":
                check_output_path(value, flag, suffixes)
            else:
                check_output_dir(value, flag)
            real = os.path.realpath(value)
            for other_real, other_flag, other_kind in seen:
                if real == other_real and (kind.startswith("output") or other_kind.startswith("output")):
                    raise _fail(flag, value, f"is the same file as {other_flag}")
            seen.append((real, flag, kind))
