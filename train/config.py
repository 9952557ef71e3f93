"""The training recipe: a YAML file read once, at load, into one frozen dataclass per section.

Every default lives in its section's dataclass below and nowhere else; code reads attributes
(`recipe.train.batch_size`), never a raw mapping. An unknown key is refused with the closest
known one (`train.epoch: unknown key; did you mean train.epochs?`, where PaddleVideo only warns
"A new field detected"), as is a value of the wrong type or outside its choices, with one
ConfigError. PaddleVideo-style `-o key.sub=value` overrides are applied to the YAML before it is
read, so they are checked the same way; their values are parsed as YAML scalars (`-o
train.epochs=3` gives an int, `-o model.use_temporal_att=false` a bool).

`model` and `distillation.teacher` name a registered builder; their other keys are that
builder's keyword arguments, checked against its signature. `preprocess` is the core's own
PreprocessSpec (what the exporter records for the service) and `augment` the trainer's
TrainAugment: those dataclasses are the sections, so their defaults too are stated once.
"""
from __future__ import annotations

import collections.abc
import copy
import dataclasses
import difflib
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Optional, Sequence

import yaml

from serving.core.metadata import MetadataError, PreprocessSpec
from train.config_reader import (
    ConfigError,
    at_least,
    convert,
    join,
    read_by,
    read_section,
    unknown_key,
)
from train.data.frame_folder import FRAME_PATTERN
from train.data.train_transforms import TRAIN_SAMPLINGS, TrainAugment

DATA_FORMATS = ("video", "frames")
OPTIMIZERS = ("momentum", "adamw")
LR_SCHEDULES = ("warmup_cosine", "piecewise")
FREEZE_BN_MODES = ("none", "partial", "all")
AMP_DTYPES = ("float16", "bfloat16")
AMP_LEVELS = ("O1", "O2")
DISTILLATION_MODES = ("kd", "dml")
LOSS_NAMES = ("cross_entropy", "kd_kl", "dml_kl")
STUDENT, TEACHER, GROUND_TRUTH = "student", "teacher", "ground_truth"


# --- model and teacher: a registered builder and its keyword arguments ---------------------------

def _builder(name: Any, path: str) -> Callable[..., Any]:
    """The registered builder `name` (architecture or released variant), imported late: the
    registry imports Paddle, which only a built model needs. ConfigError for an unknown name,
    with the closest registered one."""
    from train.models import registry

    known = registry.list_models()
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"registered: {', '.join(sorted(known))}"
        raise ConfigError(f"{join(path, 'name')}: unknown model {name!r}; {hint}")
    return registry.get_builder(name)


def _builder_hints(name: Any, path: str) -> dict[str, Any]:
    """{argument: annotation} of the builder `name`: its signature is the section's schema."""
    builder = _builder(name, path)
    hints = typing.get_type_hints(builder)
    return {arg: hints.get(arg, Any) for arg in inspect.signature(builder).parameters}


@dataclass(frozen=True)
class ModelConfig:
    """`model`: the builder `name`, its keyword arguments (`options`: num_seg, dropout, ...,
    as written) and `temporal_shift: false`, which builds the same network with every temporal
    shift replaced by the identity (the control of bench/tsm_ablation.py)."""

    name: str
    temporal_shift: bool = True
    options: dict[str, Any] = field(default_factory=dict, metadata={"internal": True})

    def as_dict(self) -> dict[str, Any]:
        """The section as a recipe writes it (the exporter records it in model_meta.json)."""
        shift = {} if self.temporal_shift else {"temporal_shift": False}
        return {"name": self.name, **self.options, **shift}


@dataclass(frozen=True)
class TeacherConfig:
    """`distillation.teacher`: a builder `name` and its options, like `model`, plus the weights
    it starts from (`pretrained`, ImageNet) or is frozen with (`checkpoint`, trained)."""

    name: str
    pretrained: Optional[str] = None
    checkpoint: Optional[str] = None
    options: dict[str, Any] = field(default_factory=dict, metadata={"internal": True})


def _read_builder_call(cls: type, raw: Any, path: str) -> Any:
    """`cls` (ModelConfig or TeacherConfig) from its section: the fixed keys by the reader, the
    rest checked against the builder's signature and kept as written."""
    if not isinstance(raw, collections.abc.Mapping):
        raise ConfigError(f"{path}: expected a mapping with the model name and its options, "
                          f"got {raw!r}")
    if "name" not in raw:
        raise ConfigError(f"{join(path, 'name')}: missing (required)")
    hints = _builder_hints(raw["name"], path)
    fixed = [item.name for item in dataclasses.fields(cls) if not item.metadata.get("internal")]
    options = {}
    for key, value in raw.items():
        if key in fixed:
            continue
        if key not in hints:
            raise unknown_key(path, key, [*fixed, *hints])
        convert(value, hints[key], join(path, key))
        options[key] = value
    base = read_section(cls, {key: raw[key] for key in fixed if key in raw}, path)
    return dataclasses.replace(base, options=options)


def _read_model(raw: Any, path: str) -> ModelConfig:
    return _read_builder_call(ModelConfig, raw, path)


def _read_teacher(raw: Any, path: str) -> TeacherConfig:
    return _read_builder_call(TeacherConfig, raw, path)


# --- distillation ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LossTerm:
    """One weighted entry of `distillation.losses`."""

    name: str
    pair: tuple[str, str]
    weight: float = 1.0
    temperature: float = 1.0  # kd_kl only

    @property
    def label(self) -> str:
        """Name of the term in logs: `cross_entropy/student`, `kd_kl/student-teacher`, ..."""
        other = "" if self.pair[1] == GROUND_TRUTH else "-" + self.pair[1]
        return f"{self.name}/{self.pair[0]}{other}"


def _read_loss_terms(raw: Any, path: str) -> tuple[LossTerm, ...]:
    """The entries of a loss list, each a known loss name with a pair of two names."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: a non-empty list of {{name, pair, weight}}")
    terms = []
    for index, entry in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(entry, dict) or entry.get("name") not in LOSS_NAMES:
            raise ConfigError(f"{where}: name must be one of {LOSS_NAMES}, got {entry!r}")
        terms.append(read_section(LossTerm, entry, where))
    return tuple(terms)


def _check_loss_terms(terms: tuple[LossTerm, ...], mode: str, path: str) -> None:
    """Which outputs each loss may pair in `mode`; ValueError names the entry."""
    for index, term in enumerate(terms):
        where = f"{path}[{index}]"
        if term.name == "cross_entropy":
            if term.pair[0] not in (STUDENT, TEACHER) or term.pair[1] != GROUND_TRUTH:
                raise ValueError(f"{where}: cross_entropy pairs [student|teacher, ground_truth]")
            if mode == "kd" and term.pair[0] == TEACHER:
                raise ValueError(f"{where}: a kd teacher is frozen; it has no loss of its own")
        elif sorted(term.pair) != [STUDENT, TEACHER]:
            raise ValueError(f"{where}: {term.name} pairs [student, teacher], "
                             f"got {list(term.pair)}")
        if term.name == "dml_kl" and mode != "dml":
            raise ValueError(f"{where}: dml_kl needs mode dml (a frozen teacher cannot learn)")


def parse_loss_terms(raw: Any, mode: str, path: str = "distillation.losses"
                     ) -> tuple[LossTerm, ...]:
    """A `distillation.losses` list read and checked for `mode`, as the recipe reader does."""
    terms = _read_loss_terms(raw, path)
    try:
        _check_loss_terms(terms, mode, path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return terms


@dataclass(frozen=True)
class DistillationConfig:
    """`distillation` (see train/engine/distill.py): `kd` distils a frozen, trained teacher,
    `dml` trains student and teacher together."""

    mode: Literal[DISTILLATION_MODES]
    teacher: TeacherConfig = read_by(_read_teacher)
    losses: tuple[LossTerm, ...] = read_by(_read_loss_terms)

    def __post_init__(self) -> None:
        _check_loss_terms(self.losses, self.mode, "losses")
        if self.mode == "kd" and not self.teacher.checkpoint:
            raise ValueError("teacher.checkpoint: kd distils a trained teacher; set the "
                             ".pdparams to distil from")


# --- data, optimiser, training ---------------------------------------------------------------------

@dataclass(frozen=True)
class DataConfig:
    """`data`: where the lists and clips are. List paths are relative to `root`; frame folders
    (`format: frames`) to `root/frames_dir`, as PaddleVideo's `data_prefix`."""

    root: str = "."
    format: Literal[DATA_FORMATS] = "video"
    frames_dir: str = "rawframes"
    frame_pattern: str = FRAME_PATTERN
    train_list: Optional[str] = None
    val_list: Optional[str] = None
    test_list: Optional[str] = None
    label_list: str = "label_list.txt"
    train_sampling: Literal[TRAIN_SAMPLINGS] = "uniform"
    num_workers: int = at_least(0, 0)


@dataclass(frozen=True)
class ExportConfig:
    """`export.labels`: the class names to ship, when not the dataset's label list."""

    labels: Optional[str] = None


@dataclass(frozen=True)
class OptimizerConfig:
    """`optimizer`: the optimiser and its per-iteration LR schedule (train/engine/optim.py).
    `lr` is for `reference_batch_size`; with `scale_lr_by_batch` every LR of the schedule scales
    by (batch actually used / reference_batch_size); no reference: no scaling."""

    name: Literal[OPTIMIZERS] = "momentum"
    lr: float = at_least(0, 0.01)
    momentum: float = 0.9  # momentum only
    nesterov: bool = True  # momentum only
    weight_decay: float = at_least(0, 0.0)
    schedule: Literal[LR_SCHEDULES] = "warmup_cosine"
    warmup_epochs: float = at_least(0, 0.0)
    warmup_start_lr: float = at_least(0, 0.0)
    min_lr: float = at_least(0, 0.0)  # warmup_cosine's floor
    boundaries_epochs: Optional[tuple[float, ...]] = None  # piecewise only, required there
    multipliers: tuple[float, ...] = (1.0, 0.1, 0.01)  # piecewise only
    scale_lr_by_batch: bool = False
    reference_batch_size: Optional[int] = at_least(1, None)
    lr_mult: dict[str, float] = field(default_factory=dict)  # {parameter-name prefix: m}
    grad_clip_norm: Optional[float] = None

    def __post_init__(self) -> None:
        if self.schedule == "piecewise" and self.boundaries_epochs is None:
            raise ValueError("boundaries_epochs: required by schedule piecewise")


@dataclass(frozen=True)
class PreciseBNConfig:
    """`train.precise_bn` (train/engine/precise_bn.py), with PaddleVideo's PRECISEBN defaults."""

    interval_epochs: int = at_least(1, 1)
    num_iters: int = at_least(1, 200)


@dataclass(frozen=True)
class AmpSettings:
    """`train.amp` (train/engine/amp.py): off unless `enabled`."""

    enabled: bool = False
    dtype: Literal[AMP_DTYPES] = "float16"
    level: Literal[AMP_LEVELS] = "O1"


@dataclass(frozen=True)
class TrainConfig:
    """`train`: the run. `batch_size` is per process; `processes` is `--nproc`'s default."""

    epochs: int = at_least(1)
    batch_size: int = at_least(1, 8)
    seed: int = 0
    processes: int = at_least(1, 1)
    output_dir: str = "output/run"
    pretrained: Optional[str] = None  # ImageNet weights of the backbone (models/pretrained.py)
    # A trained checkpoint (any layout, other classes) to start from: tensors matching by name
    # and shape are loaded, the classifier is re-initialised (models/checkpoint.py).
    finetune_from: Optional[str] = None
    freeze_backbone_epochs: int = at_least(0, 0)  # only the classifier learns in these epochs
    zero_init_classifier: bool = False
    label_smoothing: float = at_least(0, 0.0)
    mixup_alpha: float = at_least(0, 0.0)
    accumulate_steps: int = at_least(1, 1)
    freeze_bn: Literal[FREEZE_BN_MODES] = "none"
    precise_bn: Optional[PreciseBNConfig] = None  # None: never recomputed
    amp: AmpSettings = AmpSettings()

    def __post_init__(self) -> None:
        if self.finetune_from and self.pretrained:
            raise ValueError(f"pretrained: {self.pretrained} and finetune_from: "
                             f"{self.finetune_from} both start the backbone; set "
                             "train.pretrained=null to fine-tune")
        if self.freeze_backbone_epochs >= self.epochs:
            raise ValueError(f"freeze_backbone_epochs ({self.freeze_backbone_epochs}) must be "
                             f"fewer than epochs ({self.epochs}), or the backbone never trains")
        if self.finetune_from and Path(self.finetune_from).parent.resolve() == \
                Path(self.output_dir).resolve():
            raise ValueError(f"output_dir: {self.output_dir} holds the checkpoint to fine-tune "
                             f"from ({self.finetune_from}), which training would overwrite; "
                             "write to another folder (make train OUTPUT=...)")


# --- the recipe --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
    """A whole recipe; `source` is the file it was read from (not a YAML key)."""

    model: ModelConfig = read_by(_read_model)
    preprocess: PreprocessSpec
    train: TrainConfig
    augment: TrainAugment = TrainAugment()
    data: DataConfig = DataConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    export: ExportConfig = ExportConfig()
    distillation: Optional[DistillationConfig] = None
    source: str = field(default="", metadata={"internal": True})

    def __post_init__(self) -> None:
        try:
            self.preprocess.validate()
        except MetadataError as exc:  # already worded "preprocess.<key>: ..."
            raise ValueError(str(exc)) from None
        model_seg = self.model.options.get("num_seg")
        if model_seg is not None and model_seg != self.preprocess.num_seg:
            raise ValueError(f"preprocess.num_seg ({self.preprocess.num_seg}) must equal "
                             f"model.num_seg ({model_seg})")


def class_count(recipe: Recipe, labels: Sequence[str], label_file: str | Path) -> int:
    """The number of classes, which is always that of the label list (`labels`, read from
    `label_file`): a recipe's `model.num_classes` that disagrees is a ConfigError naming both,
    so a model never trains or exports with outputs its labels do not name."""
    written = recipe.model.options.get("num_classes")
    if written is not None and written != len(labels):
        raise ConfigError(f"model.num_classes ({written}) disagrees with the {len(labels)} "
                          f"classes of {label_file}; remove model.num_classes (the label list "
                          "sets it) or use the label list it was meant for")
    return len(labels)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """The recipe at `path` with the `key=value` overrides applied; ConfigError on any problem,
    prefixed with the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        with path.open(encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    try:
        recipe = read_section(Recipe, apply_overrides(raw, overrides), "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return dataclasses.replace(recipe, source=str(path))


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of the YAML mapping `raw` with every `dotted.key=value` applied."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        dotted, value = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if child is None:  # `precise_bn: null` and -o train.precise_bn.num_iters=2
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
            node = child
        try:
            node[keys[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: not a YAML value ({exc})") from None
    return raw


def positive_int(value: Any, key: str) -> int:
    """`value` when it is an integer >= 1 (YAML's true/false are not), else a ConfigError
    naming `key` (for command-line values, which the recipe reader does not see)."""
    return convert(value, int, key, minimum=1)
