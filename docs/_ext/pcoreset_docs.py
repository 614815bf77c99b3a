"""Sphinx helper for pcoreset's documentation: the ``command`` directive.

``.. command::`` shows shell commands as a console block in the HTML pages
and runs the very same commands in the doctest build (``sphinx-build -b
doctest``), so a command example cannot go stale. Each content line is one
command (a line ending in a backslash continues on the next). ``pcoreset``
and ``torchrun`` run with this interpreter (``python -m pcoreset``,
``python -m torch.distributed.run``) and the checkout on ``PYTHONPATH``;
other programs are refused, so that an install command never runs during a
docs build. Commands run in the doctest group's working directory (a fresh
temporary folder, see ``doctest_global_setup`` in conf.py) and must exit 0.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
RUNNERS = {
    "pcoreset": [sys.executable, "-m", "pcoreset"],
    "torchrun": [sys.executable, "-m", "torch.distributed.run"],
}


def split_commands(lines: List[str]) -> List[str]:
    """Join backslash-continued lines; drop blank lines and # comments."""
    commands, current = [], ""
    for line in lines:
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip() and not current.lstrip().startswith("#"):
            commands.append(current.strip())
        current = ""
    if current.strip():
        commands.append(current.strip())
    return commands


def run_commands(commands: List[str], timeout: int = 300) -> None:
    """Run each command; raise with its output when one fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("HF_HUB_OFFLINE", "1")
    for command in commands:
        argv = shlex.split(command, comments=True)
        if argv[0] not in RUNNERS:
            raise ValueError(f"command example {command!r}: only {sorted(RUNNERS)} commands run in the docs build")
        done = subprocess.run(RUNNERS[argv[0]] + argv[1:], env=env, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"command example failed with exit code {done.returncode}: {command}\n"
                               f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}")


class CommandDirective(SphinxDirective):
    has_content = True
    option_spec = {"timeout": directives.positive_int}

    def run(self):
        lines = list(self.content)
        shown = "\n".join(("  " if i and lines[i - 1].rstrip().endswith("\\") else "$ ") + line
                          if line.strip() and not line.lstrip().startswith("#") else line
                          for i, line in enumerate(lines))
        commands = split_commands(lines)
        node = nodes.literal_block(shown, shown)
        node["language"] = "console"
        self.set_source_info(node)
        # what sphinx.ext.doctest runs: node["test"] instead of the shown text
        node["testnodetype"] = "testcode"
        node["groups"] = ["default"]
        node["options"] = {}
        node["test"] = (f"from pcoreset_docs import run_commands\n"
                        f"run_commands({commands!r}, timeout={self.options.get('timeout', 300)})\n")
        return [node]


def setup(app):
    app.add_directive("command", CommandDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
