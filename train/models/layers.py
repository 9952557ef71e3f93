"""Building blocks shared by the PP-TSM model families.

Three kinds of helpers live here:

* layers whose state_dict names must match PaddleVideo checkpoints (`ConvBN`: `conv.*`, `bn.*`);
* graph helpers that stay exportable in every Paddle 3.3 execution mode (`sigmoid`, `multiply`,
  `TemporalShift`): Paddle 3.3's `paddle.nn.functional.sigmoid` and `paddle.multiply` accept only
  dygraph tensors and PIR values, so they break the legacy `.pdmodel` export
  (`FLAGS_enable_pir_api=0`), which Paddle Serving 0.9's local predictor needs;
* re-parameterisation: the BN-folding math and `fuse_reparam_`, which turns multi-branch training
  convolutions into the single convolution that inference and export run.
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.framework import LayerHelper, in_dynamic_or_pir_mode

BN_EPSILON = 1e-5  # every BatchNorm of every PP-TSM model (MODEL_FACTS.md)
BN_MOMENTUM = 0.9


class ReparamError(ValueError):
    """Branches cannot be folded into one convolution (incompatible geometry)."""


class TemporalShiftError(ValueError):
    """The temporal shift is misconfigured: a clip length below 1, or too few channels to move."""


def sigmoid(x: paddle.Tensor) -> paddle.Tensor:
    """Logistic sigmoid that also works while tracing a legacy (non-PIR) static program."""
    if in_dynamic_or_pir_mode():
        return F.sigmoid(x)
    helper = LayerHelper("sigmoid")
    out = helper.create_variable_for_type_inference(x.dtype)
    helper.append_op(type="sigmoid", inputs={"X": x}, outputs={"Out": out})
    return out


def multiply(x: paddle.Tensor, y: paddle.Tensor) -> paddle.Tensor:
    """Broadcasting element-wise product that also works in a legacy (non-PIR) static program."""
    if in_dynamic_or_pir_mode():
        return paddle.multiply(x, y)
    helper = LayerHelper("elementwise_mul")
    out = helper.create_variable_for_type_inference(x.dtype)
    helper.append_op(type="elementwise_mul", inputs={"X": x, "Y": y}, outputs={"Out": out},
                     attrs={"axis": -1})
    return out


SE_REDUCTION = 4


class SqueezeExcite(nn.Layer):
    """Channel gating: pool -> 1x1 (C/4) -> ReLU -> 1x1 (C) -> gate -> scale.

    The gate is the one thing the families disagree on (PP-LCNetV2: true sigmoid; MobileNetV3:
    hardsigmoid with slope 0.2, offset 0.5), so it is a parameter; the scaling uses the
    legacy-export-safe `multiply`.
    """

    def __init__(self, channels: int, gate: Callable[[paddle.Tensor], paddle.Tensor]) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channels, channels // SE_REDUCTION, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(channels // SE_REDUCTION, channels, 1)
        self.gate = gate

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return multiply(x, self.gate(self.conv2(self.relu(self.conv1(self.avg_pool(x))))))


class ConvBN(nn.Layer):
    """Bias-free conv + BatchNorm (+ ReLU): PaddleVideo's `ConvBNLayer`, keys `conv.*` / `bn.*`.

    Padding is (k - 1) // 2 so every odd kernel keeps the same centre; the re-parameterisation
    relies on that to sum kernels of different sizes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 groups: int = 1, use_act: bool = True) -> None:
        super().__init__()
        # KaimingNormal as PaddleVideo's ConvBNLayer: its fan-in is per group (k*k for a
        # depthwise conv), whereas Paddle's default counts every input channel and starts
        # depthwise kernels about sqrt(C) times too small.
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2, groups=groups, bias_attr=False,
                              weight_attr=paddle.ParamAttr(initializer=nn.initializer.KaimingNormal()))
        self.bn = nn.BatchNorm2D(out_channels, momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
        self.act = nn.ReLU() if use_act else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(x))
        if self.act is not None:
            x = self.act(x)
        return x


class TemporalShift(nn.Layer):
    """TSM's zero-parameter temporal mixing on a batch of frames `[N*T, C, H, W]`.

    The first `int(C * ratio)` channels take the previous frame's values, the next as many the
    following frame's; `num_seg` is the clip length the batch is grouped by (the backbone's value,
    not the input's T, exactly as PaddleVideo does).
    """

    def __init__(self, num_seg: int, shift_ratio: float) -> None:
        super().__init__()
        if num_seg < 1:
            raise TemporalShiftError(f"num_seg must be >= 1, got {num_seg}")
        self.num_seg = num_seg
        self.shift_ratio = shift_ratio

    def check_channels(self, channels: int) -> None:
        """Raises when `channels` is too narrow for any channel to move (e.g. a tiny width_mult)."""
        if int(channels * self.shift_ratio) < 1:
            raise TemporalShiftError(
                f"temporal shift on {channels} channels with ratio {self.shift_ratio:g} moves no "
                f"channel; use at least {int(np.ceil(1 / self.shift_ratio))} channels")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.training:
            return F.temporal_shift(x, seg_num=self.num_seg, shift_ratio=self.shift_ratio)
        return self._shift_by_copies(x)

    def _shift_by_copies(self, x: paddle.Tensor) -> paddle.Tensor:
        """The same values as `F.temporal_shift`, built from reshape, slice and concat, which is
        what evaluation and export use. On CPU, Paddle Inference's `temporal_shift` kernel is a
        per-element loop that cannot stay in oneDNN's blocked layout, a large share of PP-TSM
        R50's inference (more so in int8), while these copies stay in it and cost far less
        (figures: docs/speed.md); outputs are bit-identical."""
        _, channels, height, width = x.shape
        backward = int(channels * self.shift_ratio)  # channels that take the previous frame
        forward = int(channels * 2 * self.shift_ratio)  # up to here: the next frame
        clips = x.reshape([-1, self.num_seg, channels, height, width])
        zeros = paddle.zeros_like(clips[:, :1, :forward])
        previous = paddle.concat([zeros[:, :, :backward], clips[:, :-1, :backward]], axis=1)
        following = paddle.concat([clips[:, 1:, backward:forward], zeros[:, :, backward:]], axis=1)
        shifted = paddle.concat([previous, following, clips[:, :, forward:]], axis=2)
        return shifted.reshape([-1, channels, height, width])


# --- re-parameterisation -------------------------------------------------------------------------

@runtime_checkable
class Reparameterizable(Protocol):
    """A layer with a training form (several branches) and an equivalent single-conv form.

    `fuse()` (re)computes the single conv from the branches and switches to it; it must be
    idempotent. `fused_parameter_names()` names (relative to the layer) the parameters that only
    hold meaningful values after `fuse()`: a training checkpoint stores them, but never used them.
    """

    is_fused: bool

    def fuse(self) -> None: ...

    def fused_parameter_names(self) -> tuple[str, ...]: ...


def fold_batch_norm(conv_weight: np.ndarray, bn: nn.BatchNorm2D) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of the conv equivalent to `bn(conv(x))` with BN running statistics.

    Computed in float64 so the fused network matches the branch network to float32 rounding.
    """
    gamma = bn.weight.numpy().astype(np.float64)
    beta = bn.bias.numpy().astype(np.float64)
    mean = bn._mean.numpy().astype(np.float64)
    std = np.sqrt(bn._variance.numpy().astype(np.float64) + bn._epsilon)
    scale = gamma / std
    kernel = conv_weight.astype(np.float64) * scale.reshape(-1, 1, 1, 1)
    return kernel, beta - mean * scale


def pad_kernel(kernel: np.ndarray, size: int) -> np.ndarray:
    """Zero-pads a centred odd `[out, in, k, k]` kernel to `[out, in, size, size]`."""
    k = kernel.shape[-1]
    if k > size or (size - k) % 2:
        raise ReparamError(f"cannot centre a {k}x{k} kernel in a {size}x{size} one")
    border = (size - k) // 2
    return np.pad(kernel, ((0, 0), (0, 0), (border, border), (border, border)))


def fuse_branches_into_conv(branches: Sequence[ConvBN], target: nn.Conv2D) -> None:
    """Writes into the biased conv `target` the sum of the parallel conv+BN `branches`.

    Valid because every branch sees the same input with the same stride and groups and centred
    padding, so sum_i BN_i(conv_i(x)) = conv(x; sum_i pad(W_i'), sum_i b_i').
    """
    if target.bias is None:
        raise ReparamError("the fused conv needs a bias to absorb the BatchNorm shifts")
    size = target.weight.shape[-1]
    kernel = np.zeros(target.weight.shape, dtype=np.float64)
    bias = np.zeros(target.bias.shape, dtype=np.float64)
    for branch in branches:
        conv = branch.conv
        if conv._stride != target._stride or conv._groups != target._groups:
            raise ReparamError(
                f"branch stride/groups {conv._stride}/{conv._groups} differ from the fused conv's "
                f"{target._stride}/{target._groups}")
        branch_kernel, branch_bias = fold_batch_norm(conv.weight.numpy(), branch.bn)
        kernel += pad_kernel(branch_kernel, size)
        bias += branch_bias
    target.weight.set_value(kernel.astype(np.float32))
    target.bias.set_value(bias.astype(np.float32))


def _reparameterizable_layers(model: nn.Layer, *, fused: bool) -> list[tuple[str, nn.Layer]]:
    """(state-dict prefix, layer) of every re-parameterisable sub-layer in the given state."""
    return [(prefix, layer) for prefix, layer in model.named_sublayers(include_self=True)
            if isinstance(layer, Reparameterizable) and layer.is_fused == fused]


def fuse_reparam_(model: nn.Layer) -> int:
    """Fuses every re-parameterisable sub-layer in place; returns how many were fused.

    Uses the BN running statistics, so call it on a trained model before evaluation or export
    (PaddleVideo's export does the same); the fused layers no longer train their branches.
    """
    layers = _reparameterizable_layers(model, fused=False)
    for _, layer in layers:
        layer.fuse()
    return len(layers)


def refresh_fused_layers_(model: nn.Layer) -> int:
    """Recomputes the fused conv of already-fused layers from their (possibly new) branches.

    Needed after loading a checkpoint into a fused model: the checkpoint's fused-conv tensors are
    training-time placeholders, the branches are the real weights.
    """
    layers = _reparameterizable_layers(model, fused=True)
    for _, layer in layers:
        layer.fuse()
    return len(layers)


def unfused_parameter_names(model: nn.Layer) -> set[str]:
    """State-dict names of parameters that are placeholders until their layer is fused."""
    return {f"{prefix}.{name}" if prefix else name
            for prefix, layer in _reparameterizable_layers(model, fused=False)
            for name in layer.fused_parameter_names()}
