"""PP-TSM with a ResNet-vd backbone (PaddleVideo's `ResNetTweaksTSM` + `ppTSMHead`).

Layer names and state_dict order follow PaddleVideo, so its `.pdparams` load by name:
`backbone.conv1_{1,2,3}`, `backbone.bb_<stage>_<block>.{conv0,conv1,conv2,short}`, `head.fc`.
What distinguishes it from a plain TSM ResNet (all needed for identical numbers):

* ResNet-vd stem: three 3x3 convs instead of one 7x7;
* leaky ReLU (slope 0.01) everywhere;
* the temporal shift is applied on the residual branch only; the shortcut carries the
  unshifted input, so every block still sees each frame's own features;
* ResNet-D projection shortcut: average-pool 2x2 then a stride-1 1x1 conv, so downsampling
  averages all pixels instead of dropping three out of four.
"""
from __future__ import annotations

from typing import Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from train.models.heads import PPTSMHead
from train.models.layers import BN_EPSILON, BN_MOMENTUM, TemporalShift
from train.models.recognizer import Recognizer2D
from train.models.registry import register_model

EXPORT_NAME = "ppTSM"
LEAKY_SLOPE = 0.01
STEM_CHANNELS = (32, 32, 64)
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
BLOCKS_R50 = (3, 4, 6, 3)
BLOCKS_R101 = (3, 4, 23, 3)


class ConvBNLayer(nn.Layer):
    """Bias-free conv + BatchNorm (+ activation), keys `_conv.*` / `_batch_norm.*`.

    These are the names of PaddleVideo's older `ConvBNLayer`, used by its ResNet and
    MobileNetV2 checkpoints (the newer models use `conv.*` / `bn.*`, see `layers.ConvBN`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 groups: int = 1, act: Optional[nn.Layer] = None) -> None:
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, groups=groups, bias_attr=False)
        self._batch_norm = nn.BatchNorm2D(out_channels, momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
        self.act = act

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._batch_norm(self._conv(x))
        if self.act is not None:
            x = self.act(x)
        return x


class AvgPoolProjection(ConvBNLayer):
    """ResNet-D downsampling shortcut: 2x2 average pool (stride 2) then 1x1 conv + BN.

    `ceil_mode` keeps the output size equal to the strided 3x3 conv's on odd inputs; the pool
    averages only real pixels (`exclusive`, Paddle's default), as PaddleVideo does.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, 1)
        self.pool = nn.AvgPool2D(kernel_size=stride, stride=stride, ceil_mode=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return super().forward(self.pool(x))


def leaky_relu() -> nn.Layer:
    return nn.LeakyReLU(LEAKY_SLOPE)


class TSMBottleneck(nn.Layer):
    """1x1 -> 3x3 (stride) -> 1x1 bottleneck on the temporally shifted input, plus a shortcut.

    The shortcut is the unshifted input, projected (`short`) when the shape changes.
    """

    def __init__(self, in_channels: int, width: int, *, stride: int, num_seg: int) -> None:
        super().__init__()
        out_channels = width * EXPANSION
        self.shift = TemporalShift(num_seg, 1.0 / num_seg)
        self.shift.check_channels(in_channels)
        self.conv0 = ConvBNLayer(in_channels, width, 1, act=leaky_relu())
        self.conv1 = ConvBNLayer(width, width, 3, stride=stride, act=leaky_relu())
        self.conv2 = ConvBNLayer(width, out_channels, 1)
        if stride > 1:
            self.short = AvgPoolProjection(in_channels, out_channels, stride)
        elif in_channels != out_channels:
            self.short = ConvBNLayer(in_channels, out_channels, 1)
        else:
            self.short = None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        residual = self.conv2(self.conv1(self.conv0(self.shift(x))))
        shortcut = x if self.short is None else self.short(x)
        return F.leaky_relu(shortcut + residual, negative_slope=LEAKY_SLOPE)


class ResNetTweaksTSM(nn.Sequential):
    """Frames `[N*T, 3, H, W]` -> feature maps `[N*T, 2048, H/32, W/32]`.

    `blocks_per_stage` picks the depth (R50: 3-4-6-3, R101: 3-4-23-3); `num_seg` is the clip
    length the temporal shift groups the batch by.
    """

    def __init__(self, blocks_per_stage: Sequence[int], *, num_seg: int) -> None:
        layers: list[tuple[str, nn.Layer]] = []
        in_channels = 3
        for index, channels in enumerate(STEM_CHANNELS, start=1):
            layers.append((f"conv1_{index}", ConvBNLayer(
                in_channels, channels, 3, stride=2 if index == 1 else 1, act=leaky_relu())))
            in_channels = channels
        layers.append(("max_pool", nn.MaxPool2D(kernel_size=3, stride=2, padding=1)))
        for stage, (num_blocks, width) in enumerate(zip(blocks_per_stage, STAGE_WIDTHS)):
            for block in range(num_blocks):
                stride = 2 if block == 0 and stage > 0 else 1
                layers.append((f"bb_{stage}_{block}", TSMBottleneck(
                    in_channels, width, stride=stride, num_seg=num_seg)))
                in_channels = width * EXPANSION
        super().__init__(*layers)
        self.out_channels = in_channels


def _pptsm_resnet(blocks_per_stage: Sequence[int], num_classes: int, num_seg: int,
                  dropout: float) -> Recognizer2D:
    backbone = ResNetTweaksTSM(blocks_per_stage, num_seg=num_seg)
    head = PPTSMHead(backbone.out_channels, num_classes, dropout=dropout)
    return Recognizer2D(backbone, head, export_name=EXPORT_NAME)


@register_model
def pptsm_resnet50(num_classes: int = 400, num_seg: int = 8,
                   dropout: float = 0.5) -> Recognizer2D:
    """PP-TSM ResNet50-vd (`pptsm_k400_frames_uniform.yaml`): 24.3M parameters."""
    return _pptsm_resnet(BLOCKS_R50, num_classes, num_seg, dropout)


@register_model
def pptsm_resnet101(num_classes: int = 400, num_seg: int = 8,
                    dropout: float = 0.5) -> Recognizer2D:
    """PP-TSM ResNet101-vd (`pptsm_k400_frames_dense_r101.yaml`): 43.3M parameters."""
    return _pptsm_resnet(BLOCKS_R101, num_classes, num_seg, dropout)
