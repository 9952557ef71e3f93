"""The training loop: per-iteration LR schedule, mixup, progress bar, per-epoch validation,
best-checkpoint tracking, exact resume, VisualDL scalars, and data-parallel runs.

What is optimised (one network, or a distillation pair) comes from `objective.build_objective`;
the data from `datasets.build_dataset` (video or frame folders); process-group details from
`distributed`. Randomness is a function of (seed, epoch, step) wherever it matters, so a resumed
run continues exactly as an uninterrupted one would have.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import paddle
from paddle.io import DistributedBatchSampler
from tqdm import tqdm

from train.config import section
from train.data.datasets import build_dataset, label_names
from train.data.loader import Loader, build_loader
from train.data.video_dataset import ClipDataset
from train.engine.checkpoints import TrainState, load_latest, save_best, save_latest
from train.engine.distributed import DistContext, setup_distributed
from train.engine.evaluate import EvalResult, predict_logits, scores_from_logits
from train.engine.mixup import mixup_batch
from train.engine.objective import Objective, build_objective
from train.engine.optim import build_lr_schedule, build_optimizer
from train.engine.plots import plot_training_curves
from train.engine.precise_bn import recompute_bn_statistics

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


def _loaders(cfg: dict[str, Any], ctx: DistContext, batch_size: int
             ) -> tuple[ClipDataset, DistributedBatchSampler, Loader, Loader]:
    """(train set, its sampler, train loader, this rank's validation loader)."""
    workers = int(section(cfg, "data").get("num_workers", 0))
    train_set = build_dataset(cfg, "train", "train")
    sampler = ctx.train_sampler(train_set, batch_size)
    val_loader = build_loader(ctx.shard(build_dataset(cfg, "val", "uniform")), workers,
                              batch_size=batch_size)
    return train_set, sampler, build_loader(train_set, workers, batch_sampler=sampler), val_loader


def train(cfg: dict[str, Any], resume: bool = False, progress: bool = True) -> TrainResult:
    train_cfg = section(cfg, "train")
    seed = int(train_cfg.get("seed", 0))
    paddle.seed(seed)
    np.random.seed(seed)
    ctx = setup_distributed()
    progress = progress and ctx.is_main
    labels = label_names(cfg)
    num_seg = int(section(cfg, "preprocess")["num_seg"])
    batch_size = int(train_cfg.get("batch_size", 8))
    train_set, sampler, train_loader, val_loader = _loaders(cfg, ctx, batch_size)

    objective = build_objective(cfg, num_classes=len(labels))
    network = ctx.wrap(objective.network)
    epochs = int(train_cfg["epochs"])
    schedule = build_lr_schedule(section(cfg, "optimizer"), len(train_loader), epochs,
                                 batch_size * ctx.world_size)
    optimizer = build_optimizer(section(cfg, "optimizer"), objective.trainable_parameters(),
                                schedule)
    out_dir = Path(train_cfg.get("output_dir", "output/run"))
    state = (load_latest(out_dir, objective.network, optimizer) if resume else None) or TrainState()
    if resume:
        log.info("resuming from %s at epoch %d", out_dir, state.epoch)
    mixup_alpha = float(train_cfg.get("mixup_alpha", 0.0))
    precise_bn_batches = int(train_cfg.get("precise_bn_batches", 0))

    start = time.perf_counter()
    with _scalar_writer(out_dir / "vdl", ctx.is_main) as writer:
        for epoch in range(state.epoch, epochs):
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            paddle.seed(seed + epoch)  # dropout: the same draws after a resume
            loss = _train_one_epoch(network, objective, optimizer, schedule, train_loader,
                                    mixup_alpha, seed, writer, state,
                                    f"epoch {epoch + 1}/{epochs}", progress)
            recompute_bn_statistics(objective.student, train_loader, precise_bn_batches)
            ctx.average_bn_statistics(objective.student)
            result = _validate(objective.student, val_loader, ctx, len(labels), num_seg, progress)
            state.epoch = epoch + 1
            state.history.append({"epoch": epoch + 1, "loss": loss, "val_top1": result.top1,
                                  "val_clips": result.num_samples,
                                  "lr": float(optimizer.get_lr())})
            improved = result.top1 > state.best_top1
            if improved:
                state.best_top1, state.best_epoch = result.top1, state.epoch
            if ctx.is_main:
                writer.add_scalar("val/top1", result.top1, state.epoch)
                if improved:
                    save_best(out_dir, objective.student, state, objective.distilled)
                save_latest(out_dir, objective.network, optimizer, state)
                tqdm.write(f"epoch {state.epoch}/{epochs}: loss {loss:.4f}  val top-1 "
                           f"{result.top1:.4f}{'  (best, saved)' if improved else ''}")
    if ctx.is_main:
        plot_training_curves(state.history, out_dir / "training_curves.png")
    return TrainResult(state.best_top1, state.best_epoch, state.epoch,
                       time.perf_counter() - start, out_dir)


def _validate(model: paddle.nn.Layer, loader: Loader, ctx: DistContext, num_classes: int,
              num_seg: int, progress: bool) -> EvalResult:
    """Top-1 etc. over the whole validation list (each rank scores its shard)."""
    logits, labels = ctx.gather(*predict_logits(model, loader, num_seg, "val", progress))
    return scores_from_logits(logits, labels, num_classes)


def _train_one_epoch(network: paddle.nn.Layer, objective: Objective, optimizer, schedule,
                     loader: Loader, mixup_alpha: float, seed: int, writer,
                     state: TrainState, desc: str, progress: bool) -> float:
    network.train()
    losses = []
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress)
    tic = time.perf_counter()
    for clips, labels in bar:
        rng = np.random.default_rng([seed, state.global_step])
        clips, targets = mixup_batch(clips, labels, mixup_alpha, rng)
        loss, parts = objective.criterion(network(clips), targets)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        schedule.step()
        state.global_step += 1
        losses.append(float(loss))
        rate = clips.shape[0] / max(1e-9, time.perf_counter() - tic)
        tic = time.perf_counter()
        lr = float(optimizer.get_lr())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{lr:.4f}", clips_s=f"{rate:.1f}")
        writer.add_scalar("train/loss", losses[-1], state.global_step)
        writer.add_scalar("train/lr", lr, state.global_step)
        for name, value in parts.items():
            writer.add_scalar(f"train/{name}", value, state.global_step)
    return float(np.mean(losses)) if losses else float("nan")
