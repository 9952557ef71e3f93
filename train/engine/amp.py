"""Automatic mixed precision (`train.amp: {enabled, dtype, level}`, off by default).

The forward pass and the loss run under `paddle.amp.auto_cast` (O1: white-listed ops such as
convolutions in low precision; O2: the whole network cast, float32 master weights in the
optimiser). float16 gradients underflow without loss scaling, so float16 goes through a
dynamic `GradScaler`; bfloat16 has float32's exponent range and needs none.

Paddle 3.3's dygraph AMP only works on GPU/XPU/custom devices: on a CPU place `auto_cast`
warns and silently runs in float32 (and CPU kernels such as matmul have no bfloat16 version),
so an AMP recipe on a device without support is refused with a ConfigError instead of
pretending.
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import paddle

from train.config import AmpSettings, ConfigError


def amp_settings(settings: AmpSettings) -> AmpSettings:
    """The recipe's `train.amp` (its keys and values checked when the recipe was read), with
    enabled AMP also checked against the current device, which only the trainer knows."""
    if settings.enabled:
        _check_device(settings.dtype)
    return settings


def _check_device(dtype: str) -> None:
    """Refuses an AMP dtype the current device cannot run (Paddle would silently ignore it)."""
    if _supported(dtype):
        return
    other = "bfloat16" if dtype == "float16" else "float16"
    hint = (f"set train.amp.dtype={other} (supported here) or train.amp.enabled=false"
            if _supported(other) else
            f"set train.amp.enabled=false ({other} AMP is not supported here either)")
    raise ConfigError(
        f"train.amp: {dtype} AMP is not supported on device {paddle.device.get_device()!r} "
        f"(Paddle {paddle.__version__}, compiled with CUDA: {paddle.is_compiled_with_cuda()}); "
        f"paddle.amp.auto_cast would run in float32 without saying so. AMP needs a CUDA GPU "
        f"(compute capability 7.0+ for float16, 8.0+ for bfloat16): {hint}")


def _supported(dtype: str) -> bool:
    check = {"float16": paddle.amp.is_float16_supported,
             "bfloat16": paddle.amp.is_bfloat16_supported}[dtype]
    return check()


class MixedPrecision:
    """The precision policy of a training step: where to autocast, how to backpropagate and
    step (through the loss scaler for float16), and the scaler state a resume restores."""

    def __init__(self, settings: AmpSettings) -> None:
        self.settings = settings
        self.scaler = (paddle.amp.GradScaler()
                       if settings.enabled and settings.dtype == "float16" else None)

    def decorate(self, model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer) -> None:
        """O2 casts `model` in place and gives `optimizer` float32 master weights; checkpoints
        keep float32. Call it before the model is wrapped for data-parallel training."""
        if self.settings.enabled and self.settings.level == "O2":
            paddle.amp.decorate(models=model, optimizers=optimizer, level="O2",
                                dtype=self.settings.dtype, save_dtype="float32")

    def autocast(self) -> ContextManager:
        if not self.settings.enabled:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(enable=True, level=self.settings.level,
                                    dtype=self.settings.dtype)

    def inference(self) -> ContextManager:
        """Where validation and precise BN run: in float32, the precision of the exported model,
        unless O2 has cast the weights, which then only run under autocast."""
        return self.autocast() if self.settings.level == "O2" else contextlib.nullcontext()

    def backward(self, loss: paddle.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer: paddle.optimizer.Optimizer) -> None:
        """One optimiser update; with the scaler: unscaled gradients, skipped on inf/nan, and
        the loss scale adapted."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The loss scaler's state ({} without one), for an exact resume."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
