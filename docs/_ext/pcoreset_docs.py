"""Sphinx helpers for pcoreset's documentation: the ``command`` and
``example-setup`` directives, and a docstring pass for plain-text layouts (see
``tidy_docstring``).

``.. example-setup:: *`` is ``testsetup`` made visible: the code that every
example of the page starts from (imports, the arrays the text talks about) is
shown as a captioned code block, and the doctest build runs it before each
example group, as it runs a ``testsetup``.

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
import re
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
    # the pcoreset that conf.py imported (the built checkout, or the installed package)
    first = os.environ.get("PCORESET_DOCS_PATH", str(ROOT))
    env["PYTHONPATH"] = os.pathsep.join([first] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
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


class ExampleSetupDirective(SphinxDirective):
    has_content = True
    optional_arguments = 1
    final_argument_whitespace = True
    option_spec = {"caption": directives.unchanged}

    def run(self):
        from sphinx.directives.code import container_wrapper

        code = "\n".join(self.content)
        groups = [g.strip() for g in self.arguments[0].split(",")] if self.arguments else ["default"]
        node = nodes.literal_block(code, code, testnodetype="testsetup", groups=groups)
        node["language"] = "python"
        node["options"] = {}
        self.set_source_info(node)
        caption = self.options.get("caption", "Setup: every example on this page starts from this")
        wrapped = container_wrapper(self, node, caption)
        wrapped["classes"].append("pcoreset-setup")
        return [wrapped]


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


# "name: text" at the start of a line: one or more identifiers (joined by
# "," or "/") and a colon, then text on the same line.
_FIELD = re.compile(r"^([A-Za-z_]\w*(?:\s*[,/]\s*[A-Za-z_]\w*)*):\s+\S")


def tidy_docstring(app, what, name, obj, options, lines: List[str]) -> None:
    """Make two plain-text layouts of the package's docstrings valid reST,
    without changing their words (runs before napoleon).

    * A table of fields, ``name:   description`` lines aligned in columns
      with indented continuation lines (dataclass docstrings use it), is
      shown as preformatted text: reST would read it as a broken definition
      list.
    * A parameter line of several names that wraps before its colon
      (``a, b, c,`` / ``d: as for ...``) is joined into one line, which
      napoleon reads as one entry for all the names.
    """
    joined: List[str] = []
    for line in lines:
        prev = joined[-1] if joined else ""
        indent = len(line) - len(line.lstrip())
        if (prev.rstrip().endswith(",") and prev.strip() and indent == len(prev) - len(prev.lstrip())
                and _FIELD.match(line.strip()) and _FIELD.match(prev.strip() + " " + line.strip())):
            joined[-1] = prev.rstrip() + " " + line.strip()
        else:
            joined.append(line)
    out: List[str] = []
    i = 0
    while i < len(joined):
        j, fields = i, 0
        while j < len(joined) and joined[j].strip():
            at_margin = not joined[j][:1].isspace()
            if at_margin and _FIELD.match(joined[j]):
                fields += 1
            elif at_margin or j == i:
                break
            j += 1
        if fields >= 2:
            if out and out[-1].strip():
                out.append("")
            out += ["::", ""] + ["    " + text for text in joined[i:j]] + [""]
            i = j
        else:
            out.append(joined[i])
            i += 1
    lines[:] = _literal_indented_blocks(out)


# napoleon's section headers: the indented lines under them are its to parse
_SECTIONS = {"args:", "arguments:", "parameters:", "params:", "keyword args:", "keyword arguments:",
             "other parameters:", "returns:", "return:", "yields:", "yield:", "raises:", "raise:",
             "attributes:", "example:", "examples:", "note:", "notes:", "warning:", "warnings:",
             "warns:", "references:", "see also:", "todo:", "methods:"}


def _literal_indented_blocks(lines: List[str]) -> List[str]:
    """An indented block after a blank line that follows an unindented
    paragraph (a code sample, a table) becomes a literal block, as the
    plain-text docstring means it: the paragraph's closing ':' becomes
    '::', or a '::' line is added. Napoleon sections are left alone."""
    out: List[str] = []
    for i, line in enumerate(lines):
        prev = lines[i - 1] if i else ""
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        opens_block = (not line.strip() and prev.strip() and not prev[:1].isspace()
                       and nxt.strip() and nxt[:1].isspace()
                       and not prev.rstrip().endswith("::") and prev.strip().lower() not in _SECTIONS)
        if opens_block and prev.rstrip().endswith(":"):
            out[-1] = prev.rstrip() + ":"
            out.append("")
        elif opens_block:
            out += ["", "::", ""]
        else:
            out.append(line)
    return out


def skip_dataclass_fields(app, what, name, obj, skip, options):
    """Dataclass fields are described in their class's docstring: do not list
    each again as an undocumented attribute."""
    if what == "class":
        fields = getattr(_current_class(app), "__dataclass_fields__", None)
        if fields and name in fields:
            return True
    return None


def _current_class(app):
    """The class whose members autodoc is listing (autodoc keeps its module
    and name in the environment's temp data while it does)."""
    path = app.env.temp_data.get("autodoc:class") or ""
    module = app.env.temp_data.get("autodoc:module") or ""
    if not path or not module:
        return None
    obj = sys.modules.get(module)
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj


def setup(app):
    app.add_directive("command", CommandDirective)
    app.add_directive("example-setup", ExampleSetupDirective)
    app.connect("autodoc-skip-member", skip_dataclass_fields)
    app.connect("autodoc-process-docstring", tidy_docstring, priority=100)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
