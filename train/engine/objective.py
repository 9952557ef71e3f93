"""What the trainer optimises, built from the recipe: plain supervised training or a
distillation pair, behind one small interface so the loop does not care which.

* `network`: called on the clips each step; its state is `latest.pdparams` (for a pair: both
  networks) and it is what data-parallel training wraps;
* `student`: the model inside it that is evaluated, kept as `best.pdparams` and exported;
* `criterion(outputs, targets) -> (loss, {term: value})`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import paddle
import paddle.nn as nn

from train.config import Recipe
from train.engine.distill import build_distillation
from train.engine.init_weights import initialise_weights
from train.engine.losses import MixedTargets, mixed_cross_entropy
from train.engine.optim import zero_init_classifier
from train.recipe import build_model_from_config

Criterion = Callable[[Any, MixedTargets], tuple[paddle.Tensor, dict[str, float]]]


class SupervisedCriterion:
    """Cross entropy (label smoothing, mixup) on the one network's logits."""

    def __init__(self, smoothing: float = 0.0) -> None:
        self.smoothing = smoothing

    def __call__(self, logits: paddle.Tensor, targets: MixedTargets
                 ) -> tuple[paddle.Tensor, dict[str, float]]:
        return mixed_cross_entropy(logits, targets, self.smoothing), {}


@dataclass
class Objective:
    network: nn.Layer
    student: nn.Layer
    criterion: Criterion

    @property
    def distilled(self) -> bool:
        return self.network is not self.student

    def trainable_parameters(self) -> list[paddle.Tensor]:
        """What the optimiser updates (a frozen teacher's weights are not among them)."""
        return [p for p in self.network.parameters() if not p.stop_gradient]


def build_objective(cfg: Recipe, num_classes: int) -> Objective:
    train_cfg = cfg.train
    student = build_model_from_config(cfg, num_classes=num_classes)
    initialise_weights(student, pretrained=train_cfg.pretrained, what="model")
    if train_cfg.zero_init_classifier:
        zero_init_classifier(student)
    smoothing = train_cfg.label_smoothing
    if cfg.distillation is None:
        return Objective(student, student, SupervisedCriterion(smoothing))
    pair, criterion = build_distillation(cfg.distillation, student, num_classes, smoothing)
    return Objective(pair, student, criterion)
