"""Backbone initialisation from ImageNet-pretrained PaddleClas checkpoints (a recipe's
`pretrained:` file, e.g. `ResNet50_vd_ssld_v2_pretrained.pdparams`).

PaddleVideo copies PaddleClas' layer names into its TSM backbones and loads such a file by plain
name (optionally `backbone.`-prefixed), silently skipping whatever does not fit. We place tensors
by name too, but say what happened: every checkpoint key we could not place, every backbone
tensor left at its initial value, and a refusal (naming the parameter) on any shape mismatch.

PaddleClas has used two namings for these backbones; both are recognised:

* the names of the backbone itself (PaddleClas 2.0-era `ResNet_vd`: `conv1_1._conv.weight`,
  `bb_<stage>_<block>.conv0._batch_norm._mean`, ...; MobileNetV2: `conv2._first_block...`;
  MobileNetV3-large: `blocks.<i>.mid_se.conv1.weight`, ...; PP-LCNetV2: `stem.*`, `stages.*`).
  The files PaddleVideo's recipes download use these, because PaddleVideo loads them unchanged;
* PaddleClas' later "legendary" naming of the same networks: ResNet-vd as `stem.<i>.{conv,bn}`
  and a flat `blocks.<i>` list with `{conv,bn}` sub-layers, PP-LCNetV2 as `stage1..stage4`.

The ImageNet classifier (`fc.*` / `out.*`, 1000 classes) is never loaded: the video classifier
has another class count and is trained from scratch. Assumption (no PaddleClas file could be
downloaded here): the key lists are derived from the PaddleClas and PaddleVideo layer
definitions, not read from released files.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

import numpy as np
import paddle.nn as nn

from train.models.checkpoint import (
    PARAM_NAME_TABLE_KEY,
    CheckpointError,
    StateLike,
    _as_array,
    _numpy_dtype,
    load_pdparams,
)
from train.models.layers import refresh_fused_layers_, unfused_parameter_names

BACKBONE_PREFIX = "backbone."
IMAGENET_CLASSIFIER_LAYERS = ("fc", "out")  # PaddleClas' classifier names; never transferred

_LEGENDARY_STEM = re.compile(r"^stem\.(\d+)\.(conv|bn)\.(.+)$")
_LEGENDARY_BLOCK = re.compile(r"^blocks\.(\d+)\.(conv\d|short)\.(conv|bn)\.(.+)$")
_LEGENDARY_LCNET_STAGE = re.compile(r"^stage(\d)\.(.+)$")
_RESNET_BLOCK_NAME = re.compile(r"^bb_(\d+)_(\d+)$")
_LEGENDARY_SUBLAYER = {"conv": "_conv", "bn": "_batch_norm"}


class PretrainedError(CheckpointError):
    """The pretrained file does not fit the backbone; the message names the parameter."""


@dataclass
class PretrainedReport:
    """What `load_pretrained_backbone` did; keys are model-side names unless said otherwise."""

    source: str
    loaded: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)  # checkpoint keys with no place in the model
    classifier_skipped: list[str] = field(default_factory=list)  # checkpoint keys
    not_initialised: list[str] = field(default_factory=list)  # backbone keys left at init

    def describe(self) -> str:
        """One line for the training log."""
        parts = [f"{self.source}: loaded {len(self.loaded)} backbone tensors",
                 f"skipped the ImageNet classifier ({len(self.classifier_skipped)} tensors)"]
        if self.unplaced:
            parts.append(f"could not place {len(self.unplaced)}: {', '.join(self.unplaced[:10])}")
        if self.not_initialised:
            parts.append(f"{len(self.not_initialised)} backbone tensors keep their initial "
                         f"values: {', '.join(self.not_initialised[:10])}")
        return "; ".join(parts)


KeyRule = Callable[[str], Optional[str]]


def _resnet_block_names(targets: Mapping[str, object]) -> list[str]:
    """`bb_<stage>_<block>` names of the model in network order (legendary `blocks.<i>` -> i-th)."""
    positions = {}
    for key in targets:
        match = _RESNET_BLOCK_NAME.match(key.split(".", 1)[0])
        if match:
            positions[match.group(0)] = (int(match.group(1)), int(match.group(2)))
    return sorted(positions, key=positions.__getitem__)


def _legendary_resnet_rule(block_names: list[str]) -> KeyRule:
    """`stem.<i>.conv.weight` -> `conv1_<i+1>._conv.weight`;
    `blocks.<i>.conv0.bn._mean` -> `bb_<s>_<b>.conv0._batch_norm._mean`."""
    def rename(key: str) -> Optional[str]:
        stem = _LEGENDARY_STEM.match(key)
        if stem:
            index, kind, rest = stem.groups()
            return f"conv1_{int(index) + 1}.{_LEGENDARY_SUBLAYER[kind]}.{rest}"
        block = _LEGENDARY_BLOCK.match(key)
        if block:
            index, layer, kind, rest = block.groups()
            if int(index) >= len(block_names):
                return None
            return f"{block_names[int(index)]}.{layer}.{_LEGENDARY_SUBLAYER[kind]}.{rest}"
        return None
    return rename


def _legendary_lcnet_rule(key: str) -> Optional[str]:
    """`stage3.1.se.conv1.weight` -> `stages.2.1.se.conv1.weight`."""
    match = _LEGENDARY_LCNET_STAGE.match(key)
    if not match:
        return None
    stage, rest = match.groups()
    return f"stages.{int(stage) - 1}.{rest}"


def _candidate_rules(targets: Mapping[str, object]) -> list[KeyRule]:
    """Renaming rules, tried in order; the first name that exists in the backbone wins."""
    return [lambda key: key, _legendary_resnet_rule(_resnet_block_names(targets)),
            _legendary_lcnet_rule]


def _is_classifier(key: str) -> bool:
    return key.split(".", 1)[0] in IMAGENET_CLASSIFIER_LAYERS


def _backbone_of(model: nn.Layer) -> tuple[nn.Layer, str]:
    """(backbone layer, its state-dict prefix in `model`): a recognizer's `backbone`, or the
    model itself when it is a bare backbone."""
    backbone = getattr(model, "backbone", None)
    return (backbone, BACKBONE_PREFIX) if isinstance(backbone, nn.Layer) else (model, "")


def load_pretrained_backbone(model: nn.Layer, pretrained: Union[StateLike, str, Path]
                             ) -> PretrainedReport:
    """Copies an ImageNet checkpoint's backbone tensors into `model.backbone` by name.

    `pretrained` is a `.pdparams` path or a dict of arrays. Raises `PretrainedError` if a tensor
    would change shape (before touching the model) or if nothing at all could be placed (the
    file is not a checkpoint of this backbone); otherwise returns what was loaded and skipped.
    """
    source = str(pretrained) if isinstance(pretrained, (str, Path)) else "pretrained state"
    state = load_pdparams(pretrained) if isinstance(pretrained, (str, Path)) else pretrained
    backbone, prefix = _backbone_of(model)
    targets = backbone.state_dict()
    placeholders = unfused_parameter_names(backbone)  # recomputed by fusion, never needed
    rules = _candidate_rules(targets)
    report = PretrainedReport(source=source)

    placed: dict[str, np.ndarray] = {}
    for raw_key, value in state.items():
        if raw_key == PARAM_NAME_TABLE_KEY:
            continue
        key = raw_key[len(BACKBONE_PREFIX):] if raw_key.startswith(BACKBONE_PREFIX) else raw_key
        if _is_classifier(key):
            report.classifier_skipped.append(raw_key)
            continue
        target = next((name for name in (rule(key) for rule in rules)
                       if name is not None and name in targets), None)
        if target is None:
            report.unplaced.append(raw_key)
            continue
        array = _as_array(value)
        want = list(targets[target].shape)
        if list(array.shape) != want:
            raise PretrainedError(f"{source}: {raw_key} has shape {list(array.shape)} but the "
                                  f"backbone's {target} has shape {want}; wrong backbone or width?")
        placed[target] = array
    if not placed:
        raise PretrainedError(
            f"{source}: none of its {len(state)} tensors matches a backbone parameter by name "
            f"(first keys: {', '.join(list(state)[:5])}); not a checkpoint of this backbone")

    for target, array in placed.items():
        tensor = targets[target]
        tensor.set_value(array.astype(_numpy_dtype(tensor), copy=False))
    report.loaded = [prefix + name for name in targets if name in placed]
    report.not_initialised = [prefix + name for name in targets
                              if name not in placed and name not in placeholders]
    refresh_fused_layers_(model)
    return report
