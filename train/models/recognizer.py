"""The video recognizer: runs a 2D backbone on every frame and lets the head pool over time.

Input layout is PaddleVideo's inference layout [N, T, C, H, W]; frames of one clip are made
consecutive along the first axis ([N*T, C, H, W]) so the temporal shift inside the backbone can
view them as [N, T, ...] again. The state_dict keys are `backbone.*` and `head.*`, exactly as
PaddleVideo's Recognizer2D saves them, so official checkpoints load by name.
"""
from __future__ import annotations

from typing import Optional

import paddle
import paddle.nn as nn


class Recognizer2D(nn.Layer):
    """backbone (per frame) + optional head (temporal consensus and classifier).

    Heads take `(features, num_frames)`; models whose classifier lives in the backbone
    (MobileNet and PP-LCNetV2 variants) pass `head=None`.
    """

    # File stem of the exported inference program (PaddleVideo's `model_name`).
    export_name: str = "ppTSM"

    def __init__(self, backbone: nn.Layer, head: Optional[nn.Layer] = None,
                 export_name: Optional[str] = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        if export_name:
            self.export_name = export_name

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        num_frames = x.shape[1]
        frames = paddle.reshape(x, [-1] + list(x.shape[2:]))
        feats = self.backbone(frames)
        if self.head is None:
            return feats
        return self.head(feats, num_frames)
