"""The training loop: per-iteration LR schedule, progress bar, per-epoch validation,
best-checkpoint tracking, exact resume and VisualDL scalars."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle.io import DataLoader
from tqdm import tqdm

from train.config import section
from train.data.list_file import read_label_list, read_list_file
from train.data.train_transforms import TrainAugment
from train.data.video_dataset import VideoClipDataset
from train.engine.checkpoints import TrainState, load_latest, save_best, save_latest
from train.engine.evaluate import evaluate
from train.engine.losses import smoothed_cross_entropy
from train.engine.optim import build_lr_schedule, build_optimizer, zero_init_classifier
from train.engine.plots import plot_training_curves
from train.engine.precise_bn import recompute_bn_statistics
from train.recipe import build_model_from_config, preprocess_spec_from_config

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_top1: float
    best_epoch: int
    epochs: int
    seconds: float
    output_dir: Path


def _loader(dataset: VideoClipDataset, batch_size: int, shuffle: bool, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle,
                      num_workers=workers, use_shared_memory=False)


def train(cfg: dict[str, Any], resume: bool = False, progress: bool = True) -> TrainResult:
    data_cfg, train_cfg = section(cfg, "data"), section(cfg, "train")
    seed = int(train_cfg.get("seed", 0))
    paddle.seed(seed)
    np.random.seed(seed)
    root = Path(data_cfg["root"])
    labels = read_label_list(root / data_cfg.get("label_list", "label_list.txt"))
    spec = preprocess_spec_from_config(cfg)
    augment = TrainAugment(**cfg.get("augment", {}))
    train_set = VideoClipDataset(read_list_file(root / data_cfg["train_list"], root), spec, "train",
                                 augment=augment, seed=seed)
    val_set = VideoClipDataset(read_list_file(root / data_cfg["val_list"], root), spec, "uniform")
    batch_size = int(train_cfg.get("batch_size", 8))
    workers = int(data_cfg.get("num_workers", 0))
    train_loader = _loader(train_set, batch_size, True, workers)
    val_loader = _loader(val_set, batch_size, False, workers)

    model = build_model_from_config(cfg, num_classes=len(labels))
    if train_cfg.get("zero_init_classifier"):
        zero_init_classifier(model)
    epochs = int(train_cfg["epochs"])
    schedule = build_lr_schedule(section(cfg, "optimizer"), len(train_loader), epochs, batch_size)
    optimizer = build_optimizer(section(cfg, "optimizer"), model.parameters(), schedule)
    out_dir = Path(train_cfg.get("output_dir", "output/run"))
    state = (load_latest(out_dir, model, optimizer) if resume else None) or TrainState()
    if resume:
        log.info("resuming from %s at epoch %d", out_dir, state.epoch)
    smoothing = float(train_cfg.get("label_smoothing", 0.0))

    from visualdl import LogWriter  # imported late: heavy, and only the trainer needs it

    start = time.perf_counter()
    with LogWriter(logdir=str(out_dir / "vdl")) as writer:
        for epoch in range(state.epoch, epochs):
            train_set.set_epoch(epoch)
            loss = _train_one_epoch(model, optimizer, schedule, train_loader, smoothing, writer,
                                    state, f"epoch {epoch + 1}/{epochs}", progress)
            recompute_bn_statistics(model, train_loader, int(train_cfg.get("precise_bn_batches", 0)))
            result = evaluate(model, val_loader, len(labels), desc="val", progress=progress)
            state.epoch = epoch + 1
            state.history.append({"epoch": epoch + 1, "loss": loss, "val_top1": result.top1,
                                  "lr": float(optimizer.get_lr())})
            writer.add_scalar("val/top1", result.top1, state.epoch)
            improved = result.top1 > state.best_top1
            if improved:
                state.best_top1, state.best_epoch = result.top1, state.epoch
                save_best(out_dir, model, state)
            save_latest(out_dir, model, optimizer, state)
            tqdm.write(f"epoch {state.epoch}/{epochs}: loss {loss:.4f}  val top-1 {result.top1:.4f}"
                       f"{'  (best, saved)' if improved else ''}")
    plot_training_curves(state.history, out_dir / "training_curves.png")
    return TrainResult(state.best_top1, state.best_epoch, state.epoch,
                       time.perf_counter() - start, out_dir)


def _train_one_epoch(model, optimizer, schedule, loader, smoothing: float, writer,
                     state: TrainState, desc: str, progress: bool) -> float:
    model.train()
    losses = []
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress)
    tic = time.perf_counter()
    for clips, labels in bar:
        logits = model(clips)
        loss = smoothed_cross_entropy(logits, labels, smoothing)
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
    return float(np.mean(losses)) if losses else float("nan")
