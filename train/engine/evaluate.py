"""Evaluation: top-1 / top-5, per-class accuracy and the confusion matrix.

Scores are computed on logits averaged the way the exported network averages them, so the
numbers here are the numbers the service will show.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import paddle
from tqdm import tqdm


@dataclass
class EvalResult:
    top1: float
    top5: float
    per_class: list[float]
    confusion: np.ndarray  # [true, predicted] counts
    num_samples: int

    def to_dict(self, labels: list[str] | None = None) -> dict:
        names = labels or [str(i) for i in range(len(self.per_class))]
        return {"top1": self.top1, "top5": self.top5, "num_samples": self.num_samples,
                "per_class_top1": dict(zip(names, self.per_class)),
                "confusion": self.confusion.tolist()}


def scores_from_logits(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> EvalResult:
    order = np.argsort(-logits, axis=1)
    top1_hit = order[:, 0] == labels
    top5_hit = (order[:, : min(5, num_classes)] == labels[:, None]).any(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, order[:, 0]), 1)
    totals = confusion.sum(axis=1)
    per_class = [float(confusion[c, c] / totals[c]) if totals[c] else float("nan")
                 for c in range(num_classes)]
    return EvalResult(float(top1_hit.mean()), float(top5_hit.mean()), per_class, confusion,
                      int(len(labels)))


@paddle.no_grad()
def evaluate(model: paddle.nn.Layer, loader, num_classes: int, desc: str = "eval",
             progress: bool = True) -> EvalResult:
    was_training = model.training
    model.eval()
    all_logits, all_labels = [], []
    for clips, labels in tqdm(loader, desc=desc, leave=False, disable=not progress):
        all_logits.append(model(clips).numpy())
        all_labels.append(np.asarray(labels).reshape(-1))
    if was_training:
        model.train()
    return scores_from_logits(np.concatenate(all_logits), np.concatenate(all_labels), num_classes)
