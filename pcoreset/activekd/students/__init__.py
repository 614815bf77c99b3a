"""Students for ActiveKD (``--student``): dual-head networks (a CE head and a KD
head on one backbone), one module per family, listed in :data:`STUDENTS`.

=========================  =================================================
``bow``                    text: hashed bag of words/bigrams/trigrams
``smallcnn``               images, 32 px, a cheap CPU student
``resnet18``, ``mobilenet_v2``  images, 224 px, random init
``resnet18-imagenet``, ``mobilenet_v2-imagenet``  ImageNet-initialised
=========================  =================================================

Left at None, the student follows the dataset: ``bow`` for text, ``resnet18``
for images. A new student: a :class:`DualHeadStudent` subclass in a module here
and one line in :data:`STUDENTS`."""
from __future__ import annotations

from typing import Callable

from ...errors import InvalidInputError
from ..config import RunConfig
from ..datasets.base import Dataset
from ..registry import Registry
from .base import DualHead, DualHeadStudent, kd_loss, unlabeled_order

STUDENTS = Registry("student", "student", {
    "bow": "pcoreset.activekd.students.bow:BowStudent",
    "smallcnn": "pcoreset.activekd.students.image:smallcnn",
    "resnet18": "pcoreset.activekd.students.image:resnet18",
    "mobilenet_v2": "pcoreset.activekd.students.image:mobilenet_v2",
    "resnet18-imagenet": "pcoreset.activekd.students.image:resnet18_imagenet",
    "mobilenet_v2-imagenet": "pcoreset.activekd.students.image:mobilenet_v2_imagenet",
})
DEFAULT_STUDENT = {"text": "bow", "image": "resnet18"}

StudentFactory = Callable[[RunConfig, Dataset], DualHeadStudent]


def register_student(name: str, factory: StudentFactory) -> None:
    """Register `factory(cfg, dataset) -> DualHeadStudent` under `name` (``--student NAME``)."""
    STUDENTS.register(name, factory)


def default_student(ds: Dataset) -> str:
    """The student used when ``cfg.student`` is None."""
    if ds.modality not in DEFAULT_STUDENT:
        raise InvalidInputError(f"dataset {ds.name!r} has neither texts nor images: name a student "
                                f"(one of {STUDENTS.names()})")
    return DEFAULT_STUDENT[ds.modality]


def build_student(cfg: RunConfig, ds: Dataset) -> DualHeadStudent:
    return STUDENTS.get(cfg.student or default_student(ds))(cfg, ds)


__all__ = ["DualHead", "DualHeadStudent", "kd_loss", "unlabeled_order", "STUDENTS", "register_student",
           "default_student", "build_student"]
