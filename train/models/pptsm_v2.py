"""PP-TSMv2: the PP-LCNetV2-base backbone with one temporal shift, as PaddleVideo builds it.

Attribute names and creation order reproduce PaddleVideo's `PPTSM_v2` state_dict exactly
(`backbone.stem.*`, `backbone.stages.<s>.<b>.*`, `backbone.last_conv.weight`, `backbone.fc.*`,
and `backbone.global_attention.fc.*` last for the temporal-attention variant), so official
checkpoints load by name. `width_mult` < 1 narrows every stage and `stage_blocks` keeps only the
first blocks of each stage, for fast CPU demos; at their defaults the net is the official one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from train.models.layers import (
    ConvBN,
    SqueezeExcite,
    TemporalShift,
    fuse_branches_into_conv,
    multiply,
    sigmoid,
)
from train.models.recognizer import Recognizer2D
from train.models.registry import register_model

EXPORT_NAME = "ppTSMv2"
STEM_CHANNELS = (32, 64)
FEATURE_DIM = 1280  # last_conv width (PaddleClas' `class_expand`); not scaled by width_mult
TEMPORAL_STAGE = 2  # attention and shift act on the input of stages.2 only (cheapest place)
CHANNEL_DIVISOR = 8


@dataclass(frozen=True)
class StageSpec:
    """One stage of PP-LCNetV2: `num_blocks` blocks from `in_channels` to 2 * in_channels."""

    in_channels: int
    num_blocks: int
    kernel_size: int
    split_pw: bool = False
    use_rep: bool = False
    use_se: bool = False
    use_shortcut: bool = False


# PP-LCNetV2-base (MODEL_FACTS.md); the first block of every stage has stride 2.
LCNETV2_BASE_STAGES = (
    StageSpec(64, 2, 3),
    StageSpec(128, 2, 3),
    StageSpec(256, 6, 5, split_pw=True, use_rep=True, use_se=True),
    StageSpec(512, 2, 5, use_rep=True, use_shortcut=True),
)


def scale_channels(channels: int, width_mult: float) -> int:
    """MobileNet-style rounding to a multiple of 8, never losing more than 10 % of the width.

    Exact for width_mult 1.0 (all base widths are multiples of 8).
    """
    scaled = channels * width_mult
    nearest = int(scaled + CHANNEL_DIVISOR / 2) // CHANNEL_DIVISOR * CHANNEL_DIVISOR
    rounded = max(CHANNEL_DIVISOR, nearest)
    if rounded < 0.9 * scaled:
        rounded += CHANNEL_DIVISOR
    return rounded


class DepthwiseSeparable(nn.Layer):
    """PP-LCNetV2 block: depthwise conv+BN -> ReLU -> [SE] -> pointwise -> [+ input].

    The pointwise part is one 1x1 conv, or with `split_pw` two (in -> out/2 -> out) to save
    compute. The residual is only used when the block keeps stride and width.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, kernel_size: int,
                 split_pw: bool = False, use_se: bool = False, use_shortcut: bool = False) -> None:
        super().__init__()
        self._build_depthwise(in_channels, kernel_size, stride)
        self.act = nn.ReLU()
        self.se = SqueezeExcite(in_channels, sigmoid) if use_se else None
        self.split_pw = split_pw
        if split_pw:
            self.pw_conv_1 = ConvBN(in_channels, out_channels // 2, 1)
            self.pw_conv_2 = ConvBN(out_channels // 2, out_channels, 1)
        else:
            self.pw_conv = ConvBN(in_channels, out_channels, 1)
        self.use_shortcut = use_shortcut and stride == 1 and in_channels == out_channels

    def _build_depthwise(self, channels: int, kernel_size: int, stride: int) -> None:
        self.dw_conv = ConvBN(channels, channels, kernel_size, stride=stride, groups=channels,
                              use_act=False)

    def _depthwise(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.dw_conv(x)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.act(self._depthwise(x))
        if self.se is not None:
            y = self.se(y)
        if self.split_pw:
            y = self.pw_conv_2(self.pw_conv_1(y))
        else:
            y = self.pw_conv(y)
        if self.use_shortcut:
            y = y + x
        return y


class RepDepthwiseSeparable(DepthwiseSeparable):
    """Block whose depthwise conv trains as parallel conv+BN branches of kernel k, k-2, ..., 1.

    The 1x1 branch is left out in stride-2 blocks (as in PaddleVideo). `fuse()` folds the branches
    into the biased `dw_conv`; before that, `dw_conv` is unused and its checkpoint values are
    placeholders.
    """

    def _build_depthwise(self, channels: int, kernel_size: int, stride: int) -> None:
        self.dw_conv_list = nn.LayerList([
            ConvBN(channels, channels, k, stride=stride, groups=channels, use_act=False)
            for k in range(kernel_size, 0, -2) if not (k == 1 and stride != 1)
        ])
        self.dw_conv = nn.Conv2D(channels, channels, kernel_size, stride=stride,
                                 padding=(kernel_size - 1) // 2, groups=channels)
        self.is_fused = False

    def _depthwise(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.is_fused:
            return self.dw_conv(x)
        y = self.dw_conv_list[0](x)
        for branch in self.dw_conv_list[1:]:
            y = y + branch(x)
        return y

    def fuse(self) -> None:
        fuse_branches_into_conv(list(self.dw_conv_list), self.dw_conv)
        self.is_fused = True

    def fused_parameter_names(self) -> tuple[str, ...]:
        return ("dw_conv.weight", "dw_conv.bias")


class TemporalAttention(nn.Layer):
    """PP-TSMv2's LTA: re-weights each frame by a gate computed from all frames of the clip.

    Per-frame mean over C*H*W -> Linear(T, T) -> sigmoid -> scale that frame's features.

    The mean is taken as a global average pool, then the mean over channels: equal to the
    mean over C*H*W up to float rounding (logits within 1e-6), and the pool runs in oneDNN.
    Paddle Inference's CPU reduce_mean over [N*T, C, H, W] is slow; the pool and the small mean
    cost a small fraction of it (figures: docs/speed.md).
    """

    def __init__(self, num_seg: int) -> None:
        super().__init__()
        self.num_seg = num_seg
        self.fc = nn.Linear(num_seg, num_seg)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        frame_means = paddle.reshape(paddle.mean(F.adaptive_avg_pool2d(x, 1), axis=[1, 2, 3]),
                                     [-1, self.num_seg])
        gates = sigmoid(self.fc(frame_means))
        return multiply(x, paddle.reshape(gates, [-1, 1, 1, 1]))


class PPTSMv2Backbone(nn.Layer):
    """Frames `[N*T, 3, H, W]` -> clip logits `[N, num_classes]` (classifier lives here).

    Tail: pool -> 1x1 last_conv (no bias) -> ReLU -> dropout (x(1-p) at inference) ->
    mean over the `num_seg` frames of each clip -> fc.
    """

    def __init__(self, *, num_classes: int, num_seg: int, use_temporal_att: bool,
                 width_mult: float, dropout: float, feature_dim: int = FEATURE_DIM,
                 stage_blocks: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        stage_specs = _stage_specs(stage_blocks)
        self.num_seg = num_seg
        stem_out = scale_channels(STEM_CHANNELS[0], width_mult)
        stem_dw_out = scale_channels(STEM_CHANNELS[1], width_mult)
        self.stem = nn.Sequential(
            ConvBN(3, stem_out, 3, stride=2),
            DepthwiseSeparable(stem_out, stem_dw_out, stride=1, kernel_size=3),
        )
        self.stages = nn.LayerList(
            [_build_stage(spec, width_mult) for spec in stage_specs])
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        last_channels = scale_channels(2 * LCNETV2_BASE_STAGES[-1].in_channels, width_mult)
        self.last_conv = nn.Conv2D(last_channels, feature_dim, 1, bias_attr=False)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(p=dropout, mode="downscale_in_infer")
        self.fc = nn.Linear(feature_dim, num_classes)
        self.temporal_shift = TemporalShift(num_seg, 1.0 / num_seg)
        self.temporal_shift.check_channels(
            scale_channels(LCNETV2_BASE_STAGES[TEMPORAL_STAGE].in_channels, width_mult))
        # Created last: PaddleVideo stores `global_attention.*` after `fc.*`.
        self.global_attention = TemporalAttention(num_seg) if use_temporal_att else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem(x)
        for index, stage in enumerate(self.stages):
            if index == TEMPORAL_STAGE:
                x = self._mix_time(x)
            x = stage(x)
        x = self.dropout(self.act(self.last_conv(self.avg_pool(x))))
        clip_features = paddle.mean(paddle.reshape(x, [-1, self.num_seg, x.shape[1]]), axis=1)
        return self.fc(clip_features)

    def _mix_time(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.global_attention is not None:
            x = self.global_attention(x)
        return self.temporal_shift(x)


def _stage_specs(stage_blocks: Optional[Sequence[int]]) -> tuple[StageSpec, ...]:
    """The official stages, or with `stage_blocks` only the first n blocks of each.

    Why a demo wants this: from scratch, the 14 non-residual blocks of PP-LCNetV2 leave the loss
    flat for thousands of clips, while one block per stage learns the synthetic motions within the
    CPU budget (docs/demo-recipe.md). The kept blocks keep their official names (`stages.s.0`
    ...), so such a net's parameters are a subset of an official checkpoint's.
    """
    if stage_blocks is None:
        return LCNETV2_BASE_STAGES
    official = [spec.num_blocks for spec in LCNETV2_BASE_STAGES]
    blocks = list(stage_blocks)
    if len(blocks) != len(official) or not all(
            isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= most
            for n, most in zip(blocks, official)):
        raise ValueError(f"stage_blocks must be {len(official)} integers, each between 1 and the "
                         f"official count {official}, got {stage_blocks!r}")
    return tuple(replace(spec, num_blocks=n) for spec, n in zip(LCNETV2_BASE_STAGES, blocks))


def _build_stage(spec: StageSpec, width_mult: float) -> nn.Sequential:
    block_cls = RepDepthwiseSeparable if spec.use_rep else DepthwiseSeparable
    in_channels = scale_channels(spec.in_channels, width_mult)
    out_channels = scale_channels(2 * spec.in_channels, width_mult)
    blocks = []
    for index in range(spec.num_blocks):
        blocks.append(block_cls(
            in_channels if index == 0 else out_channels, out_channels,
            stride=2 if index == 0 else 1, kernel_size=spec.kernel_size, split_pw=spec.split_pw,
            use_se=spec.use_se, use_shortcut=spec.use_shortcut))
    return nn.Sequential(*blocks)


@register_model
def pptsm_v2_lcnet(num_classes: int = 400, num_seg: int = 8, use_temporal_att: bool = False,
                   width_mult: float = 1.0, dropout: float = 0.2,
                   feature_dim: int = FEATURE_DIM,
                   stage_blocks: Optional[Sequence[int]] = None) -> Recognizer2D:
    """PP-TSMv2 (PP-LCNetV2-base + TSM); defaults give PaddleVideo's 8-frame Kinetics-400 net.

    `use_temporal_att=True` with `num_seg=16` is the released DML-distilled student.
    """
    backbone = PPTSMv2Backbone(num_classes=num_classes, num_seg=num_seg,
                               use_temporal_att=use_temporal_att, width_mult=width_mult,
                               dropout=dropout, feature_dim=feature_dim,
                               stage_blocks=stage_blocks)
    return Recognizer2D(backbone, head=None, export_name=EXPORT_NAME)
