"""Name -> factory tables for the pluggable parts of a run (datasets, teachers,
students). Each table lists its built-in entries as ``"module:attribute"``
strings, imported on first use: the registry modules import nothing heavy, a
machine without open_clip or torchvision keeps the text path, and the modules
behind the entries may import the registries without creating a cycle.

Adding a part: write its module next to the others (``datasets/``,
``teachers/`` or ``students/``), and add one line to that package's table in
its ``__init__.py``. From outside the package, ``register_dataset``,
``register_teacher`` and ``register_student`` add entries at run time."""
from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Union

from ..errors import InvalidInputError

Entry = Union[str, Callable]


class Registry:
    """kind: what the entries are ("teacher"); setting: the RunConfig field that
    names one ("teacher"), for error messages; builtins: name -> "module:attribute"."""

    def __init__(self, kind: str, setting: str, builtins: Dict[str, str]) -> None:
        self.kind, self.setting = kind, setting
        self._entries: Dict[str, Entry] = dict(builtins)

    def register(self, name: str, factory: Callable) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"{self.kind} name {name!r} must be a non-empty string")
        if not callable(factory):
            raise InvalidInputError(f"{self.kind} {name!r}: factory {factory!r} is not callable")
        self._entries[name] = factory

    def names(self) -> List[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str):
        """The factory registered under `name` (a built-in is imported here)."""
        if name not in self._entries:
            raise InvalidInputError(f"{self.setting}={name!r} is not known; choose one of {self.names()}")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._entries[name] = entry = obj
        return entry
