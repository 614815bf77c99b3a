"""Test seam: a power cut at a chosen write (used by the tests only).

Every file pcoreset writes goes through ``pcoreset._atomic.write_atomic``,
which calls the hooks in ``pcoreset._atomic._hooks`` at each write's stages.
This module installs one that

- appends each write's path to a log (to count the writes of a clean run), and
- SIGKILLs the process just before the N-th write is renamed into place, or
  before the first write whose path ends with a given suffix: the file keeps
  its old content and the temporary file stays behind, as after a power cut.

In a subprocess: ``python tests/_write_faults.py KILL_AT LOG -- pcoreset-args``
(KILL_AT: a number, a path suffix, or '-' for none; LOG: a file or '-').
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Optional, Union


def install(kill_at: Union[int, str, None] = None, log: Optional[str] = None) -> None:
    from pcoreset import _atomic

    count = [0]

    def hook(stage: str, path: str) -> None:
        if stage != "before_rename":
            return
        count[0] += 1
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(path + "\n")
        hit = count[0] == kill_at if isinstance(kill_at, int) else (kill_at is not None and path.endswith(kill_at))
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)

    _atomic._hooks.append(hook)


def main(argv) -> int:
    kill_at, log, sep, *args = argv
    assert sep == "--"
    install(None if kill_at == "-" else int(kill_at) if kill_at.isdigit() else kill_at, None if log == "-" else log)
    from pcoreset.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1:]))


def run_child(cfg: dict, out: str, kill_at, log) -> None:
    """Entry of a forked test process: one ``pcoreset.activekd.run`` of `cfg`
    in `out` with the seam installed (see install)."""
    install(kill_at, log)
    from pcoreset.activekd import RunConfig, run

    run(RunConfig(**cfg), out, progress=False, echo=lambda s: None, plot=False)
