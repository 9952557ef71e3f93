"""Evaluation: top-1 / top-5, per-class accuracy and the confusion matrix.

Scores are computed on logits averaged over views the way the service averages them, so the
numbers here are the numbers the service will show.
"""
from __future__ import annotations

import math
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
        per_class = [None if math.isnan(value) else value for value in self.per_class]  # JSON
        return {"top1": self.top1, "top5": self.top5, "num_samples": self.num_samples,
                "per_class_top1": dict(zip(names, per_class)),
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


def clip_logits(model: paddle.nn.Layer, clips: paddle.Tensor, num_seg: int) -> paddle.Tensor:
    """Logits [N, C] of a batch [N, V * T, 3, S, S] holding V views of T frames per clip (V = 1
    uniform, V = 30 dense): each view goes through the network on its own and the views' logits
    are averaged, exactly as the service combines a dense request's views."""
    batch, rows = clips.shape[0], clips.shape[1]
    if rows % num_seg:
        raise ValueError(f"a clip of {rows} frames is not a whole number of {num_seg}-frame views")
    views = rows // num_seg
    logits = model(clips.reshape([batch * views, num_seg, *clips.shape[2:]]))
    return logits.reshape([batch, views, logits.shape[-1]]).mean(axis=1)


@paddle.no_grad()
def predict_logits(model: paddle.nn.Layer, loader, num_seg: int, desc: str = "eval",
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(logits [N, C], labels [N]) of every clip of `loader`, in loader order, in eval mode."""
    was_training = model.training
    model.eval()
    all_logits, all_labels = [], []
    for clips, labels in tqdm(loader, desc=desc, leave=False, disable=not progress):
        # float32 also for a model cast to float16 / bfloat16 by AMP O2 (see engine.amp).
        all_logits.append(clip_logits(model, clips, num_seg).astype("float32").numpy())
        all_labels.append(np.asarray(labels).reshape(-1))
    if was_training:
        model.train()
    return np.concatenate(all_logits), np.concatenate(all_labels)
