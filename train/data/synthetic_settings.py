"""Settings of the synthetic dataset generator: typed, validated, loaded from YAML.

The YAML file (`train/configs/data/synthetic_default.yaml`) is the single place where the default
sizes and ranges live; these dataclasses only give them types and reject nonsense early with a
message that names the offending key, instead of failing halfway through a generation run.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from train.data.synthetic_appearance import BACKGROUND_KINDS, SHAPE_NAMES
from train.data.synthetic_classes import KNOWN_CLASS_NAMES
from train.data.synthetic_video_file import CODECS, DECORD_UNREADABLE_WIDTHS

SPLITS: tuple[str, ...] = ("train", "val", "test")

# PaddleVideo's samplers need at least num_seg frames; 16 keeps every clip usable by the
# 16-frame PP-TSMv2 variants without frame repetition.
MIN_FRAMES_PER_CLIP = 16


class SettingsError(ValueError):
    """A generation setting is missing, unknown or out of range."""


@dataclass(frozen=True)
class ClipSettings:
    """Ranges that one clip's look and motion are drawn from (fractions refer to the frame)."""

    resolutions: tuple[tuple[int, int], ...]  # (width, height) pairs, one picked per clip
    fps_range: tuple[int, int]  # inclusive
    duration_range_s: tuple[float, float]
    object_diameter_range: tuple[float, float]  # at mid-clip, fraction of the short side
    travel_range: tuple[float, float]  # move_* displacement, fraction of the width / height
    centre_jitter: float  # largest offset of the motion centre from the frame centre, fraction
    rotation_range_deg: tuple[float, float]  # rotate_* total turn over the clip
    scale_ratio_range: tuple[float, float]  # grow/shrink: size at the end / size at the start
    shapes: tuple[str, ...]
    backgrounds: tuple[str, ...]
    distractor_count_range: tuple[int, int]  # inclusive
    distractor_diameter_range: tuple[float, float]  # fraction of the short side
    noise_sigma_range: tuple[float, float]  # per-frame sensor noise, grey levels

    def __post_init__(self) -> None:
        if not self.resolutions:
            raise SettingsError("clip.resolutions is empty")
        for width, height in self.resolutions:
            if width < 32 or height < 32 or width % 2 or height % 2:
                raise SettingsError(f"clip.resolutions: {width}x{height} must be even and at least 32x32")
            if width in DECORD_UNREADABLE_WIDTHS:
                raise SettingsError(f"clip.resolutions: {width}x{height}: decord cannot decode frames "
                                    f"{width} pixels wide; avoid widths {DECORD_UNREADABLE_WIDTHS}")
        for name in ("fps_range", "duration_range_s", "object_diameter_range", "travel_range",
                     "rotation_range_deg", "scale_ratio_range", "distractor_count_range",
                     "distractor_diameter_range", "noise_sigma_range"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise SettingsError(f"clip.{name} must satisfy 0 <= low <= high, got [{low}, {high}]")
        if not 0 <= self.centre_jitter < 0.5:
            raise SettingsError(f"clip.centre_jitter must be in [0, 0.5), got {self.centre_jitter}")
        shortest = int(self.duration_range_s[0] * self.fps_range[0])
        if shortest < MIN_FRAMES_PER_CLIP:
            raise SettingsError(f"the shortest clip would have {shortest} frames "
                                f"(duration_range_s x fps_range); at least {MIN_FRAMES_PER_CLIP} are needed")
        if self.scale_ratio_range[0] < 1:
            raise SettingsError("clip.scale_ratio_range is end/start size of 'grow' and must be >= 1")
        _check_known("clip.shapes", self.shapes, SHAPE_NAMES)
        _check_known("clip.backgrounds", self.backgrounds, BACKGROUND_KINDS)


@dataclass(frozen=True)
class DatasetSettings:
    """Everything that determines a dataset's content (together with the seed)."""

    classes: tuple[str, ...]  # names from the catalogue (synthetic_classes), in label order
    clips_per_class: Mapping[str, int]  # split -> clips of each class
    codec_mix: Mapping[str, float]  # codec -> share of the clips (normalised)
    clip: ClipSettings

    def __post_init__(self) -> None:
        _check_known("classes", self.classes, KNOWN_CLASS_NAMES)
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise SettingsError(f"classes: at least two, each once, got {list(self.classes)}")
        if set(self.clips_per_class) != set(SPLITS):
            raise SettingsError(f"clips_per_class needs exactly the splits {SPLITS}, "
                                f"got {sorted(self.clips_per_class)}")
        if any(count < 1 for count in self.clips_per_class.values()):
            raise SettingsError("clips_per_class: every split needs at least one clip per class, "
                                f"got {dict(self.clips_per_class)}")
        _check_known("codec_mix", tuple(self.codec_mix), tuple(CODECS))
        if any(share < 0 for share in self.codec_mix.values()) or sum(self.codec_mix.values()) <= 0:
            raise SettingsError(f"codec_mix shares must be >= 0 with a positive sum, "
                                f"got {dict(self.codec_mix)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-friendly form, as recorded in dataset.json."""
        return _plain(dataclasses.asdict(self))


@dataclass(frozen=True)
class GeneratorConfig:
    """A generation run: the dataset's settings plus the seed and how many worker processes."""

    settings: DatasetSettings
    seed: int
    workers: int


def _check_known(key: str, names: tuple[str, ...], known: tuple[str, ...]) -> None:
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        problem = f"unknown {unknown}" if unknown else "empty"
        raise SettingsError(f"{key}: {problem}; known: {', '.join(known)}")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Converts parsed YAML into the annotated type (lists become tuples, dataclasses are built
    field by field) so that a wrong shape is reported with its key path."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise SettingsError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(item, arg, f"{where}[{i}]") for i, (item, arg) in enumerate(zip(value, args)))
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise SettingsError(f"{where}: expected a mapping, got {value!r}")
        return {str(key): _coerce(item, args[1], f"{where}.{key}") for key, item in value.items()}
    if hint is int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise SettingsError(f"{where}: expected an integer, got {value!r}")
    if hint is float and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise SettingsError(f"{where}: expected a number, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise SettingsError(f"{where}: expected a string, got {value!r}")
    return hint(value)


def _build(cls: type, mapping: Any, where: str) -> Any:
    if not isinstance(mapping, Mapping):
        raise SettingsError(f"{where or 'settings'}: expected a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    unknown, missing = set(mapping) - set(names), set(names) - set(mapping)
    if unknown or missing:
        raise SettingsError(f"{where or 'settings'}: unknown keys {sorted(unknown)}, "
                            f"missing keys {sorted(missing)}")
    prefix = f"{where}." if where else ""
    return cls(**{name: _coerce(mapping[name], hints[name], prefix + name) for name in names})


def settings_from_dict(mapping: Mapping[str, Any]) -> DatasetSettings:
    """Builds validated settings from a plain mapping (the inverse of `DatasetSettings.to_dict`)."""
    return _build(DatasetSettings, mapping, "")


def _merged(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def load_generator_config(path: str | Path, quick: bool = False) -> GeneratorConfig:
    """Reads a generator YAML file: `seed`, `workers`, the dataset settings, and a `quick` overlay
    (a partial copy of the settings) that is merged in when `quick` is true, for smoke runs."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SettingsError(f"cannot read generator config {path}: {error}") from error
    if not isinstance(document, Mapping):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    document = dict(document)
    try:
        seed, workers, quick_overlay = document.pop("seed"), document.pop("workers"), document.pop("quick")
    except KeyError as error:
        raise SettingsError(f"{path}: missing top-level key {error}") from None
    if quick:
        document = _merged(document, quick_overlay)
    try:
        return GeneratorConfig(settings=settings_from_dict(document), seed=_coerce(seed, int, "seed"),
                               workers=_coerce(workers, int, "workers"))
    except SettingsError as error:
        raise SettingsError(f"{path}: {error}") from None
