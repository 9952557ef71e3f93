"""Turns a recipe's sections into objects: the model, through the registry.

`model.temporal_shift: false` (default true) builds the same network with every temporal shift
replaced by the identity: a per-frame 2D CNN whose clip score is an order-blind average, the
control for measuring what the shift contributes (bench/tsm_ablation.py). The preprocessing
the exporter records is the recipe's own `preprocess` section (`recipe.preprocess`).
"""
from __future__ import annotations

from typing import Optional

import paddle.nn as nn

from train.config import Recipe
from train.models import build_model
from train.models.layers import TemporalShift


def build_model_from_config(recipe: Recipe, num_classes: Optional[int] = None) -> nn.Layer:
    """The recipe's `model` (with `num_classes` outputs when given)."""
    options = dict(recipe.model.options)
    if num_classes is not None:
        options["num_classes"] = num_classes
    model = build_model(recipe.model.name, **options)
    if not recipe.model.temporal_shift:
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
