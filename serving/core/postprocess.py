"""From network output to class scores: pure numpy, no Paddle, no Serving.

The exported network returns raw logits (PaddleVideo applies softmax outside the graph). For a
dense request the network sees several views of one video; PaddleVideo's head averages the
views' features before its single linear layer, which equals averaging the views' logits, so
views are combined on logits, before the softmax, not on probabilities.
"""
from __future__ import annotations

import numpy as np


# Classes an answer lists when the request does not say (or all of them, when fewer).
DEFAULT_TOPK = 5


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the maximum so large logits cannot overflow."""
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def video_probabilities(view_logits: np.ndarray) -> np.ndarray:
    """Class probabilities [C] of one video from the logits of its views [V, C] (V >= 1)."""
    if view_logits.ndim != 2 or view_logits.shape[0] == 0:
        raise ValueError(f"expected logits [views, classes], got shape {list(view_logits.shape)}")
    return softmax(view_logits.astype(np.float64).mean(axis=0))


def top_k(probabilities: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k best (class_id, probability) pairs, best first; ties go to the lower class id so
    that the answer is deterministic."""
    if probabilities.ndim != 1:
        raise ValueError(f"expected probabilities [classes], got shape {list(probabilities.shape)}")
    if not 1 <= k <= probabilities.shape[0]:
        raise ValueError(f"k must be between 1 and {probabilities.shape[0]}, got {k}")
    order = np.lexsort((np.arange(probabilities.shape[0]), -probabilities))[:k]
    return [(int(i), float(probabilities[i])) for i in order]
