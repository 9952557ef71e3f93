"""Turns a recipe's sections into objects: the model (via the registry) and the
preprocessing spec (the one that is recorded in the exported metadata).

`model.temporal_shift: false` (default true) builds the same network with every temporal shift
replaced by the identity: a per-frame 2D CNN whose clip score is an order-blind average, the
control for measuring what the shift contributes (bench/tsm_ablation.py).
"""
from __future__ import annotations

from typing import Any, Optional

import paddle.nn as nn

from serving.core.metadata import PreprocessSpec
from train.config import section
from train.models import build_model
from train.models.layers import TemporalShift


def build_model_from_config(cfg: dict[str, Any], num_classes: Optional[int] = None) -> nn.Layer:
    model_cfg = dict(section(cfg, "model"))
    name = model_cfg.pop("name")
    shift = model_cfg.pop("temporal_shift", True)
    if num_classes is not None:
        model_cfg["num_classes"] = num_classes
    model = build_model(name, **model_cfg)
    if not shift:
        disable_temporal_shift(model)
    return model


def disable_temporal_shift(model: nn.Layer) -> int:
    """Replaces every TemporalShift sublayer by nn.Identity (no parameters change, so
    checkpoints still load); returns how many were replaced."""
    targets = [(parent, name) for _, parent in model.named_sublayers(include_self=True)
               for name, child in parent.named_children() if isinstance(child, TemporalShift)]
    for parent, name in targets:
        setattr(parent, name, nn.Identity())
    return len(targets)


def preprocess_spec_from_config(cfg: dict[str, Any]) -> PreprocessSpec:
    raw = dict(section(cfg, "preprocess"))
    for key in ("mean", "std"):
        if key in raw:
            raw[key] = tuple(float(v) for v in raw[key])
    spec = PreprocessSpec(**raw)
    spec.validate()
    model_seg = section(cfg, "model").get("num_seg")
    if model_seg is not None and model_seg != spec.num_seg:
        raise ValueError(f"preprocess.num_seg ({spec.num_seg}) must equal model.num_seg ({model_seg})")
    return spec
