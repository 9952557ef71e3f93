"""PP-TSM with a MobileNetV2 backbone (PaddleVideo's `PPTSM_MobileNetV2`, identity head).

The classifier lives in the backbone, so every checkpoint key starts with `backbone.`:
`conv1`, inverted-residual groups `conv2..conv8` (units `_first_block`, `conv<g>_2`, ...),
`conv9`, `out`. Units after the first of each group shift their input in time and add the
unshifted input back; the first unit of a group changes the shape and has neither.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import paddle
import paddle.nn as nn

from train.models.heads import FrameConsensus
from train.models.layers import TemporalShift
from train.models.pptsm_resnet import ConvBNLayer
from train.models.recognizer import Recognizer2D
from train.models.registry import register_model

EXPORT_NAME = "ppTSM"
STEM_CHANNELS = 32
FEATURE_DIM = 1280


@dataclass(frozen=True)
class GroupSpec:
    """One inverted-residual group: hidden = in * expansion; stride on its first unit."""

    expansion: int
    out_channels: int
    num_units: int
    stride: int


# Groups conv2..conv8 of MobileNetV2 (width 1.0).
MOBILENET_V2_GROUPS = (
    GroupSpec(1, 16, 1, 1),
    GroupSpec(6, 24, 2, 2),
    GroupSpec(6, 32, 3, 2),
    GroupSpec(6, 64, 4, 2),
    GroupSpec(6, 96, 3, 1),
    GroupSpec(6, 160, 3, 2),
    GroupSpec(6, 320, 1, 1),
)


class InvertedResidual(nn.Layer):
    """Expand 1x1 -> depthwise 3x3 (stride) -> linear 1x1; with `shift`, TSM residual unit.

    A residual unit computes `x + f(shift(x))`: the shortcut keeps each frame's own features.
    """

    def __init__(self, in_channels: int, out_channels: int, *, expansion: int, stride: int,
                 shift: Optional[TemporalShift]) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self._expand_conv = ConvBNLayer(in_channels, hidden, 1, act=nn.ReLU6())
        self._bottleneck_conv = ConvBNLayer(hidden, hidden, 3, stride=stride, groups=hidden,
                                            act=nn.ReLU6())
        self._linear_conv = ConvBNLayer(hidden, out_channels, 1)
        self.shift = shift

    def _transform(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._linear_conv(self._bottleneck_conv(self._expand_conv(x)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.shift is None:
            return self._transform(x)
        return x + self._transform(self.shift(x))


def _build_group(group_index: int, in_channels: int, spec: GroupSpec,
                 num_seg: int) -> nn.Sequential:
    """Units of group `conv<group_index>`, named as in PaddleVideo checkpoints."""
    units = [("_first_block", InvertedResidual(
        in_channels, spec.out_channels, expansion=spec.expansion, stride=spec.stride,
        shift=None))]
    for unit_index in range(2, spec.num_units + 1):
        shift = TemporalShift(num_seg, 1.0 / num_seg)
        shift.check_channels(spec.out_channels)
        units.append((f"conv{group_index}_{unit_index}", InvertedResidual(
            spec.out_channels, spec.out_channels, expansion=spec.expansion, stride=1,
            shift=shift)))
    return nn.Sequential(*units)


class PPTSMMobileNetV2(nn.Sequential):
    """Frames `[N*T, 3, H, W]` -> clip logits `[N, num_classes]`, N*T grouped by `num_seg`."""

    def __init__(self, *, num_classes: int, num_seg: int) -> None:
        layers: list[tuple[str, nn.Layer]] = [
            ("conv1", ConvBNLayer(3, STEM_CHANNELS, 3, stride=2, act=nn.ReLU6()))]
        in_channels = STEM_CHANNELS
        for group_index, spec in enumerate(MOBILENET_V2_GROUPS, start=2):
            layers.append((f"conv{group_index}",
                           _build_group(group_index, in_channels, spec, num_seg)))
            in_channels = spec.out_channels
        layers += [
            ("conv9", ConvBNLayer(in_channels, FEATURE_DIM, 1, act=nn.ReLU6())),
            ("avg_pool", nn.AdaptiveAvgPool2D(1)),
            ("consensus", FrameConsensus(num_seg)),
            ("out", nn.Linear(FEATURE_DIM, num_classes)),
        ]
        super().__init__(*layers)


@register_model
def pptsm_mobilenet_v2(num_classes: int = 400, num_seg: int = 8) -> Recognizer2D:
    """PP-TSM MobileNetV2 (`pptsm_mv2_k400_videos_uniform.yaml`): 2.7M parameters."""
    backbone = PPTSMMobileNetV2(num_classes=num_classes, num_seg=num_seg)
    return Recognizer2D(backbone, head=None, export_name=EXPORT_NAME)
