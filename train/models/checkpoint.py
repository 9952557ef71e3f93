"""Loading PaddleVideo `.pdparams` checkpoints into our models by state-dict name.

A `.pdparams` file is a pickle of {key: float32 ndarray} plus one bookkeeping entry
(`StructuredToParameterName@@`). PaddleVideo writes three key layouts, detected from the keys:

* `plain`: `backbone.*` / `head.*` (Recognizer2D, what our models use);
* `dml_student`: the student-only file of a DML distillation run, `0.*` (backbone) / `1.*` (head),
  because the student is `nn.Sequential(backbone, head)`;
* `dml_full`: the whole distillation model, `Student.0.*` / `Student.1.*` next to `Teacher.*`;
  the teacher is ignored.

Re-parameterisable layers (PP-TSMv2's multi-branch depthwise convs) get special treatment: their
fused conv (`dw_conv.*`) is never used by training, so a checkpoint either stores initial values
there or (if written by other tools) leaves it out. We therefore never count it as missing, load it
if present only to keep the state_dict complete, and recompute it from the branches for any layer
that is already fused. Fine-tuning to other classes (`load_for_finetuning`) loads by name and
shape instead, leaving the classifier at its initial values. A model must be fused (`fuse_reparam_`) after loading before its `dw_conv`
means anything, which is what evaluation and export do anyway.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np
import paddle
import paddle.nn as nn

from train.models.layers import refresh_fused_layers_, unfused_parameter_names

PARAM_NAME_TABLE_KEY = "StructuredToParameterName@@"  # paddle.save bookkeeping, not a tensor

# The only globals a checkpoint pickle may reference: numpy arrays (numpy 1 and 2 module names),
# the bytes codec of protocol-2 pickles and OrderedDict. Anything else would run foreign code.
_ALLOWED_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
})

# layout name -> (source prefix -> model prefix); keys matching no prefix keep their name.
LAYOUT_PREFIXES: dict[str, dict[str, str]] = {
    "plain": {},
    "dml_student": {"0.": "backbone.", "1.": "head."},
    "dml_full": {"Student.0.": "backbone.", "Student.1.": "head."},
}
# Layouts whose files also hold another model's tensors (the DML teacher): unmatched keys are
# ignored there instead of being reported as unexpected.
_LAYOUTS_WITH_FOREIGN_KEYS = frozenset({"dml_full"})

StateLike = Mapping[str, Union[np.ndarray, paddle.Tensor]]


class CheckpointError(ValueError):
    """The checkpoint cannot be read or does not fit the model; the message names the keys."""


@dataclass
class LoadReport:
    """What `load_state_dict_by_name` did, key by key (model-side names)."""

    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # another model's keys (DML Teacher.*)
    placeholders_absent: list[str] = field(default_factory=list)  # fused-only params not stored

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unexpected


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_PICKLE_GLOBALS:
            raise CheckpointError(
                f"refusing to unpickle {module}.{name}: a .pdparams file holds only arrays")
        return super().find_class(module, name)


def load_pdparams(path: Union[str, Path]) -> dict[str, np.ndarray]:
    """Reads a `.pdparams` file (PaddleVideo release or `paddle.save(state_dict)`) as numpy arrays.

    Unpickles with an allow-list, so a tampered file cannot execute code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        raw = _ArrayOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a .pdparams pickle ({exc})") from None
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict of arrays, got {type(raw).__name__}")
    state: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        if key == PARAM_NAME_TABLE_KEY:
            continue
        if not isinstance(value, np.ndarray):
            raise CheckpointError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not an array "
                "(optimizer state or another non-weight file?)")
        state[key] = value
    return state


def detect_layout(keys: list[str]) -> str:
    """Names the PaddleVideo key layout of a checkpoint (see the module docstring)."""
    if any(key.startswith("Student.") for key in keys):
        return "dml_full"
    if keys and all(key.startswith(("0.", "1.")) for key in keys):
        return "dml_student"
    return "plain"


def _rename(key: str, prefixes: Mapping[str, str]) -> Optional[str]:
    for source, target in prefixes.items():
        if key.startswith(source):
            return target + key[len(source):]
    return None


def _as_array(value: Union[np.ndarray, paddle.Tensor]) -> np.ndarray:
    return value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)


def load_state_dict_by_name(model: nn.Layer, state: Union[StateLike, str, Path], *,
                            strict: bool = True,
                            key_map: Optional[Mapping[str, str]] = None) -> LoadReport:
    """Copies checkpoint tensors into `model` by (layout-normalised) key name.

    `state` is a dict of arrays/tensors or a `.pdparams` path. `key_map` (source prefix -> model
    prefix) replaces the automatic layout detection; keys it does not match keep their name.
    Shape mismatches always raise; with `strict`, missing or unexpected keys raise
    `CheckpointError` listing them, otherwise they are only reported. Placeholder tensors of
    unfused re-parameterisable layers are never required.
    """
    layout, renamed, ignored = _model_side_state(state, key_map)
    report = LoadReport(layout=layout, ignored=ignored)
    targets = model.state_dict()
    placeholders = unfused_parameter_names(model)
    report.unexpected = [key for key in renamed if key not in targets]
    for key in targets:
        if key not in renamed:
            (report.placeholders_absent if key in placeholders else report.missing).append(key)
    if strict and not report.complete:
        raise CheckpointError(_describe_mismatch(layout, report))

    to_load = [key for key in targets if key in renamed]
    for key in to_load:  # all shapes first, so a bad checkpoint leaves the model untouched
        have, want = list(renamed[key].shape), list(targets[key].shape)
        if have != want:
            raise CheckpointError(f"{key}: checkpoint shape {have} != model shape {want}")
    for key in to_load:
        tensor = targets[key]
        tensor.set_value(renamed[key].astype(_numpy_dtype(tensor), copy=False))
        report.loaded.append(key)
    refresh_fused_layers_(model)
    return report


def _model_side_state(state: Union[StateLike, str, Path],
                      key_map: Optional[Mapping[str, str]] = None
                      ) -> tuple[str, dict[str, np.ndarray], list[str]]:
    """(layout, {model-side key: array}, keys of another model that were ignored) of a
    checkpoint (dict or `.pdparams` path); `key_map` replaces the layout detection."""
    if isinstance(state, (str, Path)):
        state = load_pdparams(state)
    source_keys = [key for key in state if key != PARAM_NAME_TABLE_KEY]
    layout = "custom" if key_map is not None else detect_layout(source_keys)
    prefixes = key_map if key_map is not None else LAYOUT_PREFIXES[layout]
    renamed: dict[str, np.ndarray] = {}
    ignored: list[str] = []
    for key in source_keys:
        target = _rename(key, prefixes)
        if target is None and layout in _LAYOUTS_WITH_FOREIGN_KEYS:
            ignored.append(key)
        else:
            renamed[target or key] = _as_array(state[key])
    return layout, renamed, ignored


# The classifier of each family (the layer official checkpoints call `fc`, MobileNetV2's `out`):
# what fine-tuning to other classes re-initialises whatever its shape.
CLASSIFIER_LAYERS = ("backbone.fc", "head.fc", "backbone.out")


def classifier_keys(model: nn.Layer) -> list[str]:
    """State-dict keys of the model's classifier (weight and bias)."""
    return [key for key in model.state_dict()
            if key.rsplit(".", 1)[0] in CLASSIFIER_LAYERS]


@dataclass
class FinetuneReport:
    """What `load_for_finetuning` did: model keys loaded and re-initialised, checkpoint keys
    (model-side names) skipped with the reason."""

    source: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """A few lines for the training log."""
        def listing(keys: list[str], limit: int = 8) -> str:
            more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
            return ", ".join(keys[:limit]) + more

        lines = [f"fine-tuning from {self.source} (layout {self.layout}): loaded "
                 f"{len(self.loaded)} tensors, re-initialised {len(self.reinitialised)}"
                 f" ({listing(self.reinitialised)}), skipped {len(self.skipped)} of the "
                 "checkpoint's"]
        lines += [f"  skipped {key}: {why}" for key, why in list(self.skipped.items())[:8]]
        if len(self.skipped) > 8:
            lines.append(f"  ... and {len(self.skipped) - 8} more skipped")
        return "\n".join(lines)


def load_for_finetuning(model: nn.Layer, checkpoint: Union[str, Path]) -> FinetuneReport:
    """Starts `model` from a checkpoint trained on other classes (any layout
    `load_state_dict_by_name` reads): every tensor whose name and shape match is loaded, the
    classifier is left at its initial values whatever its shape (its classes mean something
    else), and what was skipped is reported. CheckpointError when no tensor fits (another
    network or width than the recipe's)."""
    layout, renamed, ignored = _model_side_state(checkpoint)
    report = FinetuneReport(source=str(checkpoint), layout=layout)
    report.skipped.update({key: "another model's tensor (DML teacher)" for key in ignored})
    targets = model.state_dict()
    classifier = set(classifier_keys(model))
    placeholders = unfused_parameter_names(model)
    for key, array in renamed.items():
        if key not in targets:
            report.skipped[key] = "no such tensor in the model"
        elif key in classifier:
            report.skipped[key] = "classifier (re-initialised for the new classes)"
        elif list(array.shape) != list(targets[key].shape):
            report.skipped[key] = (f"checkpoint shape {list(array.shape)} != model shape "
                                   f"{list(targets[key].shape)}")
    to_load = [key for key in targets if key in renamed and key not in report.skipped]
    if not [key for key in to_load if key not in placeholders]:
        raise CheckpointError(f"{checkpoint}: none of its tensors fits the model by name and "
                              "shape; was it trained with another network or width than the "
                              "recipe's?")
    for key in to_load:
        tensor = targets[key]
        tensor.set_value(renamed[key].astype(_numpy_dtype(tensor), copy=False))
    report.loaded = to_load
    report.reinitialised = [key for key in targets if key not in placeholders
                            and (key not in renamed or key in report.skipped)]
    refresh_fused_layers_(model)
    return report


def _numpy_dtype(tensor: paddle.Tensor) -> np.dtype:
    return np.dtype(str(tensor.dtype).replace("paddle.", ""))


def _describe_mismatch(layout: str, report: LoadReport, limit: int = 20) -> str:
    def listing(keys: list[str]) -> str:
        shown = ", ".join(keys[:limit])
        return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")

    parts = [f"checkpoint (layout {layout!r}) does not match the model"]
    if report.missing:
        parts.append(f"{len(report.missing)} missing: {listing(report.missing)}")
    if report.unexpected:
        parts.append(f"{len(report.unexpected)} unexpected: {listing(report.unexpected)}")
    return "; ".join(parts)
