"""The training loop on a tiny real dataset: checkpoints, exact resume, the smoothed loss, and a
few optimisation steps of every model family."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import pytest

from tests.tiny_recipe import DEMO_RECIPE, REPO_ROOT, as_cli, tiny_overrides
from train.config import OptimizerConfig, load_config
from train.engine.losses import MixedTargets, smoothed_cross_entropy
from train.engine.objective import SupervisedCriterion
from train.engine.optim import build_lr_schedule, build_optimizer
from train.models import build_model

# Every family at its smallest: 2 clips of 4 frames of 32 px, no dropout noise.
FAMILIES = {"pptsm_v2_lcnet": {"width_mult": 0.25, "dropout": 0.0},
            "pptsm_resnet50": {"dropout": 0.0},
            "pptsm_mobilenet_v2": {},
            "pptsm_mobilenet_v3_large": {"dropout": 0.0}}


def _train(root: Path, out: Path, epochs: int, *extra: str) -> None:
    """The `python -m train.train` command line, one process per run as a user runs it: the
    optimiser state is keyed by Paddle's per-process parameter names. Mixup is on, so resuming
    must also reproduce its random draws."""
    command = [sys.executable, "-m", "train.train", "-c", str(DEMO_RECIPE), "--no-progress",
               *as_cli(tiny_overrides(root, out, epochs, "train.mixup_alpha=0.2")), *extra]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def _assert_same_state(resumed: Any, uninterrupted: Any, where: str = "") -> None:
    """Nested dicts of tensors / numbers are equal, key for key."""
    if isinstance(uninterrupted, dict):
        assert sorted(resumed) == sorted(uninterrupted), where
        for key in uninterrupted:
            _assert_same_state(resumed[key], uninterrupted[key], f"{where}/{key}")
    elif isinstance(uninterrupted, paddle.Tensor):
        np.testing.assert_array_equal(resumed.numpy(), uninterrupted.numpy(), err_msg=where)
    else:
        assert resumed == uninterrupted, where


def test_the_r50_synthetic_recipe_trains_the_full_resnet50(quick_dataset: Path,
                                                           tmp_path: Path) -> None:
    """train/configs/demo/pptsm_r50_synthetic.yaml (the trained R50 the precision comparisons
    use) runs as documented, at 32 px for one epoch, and trains the unshrunk ResNet50-vd."""
    recipe = REPO_ROOT / "train" / "configs" / "demo" / "pptsm_r50_synthetic.yaml"
    out = tmp_path / "r50"
    overrides = [f"data.root={quick_dataset}", f"train.output_dir={out}", "train.epochs=1",
                 "preprocess.scale_size=36", "preprocess.crop_size=32", "train.batch_size=4",
                 "train.processes=1", "train.precise_bn.num_iters=2"]
    done = subprocess.run([sys.executable, "-m", "train.train", "-c", str(recipe),
                           "--no-progress", *as_cli(overrides)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cfg = load_config(recipe)
    state = paddle.load(str(out / "best.pdparams"))
    full = build_model("pptsm_resnet50", num_classes=8, num_seg=cfg.model.options["num_seg"])
    assert sorted(state) == sorted(full.state_dict())
    assert cfg.preprocess.num_seg == cfg.model.options["num_seg"]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_training_writes_checkpoints_and_resumes(quick_dataset: Path, tmp_path: Path,
                                                 accumulate: int) -> None:
    """Also with gradient accumulation: 2 batches per optimiser step halve the steps, and the
    LR schedule (one warm-up epoch in the demo recipe) counts optimiser steps."""
    out = tmp_path / "run"
    extra = ("-o", f"train.accumulate_steps={accumulate}")
    _train(quick_dataset, out, 1, *extra)
    state = json.loads((out / "latest.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert math.isfinite(state["history"][0]["loss"])
    assert (out / "best.pdparams").is_file() and (out / "training_curves.png").is_file()
    scheduler = paddle.load(str(out / "latest.pdopt"))["LR_Scheduler"]
    assert scheduler["last_epoch"] == state["global_step"] == (16 // 4) // accumulate
    # Warm-up over exactly one epoch: the step that ends it reaches the recipe's peak LR.
    assert scheduler["last_lr"] == pytest.approx(load_config(DEMO_RECIPE).optimizer.lr)

    _train(quick_dataset, out, 2, "--resume", *extra)
    state = json.loads((out / "latest.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    # 16 quick training clips, batch 4, drop_last; `accumulate` batches per optimiser step.
    assert state["global_step"] == 2 * (16 // 4) // accumulate

    # The resumed run ends exactly where an uninterrupted 2-epoch run ends: same weights, same
    # optimiser moments and LR-scheduler state, same history.
    straight = tmp_path / "straight"
    _train(quick_dataset, straight, 2, *extra)
    assert json.loads((straight / "latest.json").read_text()) == state
    for name in ("latest.pdparams", "latest.pdopt"):
        _assert_same_state(paddle.load(str(out / name)), paddle.load(str(straight / name)), name)


def test_smoothed_cross_entropy_matches_hand_computation() -> None:
    logits = np.array([[2.0, 0.0, -1.0]], dtype=np.float32)
    log_probs = logits[0] - np.log(np.exp(logits[0]).sum())
    target = np.array([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
    expected = -(target * log_probs).sum()
    got = smoothed_cross_entropy(paddle.to_tensor(logits), paddle.to_tensor([0]), smoothing=0.1)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    plain = smoothed_cross_entropy(paddle.to_tensor(logits), paddle.to_tensor([0]), smoothing=0.0)
    assert float(plain) == pytest.approx(-log_probs[0], rel=1e-5)


@pytest.mark.parametrize("builder", sorted(FAMILIES))
def test_a_few_steps_decrease_the_loss_for_every_family(builder: str) -> None:
    """The recipe's optimiser and loss, 6 steps on one fixed batch: the loss must go down."""
    paddle.seed(0)
    model = build_model(builder, num_classes=4, num_seg=4, **FAMILIES[builder])
    clips = paddle.to_tensor(np.random.RandomState(0).randn(2, 4, 3, 32, 32).astype("float32"))
    targets = MixedTargets.unmixed(paddle.to_tensor([0, 3]))
    opt_cfg = OptimizerConfig(name="adamw", lr=0.002, schedule="warmup_cosine")
    schedule = build_lr_schedule(opt_cfg, steps_per_epoch=6, epochs=1, batch_size=4)
    optimizer = build_optimizer(opt_cfg, model.parameters(), schedule)
    criterion = SupervisedCriterion(smoothing=0.1)
    losses = []
    for _ in range(6):
        loss, _parts = criterion(model(clips), targets)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        schedule.step()
        losses.append(float(loss))
    assert all(math.isfinite(value) for value in losses), losses
    assert np.mean(losses[-2:]) < losses[0], losses
