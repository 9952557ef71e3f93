"""PP-TSM with a MobileNetV3-large backbone (PaddleVideo's `PPTSM_MobileNetV3`, identity head).

The classifier lives in the backbone, so every checkpoint key starts with `backbone.`:
`conv`, `blocks.0..14` (`expand_conv`, `bottleneck_conv`, `mid_se`, `linear_conv`),
`last_second_conv`, `last_conv`, `fc`. Details that change the numbers:

* SE gates with Paddle's hardsigmoid `clip(0.2 x + 0.5, 0, 1)`, not PyTorch's `x / 6 + 0.5`;
* units that keep stride and width shift their input in time and add the unshifted input back;
* the tail's dropout is `downscale_in_infer`: inference multiplies by 1 - p (0.8).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from train.models.heads import FrameConsensus
from train.models.layers import ConvBN, SqueezeExcite, TemporalShift
from train.models.recognizer import Recognizer2D
from train.models.registry import register_model

EXPORT_NAME = "ppTSM"
STEM_CHANNELS = 16
LAST_STAGE_CHANNELS = 960
FEATURE_DIM = 1280
SE_GATE_SLOPE = 0.2
SE_GATE_OFFSET = 0.5


@dataclass(frozen=True)
class UnitSpec:
    """One residual unit of the MobileNetV3 table."""

    kernel_size: int
    hidden_channels: int
    out_channels: int
    use_se: bool
    act: type[nn.Layer]
    stride: int


# MobileNetV3-large (width 1.0), blocks.0..14.
MOBILENET_V3_LARGE = (
    UnitSpec(3, 16, 16, False, nn.ReLU, 1),
    UnitSpec(3, 64, 24, False, nn.ReLU, 2),
    UnitSpec(3, 72, 24, False, nn.ReLU, 1),
    UnitSpec(5, 72, 40, True, nn.ReLU, 2),
    UnitSpec(5, 120, 40, True, nn.ReLU, 1),
    UnitSpec(5, 120, 40, True, nn.ReLU, 1),
    UnitSpec(3, 240, 80, False, nn.Hardswish, 2),
    UnitSpec(3, 200, 80, False, nn.Hardswish, 1),
    UnitSpec(3, 184, 80, False, nn.Hardswish, 1),
    UnitSpec(3, 184, 80, False, nn.Hardswish, 1),
    UnitSpec(3, 480, 112, True, nn.Hardswish, 1),
    UnitSpec(3, 672, 112, True, nn.Hardswish, 1),
    UnitSpec(5, 672, 160, True, nn.Hardswish, 2),
    UnitSpec(5, 960, 160, True, nn.Hardswish, 1),
    UnitSpec(5, 960, 160, True, nn.Hardswish, 1),
)


class ConvBNAct(ConvBN):
    """`layers.ConvBN` (keys `conv.*` / `bn.*`) with a chosen activation or none.

    MobileNetV3 mixes ReLU and hardswish, while `ConvBN` only offers ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 groups: int = 1, act: Optional[type[nn.Layer]] = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups,
                         use_act=False)
        self.act = act() if act is not None else None


def se_hardsigmoid(x: paddle.Tensor) -> paddle.Tensor:
    """MobileNetV3's SE gate as PaddleVideo computes it: clip(0.2 x + 0.5, 0, 1)."""
    return F.hardsigmoid(x, slope=SE_GATE_SLOPE, offset=SE_GATE_OFFSET)


class ResidualUnit(nn.Layer):
    """Expand 1x1 -> depthwise kxk (stride) -> [SE] -> linear 1x1, TSM residual when shapes allow.

    A residual unit computes `x + f(shift(x))`: the shortcut keeps each frame's own features.
    """

    def __init__(self, in_channels: int, spec: UnitSpec, *, num_seg: int) -> None:
        super().__init__()
        hidden = spec.hidden_channels
        self.expand_conv = ConvBNAct(in_channels, hidden, 1, act=spec.act)
        self.bottleneck_conv = ConvBNAct(hidden, hidden, spec.kernel_size, stride=spec.stride,
                                         groups=hidden, act=spec.act)
        self.mid_se = SqueezeExcite(hidden, se_hardsigmoid) if spec.use_se else None
        self.linear_conv = ConvBNAct(hidden, spec.out_channels, 1)
        if spec.stride == 1 and in_channels == spec.out_channels:
            self.shift = TemporalShift(num_seg, 1.0 / num_seg)
            self.shift.check_channels(in_channels)
        else:
            self.shift = None

    def _transform(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bottleneck_conv(self.expand_conv(x))
        if self.mid_se is not None:
            x = self.mid_se(x)
        return self.linear_conv(x)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.shift is None:
            return self._transform(x)
        return x + self._transform(self.shift(x))


def _build_units(in_channels: int, num_seg: int) -> nn.Sequential:
    units = []
    for spec in MOBILENET_V3_LARGE:
        units.append(ResidualUnit(in_channels, spec, num_seg=num_seg))
        in_channels = spec.out_channels
    return nn.Sequential(*units)


class PPTSMMobileNetV3(nn.Sequential):
    """Frames `[N*T, 3, H, W]` -> clip logits `[N, num_classes]`, N*T grouped by `num_seg`.

    Tail: 1x1 conv -> pool -> 1x1 `last_conv` (no bias) -> hardswish -> dropout -> mean over
    frames -> `fc`.
    """

    def __init__(self, *, num_classes: int, num_seg: int, dropout: float) -> None:
        last_unit_channels = MOBILENET_V3_LARGE[-1].out_channels
        super().__init__(
            ("conv", ConvBNAct(3, STEM_CHANNELS, 3, stride=2, act=nn.Hardswish)),
            ("blocks", _build_units(STEM_CHANNELS, num_seg)),
            ("last_second_conv", ConvBNAct(last_unit_channels, LAST_STAGE_CHANNELS, 1,
                                           act=nn.Hardswish)),
            ("avg_pool", nn.AdaptiveAvgPool2D(1)),
            ("last_conv", nn.Conv2D(LAST_STAGE_CHANNELS, FEATURE_DIM, 1, bias_attr=False)),
            ("hardswish", nn.Hardswish()),
            ("dropout", nn.Dropout(p=dropout, mode="downscale_in_infer")),
            ("consensus", FrameConsensus(num_seg)),
            ("fc", nn.Linear(FEATURE_DIM, num_classes)),
        )


@register_model
def pptsm_mobilenet_v3_large(num_classes: int = 400, num_seg: int = 8,
                             dropout: float = 0.2) -> Recognizer2D:
    """PP-TSM MobileNetV3-large (`pptsm_mv3_k400_frames_uniform.yaml`): 4.7M parameters."""
    backbone = PPTSMMobileNetV3(num_classes=num_classes, num_seg=num_seg, dropout=dropout)
    return Recognizer2D(backbone, head=None, export_name=EXPORT_NAME)
