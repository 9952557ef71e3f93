"""Temporal consensus and the PP-TSM classification head.

A TSM network classifies every frame's features separately and averages over the frames of a
clip. The ResNet models do that in `PPTSMHead` (PaddleVideo's `ppTSMHead`, checkpoint keys
`head.fc.*`), the MobileNet models inside their backbone (`FrameConsensus`), because their
classifier weights are stored under `backbone.*`.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn


def mean_over_frames(x: paddle.Tensor, num_frames: int) -> paddle.Tensor:
    """`[N*T, C, ...]` per-frame features (trailing dims of size 1) -> clip features `[N, C]`.

    Frames of one clip are consecutive along the first axis (Recognizer2D's layout).
    """
    per_clip = paddle.reshape(x, [-1, num_frames, x.shape[1]])
    return paddle.mean(per_clip, axis=1)


class FrameConsensus(nn.Layer):
    """Averages pooled per-frame features over a clip of a fixed `num_seg` frames.

    The MobileNet PP-TSM backbones group the batch by their constructor's `num_seg`, not by the
    input's T (PaddleVideo does the same), so the count is fixed when the model is built.
    """

    def __init__(self, num_seg: int) -> None:
        super().__init__()
        self.num_seg = num_seg

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return mean_over_frames(x, self.num_seg)


class PPTSMHead(nn.Layer):
    """Global average pool -> dropout -> mean over the input's frames -> linear classifier.

    Dropout is `upscale_in_train`, so inference is the identity. The frame count comes from the
    input (`num_frames`), so one model handles any clip length.
    """

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float = 0.5,
                 init_std: float = 0.01) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.dropout = nn.Dropout(p=dropout)
        # A small-variance classifier starts with near-uniform predictions, so fine-tuning from a
        # pretrained backbone does not begin with large, random gradients.
        self.fc = nn.Linear(
            in_channels, num_classes,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.Normal(std=init_std)),
            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)))

    def forward(self, feats: paddle.Tensor, num_frames: int) -> paddle.Tensor:
        pooled = self.dropout(self.avg_pool(feats))
        return self.fc(mean_over_frames(pooled, num_frames))
