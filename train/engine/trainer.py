"""The training loop: per-iteration LR schedule, mixup, gradient accumulation, mixed precision,
frozen BatchNorm, precise BN, progress bar, per-epoch validation, best-checkpoint tracking, exact
resume, VisualDL scalars, and data-parallel runs.

What is optimised (one network, or a distillation pair) comes from `objective.build_objective`;
the data from `datasets.build_dataset` (video or frame folders); process-group details from
`distributed`. Randomness is a function of (seed, epoch, step) wherever it matters, so a resumed
run continues exactly as an uninterrupted one would have.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import paddle
from paddle.io import DistributedBatchSampler
from tqdm import tqdm

from serving.core.list_file import ListFileError
from train.config import ConfigError, Recipe, TrainConfig, class_count
from train.data.datasets import build_dataset, label_names
from train.data.loader import Loader, build_loader
from train.data.video_dataset import ClipDataset
from train.engine.amp import MixedPrecision, amp_settings
from train.engine.checkpoints import (
    TrainState,
    load_latest,
    load_scaler_state,
    save_best,
    save_latest,
)
from train.engine.distributed import DistContext, setup_distributed
from train.engine.evaluate import EvalResult, predict_logits, scores_from_logits
from train.engine.freeze_bn import freeze_batch_norms
from train.engine.layer_modes import batch_norms, keep_in_eval_mode
from train.engine.mixup import mixup_batch
from train.engine.objective import Objective, build_objective
from train.engine.optim import apply_lr_multipliers, build_lr_schedule, build_optimizer
from train.engine.plots import plot_training_curves
from train.engine.precise_bn import precise_bn_schedule, recompute_bn_statistics
from train.models.checkpoint import CheckpointError, classifier_keys, load_for_finetuning

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_top1: float
    best_epoch: int
    epochs: int
    seconds: float
    output_dir: Path


class _NoWriter:
    """Stands in for VisualDL's LogWriter on ranks other than 0."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextlib.contextmanager
def _scalar_writer(logdir: Path, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield _NoWriter()
        return
    from visualdl import LogWriter  # imported late: heavy, and only the trainer needs it

    with LogWriter(logdir=str(logdir)) as writer:
        yield writer


def _loaders(cfg: Recipe, ctx: DistContext, batch_size: int
             ) -> tuple[ClipDataset, DistributedBatchSampler, Loader, Loader]:
    """(train set, its sampler, train loader, this rank's validation loader)."""
    workers = cfg.data.num_workers
    train_set = build_dataset(cfg, "train", "train")
    sampler = ctx.train_sampler(train_set, batch_size)
    val_loader = build_loader(ctx.shard(build_dataset(cfg, "val", "uniform")), workers,
                              batch_size=batch_size)
    return train_set, sampler, build_loader(train_set, workers, batch_sampler=sampler), val_loader


@dataclass
class _Steps:
    """What every training step of a run uses: the network to call, what it optimises, and how
    an optimiser step is taken (over `accumulate` batches, at the AMP policy's precision)."""
    network: paddle.nn.Layer
    objective: Objective
    optimizer: paddle.optimizer.Optimizer
    schedule: paddle.optimizer.lr.LRScheduler
    amp: MixedPrecision
    accumulate: int
    frozen_bn: list[paddle.nn.Layer]
    mixup_alpha: float
    seed: int


def _accumulate_steps(train_cfg: TrainConfig, batches: int) -> int:
    """`train.accumulate_steps`, which an epoch of `batches` batches must hold."""
    steps = train_cfg.accumulate_steps
    if steps > batches:
        raise ConfigError(f"train.accumulate_steps: {steps} exceeds the {batches} training "
                          f"batches of an epoch, which would then take no optimiser step")
    if batches % steps:
        log.info("accumulate_steps %d: the last %d of %d batches of every epoch are not used",
                 steps, batches % steps, batches)
    return steps


def train(cfg: Recipe, resume: bool = False, progress: bool = True) -> TrainResult:
    train_cfg = cfg.train
    precise_bn = precise_bn_schedule(train_cfg)
    amp = MixedPrecision(amp_settings(train_cfg.amp))
    seed = train_cfg.seed
    paddle.seed(seed)
    np.random.seed(seed)
    ctx = setup_distributed()
    progress = progress and ctx.is_main
    num_seg = cfg.preprocess.num_seg
    batch_size = train_cfg.batch_size
    try:  # a missing or malformed list is the user's to fix: one line, not a traceback
        labels = label_names(cfg)
        train_set, sampler, train_loader, val_loader = _loaders(cfg, ctx, batch_size)
    except ListFileError as exc:
        raise ConfigError(f"data: {exc}") from None
    accumulate = _accumulate_steps(train_cfg, len(train_loader))

    objective = build_objective(cfg, num_classes=class_count(
        cfg, labels, Path(cfg.data.root) / cfg.data.label_list))
    if train_cfg.finetune_from:  # a resumed run then replaces these weights with its own
        try:
            report = load_for_finetuning(objective.student, train_cfg.finetune_from)
        except CheckpointError as exc:
            raise ConfigError(f"train.finetune_from: {exc}") from None
        if ctx.is_main:
            tqdm.write(report.describe())
    # Before the optimiser is built: frozen BN parameters are not among those it updates.
    frozen_bn = freeze_batch_norms(objective.student, train_cfg.freeze_bn)
    epochs = train_cfg.epochs
    # The schedule counts optimiser steps, and an accumulated step sees `accumulate` batches.
    schedule = build_lr_schedule(cfg.optimizer, len(train_loader) // accumulate,
                                 epochs, batch_size * ctx.world_size * accumulate)
    apply_lr_multipliers(objective.student, cfg.optimizer.lr_mult)
    optimizer = build_optimizer(cfg.optimizer, objective.trainable_parameters(), schedule)
    out_dir = Path(train_cfg.output_dir)
    state = (load_latest(out_dir, objective.network, optimizer) if resume else None) or TrainState()
    if resume:
        log.info("resuming from %s at epoch %d", out_dir, state.epoch)
        amp.set_state_dict(load_scaler_state(out_dir))
    amp.decorate(objective.network, optimizer)
    freeze_epochs = train_cfg.freeze_backbone_epochs
    # Wrapped while every parameter still trains, so gradient averaging covers the backbone
    # once it is unfrozen; until then its parameters are unused in the backward pass.
    steps = _Steps(ctx.wrap(objective.network, find_unused_parameters=freeze_epochs > 0),
                   objective, optimizer, schedule, amp, accumulate, frozen_bn,
                   train_cfg.mixup_alpha, seed)
    backbone = _BackboneFreeze(objective.student, frozen_bn)

    start = time.perf_counter()
    with _scalar_writer(out_dir / "vdl", ctx.is_main) as writer:
        for epoch in range(state.epoch, epochs):
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            paddle.seed(seed + epoch)  # dropout: the same draws after a resume
            steps.frozen_bn = backbone.set_frozen(epoch < freeze_epochs)
            loss = _train_one_epoch(steps, train_loader, writer, state,
                                    f"epoch {epoch + 1}/{epochs}", progress)
            with amp.inference():
                bn_batches = recompute_bn_statistics(
                    objective.student, train_loader,
                    precise_bn.num_batches if precise_bn.due(epoch, epochs) else 0,
                    skip=steps.frozen_bn)
                ctx.average_bn_statistics(objective.student)
                result = _validate(objective.student, val_loader, ctx, len(labels), num_seg,
                                   progress)
            state.epoch = epoch + 1
            state.history.append({"epoch": epoch + 1, "loss": loss, "val_top1": result.top1,
                                  "val_clips": result.num_samples,
                                  "lr": float(optimizer.get_lr()), "precise_bn": bn_batches})
            improved = result.top1 > state.best_top1
            if improved:
                state.best_top1, state.best_epoch = result.top1, state.epoch
            if ctx.is_main:
                writer.add_scalar("val/top1", result.top1, state.epoch)
                if improved:
                    save_best(out_dir, objective.student, state, objective.distilled)
                save_latest(out_dir, objective.network, optimizer, state, amp.state_dict())
                tqdm.write(f"epoch {state.epoch}/{epochs}: loss {loss:.4f}  val top-1 "
                           f"{result.top1:.4f}{'  (best, saved)' if improved else ''}")
    if ctx.is_main:
        plot_training_curves(state.history, out_dir / "training_curves.png")
    return TrainResult(state.best_top1, state.best_epoch, state.epoch,
                       time.perf_counter() - start, out_dir)


class _BackboneFreeze:
    """`train.freeze_backbone_epochs`: while frozen, only the classifier learns (a linear probe
    of the fine-tuned features, so the new head's first, large gradients do not disturb them):
    every other parameter gets no gradient (the optimiser skips it) and every BN layer keeps its
    statistics. Parameters already frozen by `freeze_bn` stay frozen when the backbone thaws."""

    def __init__(self, model: paddle.nn.Layer, frozen_bn: list[paddle.nn.Layer]) -> None:
        head = set(classifier_keys(model))
        self.parameters = [param for key, param in model.named_parameters()
                           if key not in head and not param.stop_gradient]
        self.always_frozen_bn = frozen_bn
        self.all_bn = batch_norms(model)

    def set_frozen(self, frozen: bool) -> list[paddle.nn.Layer]:
        """Freezes or thaws the backbone; returns the BN layers to hold in eval mode."""
        for param in self.parameters:
            param.stop_gradient = frozen
        return self.all_bn if frozen else self.always_frozen_bn


def _validate(model: paddle.nn.Layer, loader: Loader, ctx: DistContext, num_classes: int,
              num_seg: int, progress: bool) -> EvalResult:
    """Top-1 etc. over the whole validation list (each rank scores its shard)."""
    logits, labels = ctx.gather(*predict_logits(model, loader, num_seg, "val", progress))
    return scores_from_logits(logits, labels, num_classes)


def _train_one_epoch(steps: _Steps, loader: Loader, writer, state: TrainState, desc: str,
                     progress: bool) -> float:
    """One epoch of optimiser steps, each over `steps.accumulate` consecutive batches: their
    gradients add up (each loss divided by the count, so a step sees the mean loss of all its
    clips) before one update. Returns the mean loss of the steps."""
    steps.network.train()
    keep_in_eval_mode(steps.frozen_bn)
    count = steps.accumulate
    used = len(loader) // count * count
    losses: list[float] = []
    step_loss = 0.0
    step_parts: dict[str, float] = {}
    bar = tqdm(itertools.islice(loader, used), total=used, desc=desc, leave=False,
               disable=not progress)
    tic = time.perf_counter()
    for index, (clips, labels) in enumerate(bar):
        # Mixup draws depend on the batch's position in the run, not on the process history.
        rng = np.random.default_rng([steps.seed, state.global_step * count + index % count])
        clips, targets = mixup_batch(clips, labels, steps.mixup_alpha, rng)
        with steps.amp.autocast():
            loss, parts = steps.objective.criterion(steps.network(clips), targets)
        steps.amp.backward(loss / count)
        step_loss += float(loss) / count
        for name, value in parts.items():
            step_parts[name] = step_parts.get(name, 0.0) + value / count
        if index % count != count - 1:
            continue
        steps.amp.step(steps.optimizer)
        steps.optimizer.clear_grad()
        steps.schedule.step()
        state.global_step += 1
        losses.append(step_loss)
        rate = clips.shape[0] * count / max(1e-9, time.perf_counter() - tic)
        tic = time.perf_counter()
        lr = float(steps.optimizer.get_lr())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{lr:.4f}", clips_s=f"{rate:.1f}")
        writer.add_scalar("train/loss", step_loss, state.global_step)
        writer.add_scalar("train/lr", lr, state.global_step)
        for name, value in step_parts.items():
            writer.add_scalar(f"train/{name}", value, state.global_step)
        step_loss, step_parts = 0.0, {}
    return float(np.mean(losses)) if losses else float("nan")
