"""Run configuration: one ActiveKD run = one dataset, teacher, student, strategy,
distillation setting and seed. Built from defaults, then a TOML/YAML file, then
command-line flags; saved as ``config.json`` in the run directory."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import InvalidInputError

EMBEDDED_WORDNET = "embedded:wordnet"
EMBEDDED_WORDNET25 = "embedded:wordnet25"
# What RunConfig held for prompt and teacher_scale before they defaulted to None:
# run directories saved then by the CLIP teachers (which ignored them) read as None.
LEGACY_TEXT_DEFAULTS = {"prompt": "a kind of {}.", "teacher_scale": 50.0}


@dataclass
class RunConfig:
    """Every knob of a run. Paths are stored as given (strings).

    dataset:            CSV (``.csv`` or ``.csv.gz``; columns ``text``, optional ``id``,
                        ``label``, ``split``), or a registered name (``embedded:wordnet``,
                        ``embedded:wordnet25``, ``imagefolder:DIR``...; see datasets/).
    classes:            class names in label order (default: sorted labels found).
    test_fraction:      held-out share when the dataset has no ``split`` column.
    max_pool / max_test: keep at most this many pool / test rows (seeded, stratified
                        by nothing; 0 = all) — for quick runs.
    teacher:            registered teacher name (``zeroshot-text``, ``precomputed``,
                        ``clip``, ``fewshot``; see teachers/).
    teacher_model:      model path or name for model teachers ('' = the default).
    teacher_logits:     (N, C) .npy/.pt file for the ``precomputed`` teacher.
    prompt:             class prompt template(s) for zero-shot teachers; None = the
                        teacher's default (text: "a kind of {}."; CLIP: the dataset's
                        templates or "a photo of a {}.").
    teacher_scale:      logits = scale * cosine; None = the teacher's default (text 50,
                        CLIP 100).
    student:            registered student name; None = the dataset's default
                        (``bow`` for text, ``resnet18`` for images).
    Fields left at None are resolved when a run starts, and config.json holds
    the resolved values.
    strategy:           pcoreset.strategies name; ``strategy_kwargs`` go to it.
    distill:            False = the paper's "No Distill" baseline (CE head only).
    temperature:        KD temperature T (KL scaled by T^2).
    rounds, budget:     selection rounds after round 0, labels bought per round.
    initial_per_class:  round-0 labeled set: this many random samples per class...
    initial_labeled:    ...or a file of sample ids / row indices (one per line).
    oracle:             where a person's labels come from: a CSV ``id,label`` file, or
                        ``label-studio://HOST:PORT/PROJECT_ID`` (see activekd.oracles);
                        labels of picks are read from it instead of the dataset.
    oracle_wait:        seconds to wait for the oracle's labels before stopping
                        with "awaiting labels" (0 = stop at once).
    """

    dataset: str = EMBEDDED_WORDNET
    classes: Optional[list] = None
    test_fraction: float = 0.2
    max_pool: int = 0
    max_test: int = 0
    teacher: str = "zeroshot-text"
    teacher_model: str = ""
    teacher_logits: str = ""
    prompt: Optional[str] = None
    teacher_scale: Optional[float] = None
    student: Optional[str] = None
    embed_dim: int = 64
    hidden_dim: int = 64
    num_buckets: int = 8192
    epochs: int = 30
    batch_size: int = 512
    lr: float = 0.03
    weight_decay: float = 0.0
    strategy: str = "pcoreset"
    strategy_kwargs: Dict[str, Any] = field(default_factory=dict)
    distill: bool = True
    temperature: float = 2.0
    rounds: int = 5
    budget: int = 30
    initial_per_class: int = 1
    initial_labeled: str = ""
    oracle: str = ""
    oracle_wait: float = 0.0
    seed: int = 0
    cache_dir: str = ""

    # Fields that may differ between the first run and a resume of it.
    RESUMABLE_CHANGES = ("rounds", "oracle", "oracle_wait", "cache_dir")

    def validate(self) -> "RunConfig":
        def positive(name, allow_zero=False):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (v == 0 and not allow_zero):
                raise InvalidInputError(f"{name}={v!r} must be a {'non-negative' if allow_zero else 'positive'} number")

        for name in ("embed_dim", "hidden_dim", "num_buckets", "epochs", "batch_size", "lr", "temperature"):
            positive(name)
        if self.teacher_scale is not None:
            positive("teacher_scale")
        for name in ("rounds", "budget", "initial_per_class", "max_pool", "max_test", "weight_decay", "oracle_wait"):
            positive(name, allow_zero=True)
        if not 0.0 < self.test_fraction < 1.0:
            raise InvalidInputError(f"test_fraction={self.test_fraction!r} must be in (0, 1)")
        if self.prompt is not None and ("{}" not in self.prompt and "{class}" not in self.prompt):
            raise InvalidInputError(f"prompt={self.prompt!r} must contain '{{}}' where the class name goes")
        if not isinstance(self.strategy_kwargs, dict):
            raise InvalidInputError(f"strategy_kwargs={self.strategy_kwargs!r} must be a mapping")
        return self

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any], *, source: str = "config") -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidInputError(f"{source}: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def upgrade_saved(d: Dict[str, Any]) -> Dict[str, Any]:
    """A config.json dict as this version reads it: a CLIP-teacher run saved when
    prompt and teacher_scale defaulted to the text teacher's values (which the
    CLIP teachers then ignored) gets None for them, i.e. the same teacher."""
    d = dict(d)
    if d.get("teacher") in ("clip", "fewshot") and all(d.get(k) == v for k, v in LEGACY_TEXT_DEFAULTS.items()):
        d.update(prompt=None, teacher_scale=None)
    return d


def read_config_file(path) -> Dict[str, Any]:
    """Settings from a TOML (``.toml``) or YAML (``.yaml``/``.yml``, needs PyYAML) file.
    Keys are RunConfig field names (dashes allowed)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"--config: file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            import tomli as tomllib

        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise InvalidInputError(f"--config {str(path)!r}: YAML needs PyYAML (pip install pyyaml), or use TOML") from exc
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    else:
        raise InvalidInputError(f"--config {str(path)!r}: expected a .toml, .yaml or .yml file")
    if not isinstance(data, dict):
        raise InvalidInputError(f"--config {str(path)!r}: top level must be a table of settings")
    return {k.replace("-", "_"): v for k, v in data.items()}
