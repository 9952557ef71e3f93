"""A network's starting weights: an ImageNet backbone (`pretrained`) and/or a trained checkpoint.

Used for the student (`train.pretrained`) and for a distillation teacher
(`distillation.teacher.pretrained` / `.checkpoint`); every load is by name and reported in the
log, and a file that does not fit the network raises instead of training from a half-loaded one.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

import paddle.nn as nn

from train.models.checkpoint import load_state_dict_by_name
from train.models.pretrained import load_pretrained_backbone

log = logging.getLogger(__name__)

PathLike = Union[str, Path]


def initialise_weights(model: nn.Layer, *, pretrained: Optional[PathLike] = None,
                       checkpoint: Optional[PathLike] = None, what: str = "model") -> None:
    """Loads `pretrained` (backbone only, PaddleClas naming) then `checkpoint` (the whole
    network, any PaddleVideo layout, strict); either may be None."""
    if pretrained:
        log.info("%s: %s", what, load_pretrained_backbone(model, pretrained).describe())
    if checkpoint:
        report = load_state_dict_by_name(model, checkpoint)
        log.info("%s: loaded %d tensors from %s (layout %s)", what, len(report.loaded),
                 checkpoint, report.layout)
