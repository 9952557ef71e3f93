"""The model's metadata: the single source of truth that training, evaluation, export and
serving agree on.

The exporter writes `model_repo/<name>/model_meta.json`; the service and offline predictor read
it and never hard-code a preprocessing parameter. Like torchvision's weight enums, a model never
travels without its preprocessing and its class names.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.core.errors import PPTSMError

META_FILENAME = "model_meta.json"
SCHEMA_VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MetadataError(PPTSMError, ValueError):
    """The metadata file is missing, unreadable or inconsistent; the message names the field."""


@dataclass(frozen=True)
class PreprocessSpec:
    """How frames become the network input (PaddleVideo's inference pipeline, parameterised).

    `scale_size` is the short side of `Scale`; with `fixed_ratio` the long side becomes
    int(scale_size * 4 / 3) whatever the input aspect ratio (PaddleVideo's default).
    """

    num_seg: int = 8
    scale_size: int = 256
    crop_size: int = 224
    fixed_ratio: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize_backend: str = "pillow"
    sampling: str = "uniform"
    dense_clips: int = 10
    dense_crops: int = 3
    dense_span: int = 64

    def validate(self) -> None:
        if self.num_seg < 1:
            raise MetadataError(f"preprocess.num_seg: must be >= 1, got {self.num_seg}")
        if not 1 <= self.crop_size <= self.scale_size:
            raise MetadataError(
                f"preprocess.crop_size: must be between 1 and scale_size ({self.scale_size}), "
                f"got {self.crop_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise MetadataError("preprocess.mean/std: need three values each, std > 0")
        if self.resize_backend not in ("pillow", "opencv"):
            raise MetadataError(
                f"preprocess.resize_backend: 'pillow' or 'opencv', got {self.resize_backend!r}")


@dataclass(frozen=True)
class InferenceSpec:
    """Where the inference program is and what it consumes and produces."""

    format: str  # "pdmodel" (legacy ProgramDesc) or "json" (PIR)
    model_file: str  # relative to the model directory
    params_file: str
    input_name: str
    input_shape: tuple[int, ...]  # [-1, T, 3, S, S]
    output_name: str
    output_shape: tuple[int, ...]  # [-1, num_classes]
    output_kind: str = "logits"
    format_reason: str = ""


@dataclass(frozen=True)
class ModelMeta:
    """Everything serving must agree on with training, written once by the exporter."""

    name: str
    version: str
    architecture: str
    labels: tuple[str, ...]
    preprocess: PreprocessSpec
    inference: InferenceSpec
    source: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    exported_at: str = ""
    package_versions: dict[str, str] = field(default_factory=dict)
    # Lower precisions checked against fp32 on validation clips, by "<engine>/<precision>"
    # ("openvino/int8", "paddle/bf16"): what `precision: auto` may serve (serving.core.engines).
    agreement: dict[str, dict[str, Any]] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def top1_agreement(self, engine: str, precision: str) -> float | None:
        """The recorded share of clips on which `engine` at `precision` gives fp32's top-1, or
        None where none is recorded."""
        record = self.agreement.get(f"{engine}/{precision}")
        return None if record is None else float(record["top1_agreement"])

    def validate(self) -> None:
        self.preprocess.validate()
        if not self.labels:
            raise MetadataError("labels: the model has no class names")
        out_classes = self.inference.output_shape[-1]
        if out_classes != self.num_classes:
            raise MetadataError(
                f"labels: {self.num_classes} names but the network outputs {out_classes} classes")
        if self.inference.input_shape[1] != self.preprocess.num_seg:
            raise MetadataError(
                f"inference.input_shape: T={self.inference.input_shape[1]} but "
                f"preprocess.num_seg={self.preprocess.num_seg}")
        if self.inference.format not in ("pdmodel", "json"):
            raise MetadataError(f"inference.format: 'pdmodel' or 'json', got {self.inference.format!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ModelMeta":
        try:
            version = raw.get("schema_version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise MetadataError(f"schema_version: expected {SCHEMA_VERSION}, got {version}")
            pre = dict(raw["preprocess"])
            pre["mean"] = tuple(pre["mean"])
            pre["std"] = tuple(pre["std"])
            inf = dict(raw["inference"])
            inf["input_shape"] = tuple(inf["input_shape"])
            inf["output_shape"] = tuple(inf["output_shape"])
            fields = {k: raw[k] for k in raw if k not in ("preprocess", "inference", "labels")}
            meta = cls(labels=tuple(raw["labels"]), preprocess=PreprocessSpec(**pre),
                       inference=InferenceSpec(**inf), **fields)
        except KeyError as exc:
            raise MetadataError(f"{META_FILENAME}: missing field {exc.args[0]!r}") from None
        except TypeError as exc:
            raise MetadataError(f"{META_FILENAME}: {exc}") from None
        meta.validate()
        return meta

    def save(self, model_dir: str | Path) -> Path:
        self.validate()
        path = Path(model_dir) / META_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def load_meta(model_dir: str | Path) -> ModelMeta:
    """Reads and validates `model_dir/model_meta.json`, with errors that name the file."""
    path = Path(model_dir) / META_FILENAME
    if not path.is_file():
        raise MetadataError(f"{path}: no such metadata file (export the model with `make export`)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{path}: not valid JSON ({exc})") from None
    return ModelMeta.from_dict(raw)
