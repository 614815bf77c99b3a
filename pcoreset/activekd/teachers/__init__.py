"""Teachers for ActiveKD (``--teacher``): one module per teacher, listed in
:data:`TEACHERS`. A teacher maps a dataset to (N, C) logits, computed once per
pool and cached (:func:`teacher_logits`).

=================  ==========================================================
``zeroshot-text``  a sentence-embedding model against class prompts (text)
``precomputed``    logits of any model, read from a .npy/.npz/.pt file
``clip``           zero-shot CLIP through open_clip (images)
``fewshot``        CLIP plus a CLAP linear probe refit on each round's labels
=================  ==========================================================

A new teacher: a :class:`Teacher` subclass in a module here (``from_config``,
``default_settings``, ``identity``, ``predict``), and one line in
:data:`TEACHERS`."""
from __future__ import annotations

from typing import Callable, Dict

from ..config import RunConfig
from ..datasets.base import Dataset
from ..registry import Registry
from .base import Teacher, cache_key, check_logits, default_cache_dir, teacher_logits

TEACHERS = Registry("teacher", "teacher", {
    "zeroshot-text": "pcoreset.activekd.teachers.text:ZeroShotTextTeacher",
    "precomputed": "pcoreset.activekd.teachers.precomputed:PrecomputedTeacher",
    "clip": "pcoreset.activekd.teachers.clip:CLIPTeacher",
    "fewshot": "pcoreset.activekd.teachers.clap:FewShotCLIPTeacher",
})

TeacherFactory = Callable[[RunConfig], Teacher]


def register_teacher(name: str, factory) -> None:
    """Register a Teacher subclass (built with its ``from_config``) or a
    `factory(cfg) -> Teacher` under `name` (``--teacher NAME``)."""
    TEACHERS.register(name, factory)


def teacher_names():
    return TEACHERS.names()


def build_teacher(cfg: RunConfig) -> Teacher:
    """The teacher named by ``cfg.teacher``; cheap (models load on first use)."""
    factory = TEACHERS.get(cfg.teacher)
    if isinstance(factory, type) and issubclass(factory, Teacher):
        return factory.from_config(cfg)
    return factory(cfg)


def teacher_defaults(cfg: RunConfig, ds: Dataset) -> Dict[str, object]:
    """What the teacher named by ``cfg.teacher`` uses for RunConfig fields left at
    None (``prompt``, ``teacher_scale``) on `ds`."""
    factory = TEACHERS.get(cfg.teacher)
    if isinstance(factory, type) and issubclass(factory, Teacher):
        return dict(factory.default_settings(ds))
    return {}


__all__ = ["Teacher", "TEACHERS", "register_teacher", "teacher_names", "build_teacher", "teacher_defaults",
           "teacher_logits", "cache_key", "check_logits", "default_cache_dir"]
