"""Turns a recipe's sections into objects: the model (via the registry) and the
preprocessing spec (the one that is recorded in the exported metadata)."""
from __future__ import annotations

from typing import Any, Optional

import paddle.nn as nn

from serving.metadata import PreprocessSpec
from train.config import section
from train.models import build_model


def build_model_from_config(cfg: dict[str, Any], num_classes: Optional[int] = None) -> nn.Layer:
    model_cfg = dict(section(cfg, "model"))
    name = model_cfg.pop("name")
    if num_classes is not None:
        model_cfg["num_classes"] = num_classes
    return build_model(name, **model_cfg)


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
