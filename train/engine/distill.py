"""Distillation: a student trained beside a teacher, packed as one "models pair" for the trainer.

Two modes, chosen by the recipe's `distillation.mode`:

* `kd`: knowledge distillation from a trained, larger teacher that stays frozen (eval mode, no
  gradients, weights from `teacher.checkpoint`); the student learns from the hard labels and
  from the teacher's temperature-softened predictions (`kd_kl`).
* `dml`: deep mutual learning as PaddleVideo's DML recipes run it (RecognizerDistillation with
  DistillationCELoss x2 + DistillationDMLLoss): student and teacher train together from their
  initial weights, each on the labels and on the other's soft labels (`dml_kl`).

Recipe section (the loss list mirrors PaddleVideo's `model_name_pairs`):

    distillation:
      mode: dml                       # or kd
      teacher: {name: pptsm_resnet50, num_seg: 8, pretrained: ..., checkpoint: ...}
      losses:
        - {name: cross_entropy, pair: [student, ground_truth], weight: 1.0}
        - {name: kd_kl, pair: [student, teacher], weight: 1.0, temperature: 4.0}

Only the student is evaluated, kept as `best.pdparams` and exported; the pair's state (both
networks) is what `latest.pdparams` holds for resuming.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn

from train.config import STUDENT, TEACHER, DistillationConfig, LossTerm, TeacherConfig
from train.engine.init_weights import initialise_weights
from train.engine.layer_modes import keep_in_eval_mode
from train.engine.losses import MixedTargets, dml_kl_loss, kd_kl_loss, mixed_cross_entropy
from train.models import build_model


class DistillationPair(nn.Layer):
    """Student and teacher as one layer: `forward` runs both on the same (possibly mixed) clips
    and returns {'student': logits, 'teacher': logits}. A frozen teacher stays in eval mode
    and outside autograd, so KD costs one teacher forward per step and nothing more."""

    def __init__(self, student: nn.Layer, teacher: nn.Layer, freeze_teacher: bool) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.freeze_teacher = freeze_teacher
        if freeze_teacher:
            for parameter in teacher.parameters():
                parameter.stop_gradient = True
        self.train()

    def train(self, mode: bool = True) -> "DistillationPair":
        super().train(mode)
        if self.freeze_teacher:
            keep_in_eval_mode([self.teacher, *self.teacher.sublayers()])
        return self

    def forward(self, clips: paddle.Tensor) -> dict[str, paddle.Tensor]:
        student_logits = self.student(clips)
        if self.freeze_teacher:
            with paddle.no_grad():
                teacher_logits = self.teacher(clips)
        else:
            teacher_logits = self.teacher(clips)
        return {STUDENT: student_logits, TEACHER: teacher_logits}


class DistillationCriterion:
    """The weighted sum of the loss terms; also returns each term's value for the logs."""

    def __init__(self, terms: list[LossTerm], smoothing: float = 0.0) -> None:
        self.terms = terms
        self.smoothing = smoothing

    def _term(self, term: LossTerm, outputs: dict[str, paddle.Tensor],
              targets: MixedTargets) -> paddle.Tensor:
        first = outputs[term.pair[0]]
        if term.name == "cross_entropy":
            return mixed_cross_entropy(first, targets, self.smoothing)
        second = outputs[term.pair[1]]
        if term.name == "kd_kl":
            return kd_kl_loss(first, second, term.temperature)
        return dml_kl_loss(first, second)

    def __call__(self, outputs: dict[str, paddle.Tensor], targets: MixedTargets
                 ) -> tuple[paddle.Tensor, dict[str, float]]:
        total, parts = None, {}
        for term in self.terms:
            value = self._term(term, outputs, targets)
            parts[term.label] = float(value)
            weighted = term.weight * value
            total = weighted if total is None else total + weighted
        return total, parts


def build_teacher(teacher_cfg: TeacherConfig, num_classes: int) -> nn.Layer:
    """The teacher network of the recipe, with its initial or trained weights loaded."""
    teacher = build_model(teacher_cfg.name, **{**teacher_cfg.options, "num_classes": num_classes})
    initialise_weights(teacher, pretrained=teacher_cfg.pretrained,
                       checkpoint=teacher_cfg.checkpoint, what="teacher")
    return teacher


def build_distillation(dist_cfg: DistillationConfig, student: nn.Layer, num_classes: int,
                       smoothing: float) -> tuple[DistillationPair, DistillationCriterion]:
    """The models pair and its criterion from the recipe's `distillation` section (its losses
    and their pairing with the mode checked when the recipe was read)."""
    teacher = build_teacher(dist_cfg.teacher, num_classes)
    return (DistillationPair(student, teacher, freeze_teacher=dist_cfg.mode == "kd"),
            DistillationCriterion(list(dist_cfg.losses), smoothing))
