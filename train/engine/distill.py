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

from dataclasses import dataclass
from typing import Any

import paddle
import paddle.nn as nn

from train.config import ConfigError
from train.engine.init_weights import initialise_weights
from train.engine.layer_modes import keep_in_eval_mode
from train.engine.losses import MixedTargets, dml_kl_loss, kd_kl_loss, mixed_cross_entropy
from train.models import build_model

MODES = ("kd", "dml")
STUDENT, TEACHER, GROUND_TRUTH = "student", "teacher", "ground_truth"
LOSS_NAMES = ("cross_entropy", "kd_kl", "dml_kl")
# Teacher keys that are not builder arguments.
_WEIGHT_KEYS = ("pretrained", "checkpoint")


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


def parse_loss_terms(raw: Any, mode: str) -> list[LossTerm]:
    """Validates `distillation.losses`; the messages name the offending entry."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError("distillation.losses: a non-empty list of {name, pair, weight}")
    terms = []
    for index, entry in enumerate(raw):
        where = f"distillation.losses[{index}]"
        if not isinstance(entry, dict) or entry.get("name") not in LOSS_NAMES:
            raise ConfigError(f"{where}: name must be one of {LOSS_NAMES}, got {entry!r}")
        pair = tuple(entry.get("pair", ()))
        name = entry["name"]
        if name == "cross_entropy":
            if len(pair) != 2 or pair[0] not in (STUDENT, TEACHER) or pair[1] != GROUND_TRUTH:
                raise ConfigError(f"{where}: cross_entropy pairs [student|teacher, ground_truth]")
            if mode == "kd" and pair[0] == TEACHER:
                raise ConfigError(f"{where}: a kd teacher is frozen; it has no loss of its own")
        elif sorted(pair) != [STUDENT, TEACHER]:
            raise ConfigError(f"{where}: {name} pairs [student, teacher], got {list(pair)}")
        if name == "dml_kl" and mode != "dml":
            raise ConfigError(f"{where}: dml_kl needs mode dml (a frozen teacher cannot learn)")
        terms.append(LossTerm(name, pair, float(entry.get("weight", 1.0)),
                              float(entry.get("temperature", 1.0))))
    return terms


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


def build_teacher(teacher_cfg: dict[str, Any], num_classes: int, mode: str) -> nn.Layer:
    """The teacher network of the recipe, with its initial or trained weights loaded."""
    if not isinstance(teacher_cfg, dict) or "name" not in teacher_cfg:
        raise ConfigError("distillation.teacher: a mapping with the model 'name' and its options")
    kwargs = {k: v for k, v in teacher_cfg.items() if k not in ("name", *_WEIGHT_KEYS)}
    teacher = build_model(teacher_cfg["name"], num_classes=num_classes, **kwargs)
    if mode == "kd" and not teacher_cfg.get("checkpoint"):
        raise ConfigError("distillation.teacher.checkpoint: kd distils a trained teacher; "
                          "set the .pdparams to distil from")
    initialise_weights(teacher, pretrained=teacher_cfg.get("pretrained"),
                       checkpoint=teacher_cfg.get("checkpoint"), what="teacher")
    return teacher


def build_distillation(dist_cfg: dict[str, Any], student: nn.Layer, num_classes: int,
                       smoothing: float) -> tuple[DistillationPair, DistillationCriterion]:
    """The models pair and its criterion from the recipe's `distillation` section."""
    mode = dist_cfg.get("mode")
    if mode not in MODES:
        raise ConfigError(f"distillation.mode: one of {MODES}, got {mode!r}")
    terms = parse_loss_terms(dist_cfg.get("losses"), mode)
    teacher = build_teacher(dist_cfg.get("teacher"), num_classes, mode)
    return (DistillationPair(student, teacher, freeze_teacher=mode == "kd"),
            DistillationCriterion(terms, smoothing))
