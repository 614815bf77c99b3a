"""ActiveKD: active learning with knowledge distillation from a frozen teacher.

    from pcoreset.activekd import RunConfig, run
    run(RunConfig(dataset="embedded:wordnet", strategy="pcoreset"), "runs/pc")

Where each part lives (every registry lists its built-in entries in one table):

    config.py     RunConfig: every setting of a run (None = resolved by the teacher/dataset)
    datasets/     DATASETS: text CSV, embedded WordNet, Fashion-MNIST, ImageFolder, torchvision
    teachers/     TEACHERS: zeroshot-text, precomputed, clip, fewshot (CLAP); the output cache
    students/     STUDENTS: bow (text), smallcnn / resnet18 / mobilenet_v2 (images)
    loop.py       the round loop and the resumable run directory (rounds.py: an open round's state)
    oracles/      where people's labels come from: a CSV file, a Label Studio project
    _io.py        atomic writes, pickle-free reads, the run folder's lock
    report.py     tables and paired comparisons across runs (stats.py, plot.py)
    demo.py, cli.py   ``pcoreset demo`` and the run/demo/report/export-picks subcommands

Selection strategies come from :mod:`pcoreset.strategies`.
"""
from .._deps import require_torch

require_torch("the ActiveKD driver (pcoreset.activekd: pcoreset run, demo, report)")

from .config import RunConfig  # noqa: E402
from .datasets import Dataset, load_dataset, register_dataset  # noqa: E402
from .loop import run  # noqa: E402
from .students import register_student  # noqa: E402
from .teachers import Teacher, register_teacher  # noqa: E402

__all__ = ["RunConfig", "Dataset", "load_dataset", "register_dataset", "run",
           "Teacher", "register_teacher", "register_student"]
