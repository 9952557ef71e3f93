"""Optimiser and per-iteration learning-rate schedule built from a recipe's `optimizer` section.

Recipes say `lr` for their reference batch size; with `scale_lr_by_batch` the LR is scaled
linearly to the batch actually used (Goyal et al.), so a laptop run with a small batch keeps the
recipe's dynamics.
"""
from __future__ import annotations

from collections.abc import Mapping

import paddle
from paddle.optimizer import lr as lr_sched

from train.config import ConfigError, OptimizerConfig


def build_lr_schedule(cfg: OptimizerConfig, steps_per_epoch: int, epochs: int,
                      batch_size: int) -> lr_sched.LRScheduler:
    # Every LR of the recipe (peak, warm-up start, floor) scales by the same batch ratio.
    scale = 1.0
    if cfg.scale_lr_by_batch and cfg.reference_batch_size is not None:
        scale = batch_size / float(cfg.reference_batch_size)
    base_lr = cfg.lr * scale
    total = max(1, steps_per_epoch * epochs)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "warmup_cosine":
        sched: lr_sched.LRScheduler | float = lr_sched.CosineAnnealingDecay(
            base_lr, T_max=max(1, total - warmup), eta_min=cfg.min_lr * scale)
    else:  # piecewise (the recipe reader allows no other)
        boundaries = [int(e * steps_per_epoch) for e in cfg.boundaries_epochs or ()]
        values = [base_lr * m for m in cfg.multipliers]
        sched = lr_sched.PiecewiseDecay(boundaries=boundaries, values=values)
    if warmup > 0:
        return lr_sched.LinearWarmup(sched, warmup_steps=warmup,
                                     start_lr=cfg.warmup_start_lr * scale, end_lr=base_lr)
    return sched  # type: ignore[return-value]


def build_optimizer(cfg: OptimizerConfig, parameters: list, schedule: lr_sched.LRScheduler
                    ) -> paddle.optimizer.Optimizer:
    weight_decay = cfg.weight_decay
    if cfg.name == "momentum":
        return paddle.optimizer.Momentum(
            learning_rate=schedule, momentum=cfg.momentum, parameters=parameters,
            use_nesterov=cfg.nesterov,
            weight_decay=paddle.regularizer.L2Decay(weight_decay) if weight_decay else None,
            grad_clip=_grad_clip(cfg))
    return paddle.optimizer.AdamW(learning_rate=schedule, parameters=parameters,
                                  weight_decay=weight_decay, grad_clip=_grad_clip(cfg))


def apply_lr_multipliers(model: paddle.nn.Layer, multipliers: Mapping[str, float]) -> list[str]:
    """Scales the LR of every parameter whose name starts with one of the prefixes in
    `multipliers` (`optimizer.lr_mult`, e.g. `{backbone.last_conv: 0.1}`), through the
    parameter's own `learning_rate` attribute that Paddle's optimisers multiply in.

    Why the demo uses it: PP-TSMv2's `last_conv` (1x1, no bias, no BN, then ReLU) sees pooled,
    non-negative features; at the full AdamW LR of a from-scratch run most of its 1,280 units
    were switched off for every input within the first epoch, and in one run all of them, which
    leaves the loss at ln C for good. Returns the names of the parameters changed; a prefix that
    matches nothing is a ConfigError (a typo would otherwise train at the full LR silently).
    """
    named = dict(model.named_parameters())
    changed = []
    for prefix, multiplier in multipliers.items():
        matches = [name for name in named if name == prefix or name.startswith(prefix + ".")]
        if not matches:
            raise ConfigError(f"optimizer.lr_mult: no parameter is named {prefix!r} or starts "
                              f"with '{prefix}.'")
        for name in matches:
            named[name].optimize_attr["learning_rate"] = float(multiplier)
        changed.extend(matches)
    return changed


def _grad_clip(cfg: OptimizerConfig) -> paddle.nn.ClipGradByGlobalNorm | None:
    clip = cfg.grad_clip_norm
    return paddle.nn.ClipGradByGlobalNorm(clip) if clip else None


def zero_init_classifier(model: paddle.nn.Layer) -> int:
    """Zeroes the classifier (`backbone.fc` / `head.fc`, the layer official checkpoints name
    `fc`) so that a from-scratch run starts at uniform predictions (loss = ln C) instead of the
    large random logits of 1280 un-normalised features, which cost short CPU runs their first
    epochs. Returns the number of layers zeroed."""
    zeroed = 0
    for name, layer in model.named_sublayers():
        if name in ("backbone.fc", "head.fc") and isinstance(layer, paddle.nn.Linear):
            layer.weight.set_value(paddle.zeros_like(layer.weight))
            layer.bias.set_value(paddle.zeros_like(layer.bias))
            zeroed += 1
    return zeroed
