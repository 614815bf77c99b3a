"""ActiveKD: active learning with knowledge distillation from a frozen teacher
(DESIGN.md §5).

    from pcoreset.activekd import RunConfig, run
    run(RunConfig(dataset="embedded:wordnet", strategy="pcoreset", out="runs/pc"))

Pluggable parts, each behind a small registry so other modalities slot in:
datasets (:mod:`.data`), teachers (:mod:`.teachers`), students (:mod:`.student`);
selection strategies come from :mod:`pcoreset.strategies`.
"""
from .config import RunConfig
from .data import Dataset, load_dataset, register_dataset
from .loop import run
from .student import register_student
from .teachers import Teacher, register_teacher

__all__ = ["RunConfig", "Dataset", "load_dataset", "register_dataset", "run",
           "Teacher", "register_teacher", "register_student"]
from . import vision  # noqa: E402,F401  registers image datasets, clip/fewshot teachers, image students
