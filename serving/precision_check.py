"""How far a lower-precision predictor (int8, bf16) strays from the fp32 one, on real clips.

A faster precision is only worth serving if it gives the same answers. Both predictors see the
same network inputs, built by the service's own preprocessing (serving.offline.network_input),
and the comparison reports what a user would notice (top-1 agreement, and accuracy where labels
are known) next to the raw output difference.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from serving.metadata import PreprocessSpec
from serving.offline import DecodeSettings, network_input
from serving.predictor import Predictor
from serving.stages import ranked_classes

Item = TypeVar("Item")


@dataclass(frozen=True)
class LabelledInput:
    """One clip's network input (uniform sampling) and its class id from the list file."""

    path: Path
    views: np.ndarray
    label: int


@dataclass(frozen=True)
class Agreement:
    clips: int
    top1_agreement: float  # fraction of clips whose best class is the same
    max_abs_diff: float  # largest difference of any output logit
    reference_accuracy: float  # top-1 accuracy against the list's labels
    candidate_accuracy: float

    def as_dict(self) -> dict[str, float | int]:
        return {"clips": self.clips, "top1_agreement": round(self.top1_agreement, 4),
                "max_abs_diff": float(f"{self.max_abs_diff:.3g}"),
                "reference_accuracy": round(self.reference_accuracy, 4),
                "candidate_accuracy": round(self.candidate_accuracy, 4)}


def spread_pick(items: Sequence[Item], count: int) -> list[Item]:
    """`count` items taken at even steps through `items` (all of them if count is larger):
    list files are usually grouped by class, so the first `count` lines would miss classes."""
    if count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def labelled_inputs(list_path: str | Path, spec: PreprocessSpec, *, count: int,
                    root: str | Path | None = None) -> Iterator[LabelledInput]:
    """Network inputs of `count` clips spread over a PaddleVideo list file."""
    from train.data.list_file import read_list_file  # the list format's one reader

    for sample in spread_pick(read_list_file(list_path, root), count):
        views = network_input(sample.path.read_bytes(), spec, "uniform", DecodeSettings())
        yield LabelledInput(sample.path, views, sample.label)


def compare(reference: Predictor, candidate: Predictor,
            inputs: Sequence[LabelledInput]) -> Agreement:
    """Runs both predictors on every input; `reference` is normally the fp32 predictor."""
    if not inputs:
        raise ValueError("no clips to compare on")
    same = right_ref = right_cand = 0
    max_diff = 0.0
    for item in inputs:
        ref_logits = reference.predict(item.views)
        cand_logits = candidate.predict(item.views)
        max_diff = max(max_diff, float(np.abs(ref_logits - cand_logits).max()))
        ref_top1 = ranked_classes(ref_logits, 1)[0][0]
        cand_top1 = ranked_classes(cand_logits, 1)[0][0]
        same += ref_top1 == cand_top1
        right_ref += ref_top1 == item.label
        right_cand += cand_top1 == item.label
    count = len(inputs)
    return Agreement(count, same / count, max_diff, right_ref / count, right_cand / count)
