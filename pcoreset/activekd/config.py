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

    def check_types(self, source: str = "config") -> "RunConfig":
        """Every field holds a value of its declared type: text for str fields,
        whole numbers (not booleans) for int fields, numbers for float fields,
        true/false (not a word such as "no") for booleans. Raises
        InvalidInputError in one line naming `source`, the key and the value."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            want = _FIELD_TYPES.get(f.name)
            if want is None or (v is None and f.name in _OPTIONAL):
                continue
            ok, words = _TYPE_CHECKS[want]
            if not ok(v):
                raise InvalidInputError(f"{source}: {f.name} = {v!r} must be {words}"
                                        + (" (or left out)" if f.name in _OPTIONAL else ""))
        return self

    def validate(self, source: str = "config") -> "RunConfig":
        self.check_types(source)

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
        if not isinstance(d, dict):
            raise InvalidInputError(f"{source}: expected a table of settings, found {type(d).__name__}")
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidInputError(f"{source}: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**d).check_types(source)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_TYPE_CHECKS = {
    "str": (lambda v: isinstance(v, str), "text (a quoted string)"),
    "int": (_is_int, "a whole number"),
    "float": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false (a boolean, not a word)"),
    "list": (lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v), "a list of names"),
    "dict": (lambda v: isinstance(v, dict), "a table (mapping) of options"),
}
_ANNOTATION_TYPES = {"str": "str", "int": "int", "float": "float", "bool": "bool", "Optional[str]": "str",
                     "Optional[float]": "float", "Optional[list]": "list", "Dict[str, Any]": "dict"}
_FIELD_TYPES = {f.name: _ANNOTATION_TYPES[str(f.type)] for f in dataclasses.fields(RunConfig)}
_OPTIONAL = {f.name for f in dataclasses.fields(RunConfig) if str(f.type).startswith("Optional[")}


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
    where = f"--config {str(path)!r}"
    if suffix not in (".toml", ".yaml", ".yml"):
        raise InvalidInputError(f"{where}: expected a .toml, .yaml or .yml file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InvalidInputError(f"{where}: line {line} is not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file "
                                "as UTF-8") from None
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            import tomli as tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"{where}: not valid TOML: {exc}") from None
    else:
        try:
            import yaml
        except ImportError as exc:
            raise InvalidInputError(f"{where}: YAML needs PyYAML (pip install pyyaml), or use TOML") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InvalidInputError(f"{where}: not valid YAML{at}: {what}") from None
        data = {} if data is None else data
    if not isinstance(data, dict):
        raise InvalidInputError(f"--config {str(path)!r}: top level must be a table of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def read_saved_config(run_dir) -> "RunConfig":
    """The RunConfig saved in ``run_dir/config.json``. A damaged file (not
    JSON, not UTF-8, a value of the wrong type) raises a one-line
    PcoresetError naming it: such a folder cannot be resumed or reported."""
    from . import _io

    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise InvalidInputError(f"run directory {str(run_dir)!r} has no config.json")
    data = _io.read_json(path, "config.json")
    if not isinstance(data, dict):
        raise InvalidInputError(f"config.json: {str(path)!r} is damaged (expected a table of settings)")
    return RunConfig.from_dict(upgrade_saved(data), source=str(path))
