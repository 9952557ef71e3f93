"""The training loop on a tiny real dataset: checkpoints, resume, and the smoothed loss."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from train.engine.losses import smoothed_cross_entropy

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO_ROOT / "train" / "configs" / "demo" / "pptsmv2_lcnet_synthetic_demo.yaml"


@pytest.fixture(scope="module")
def quick_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "data"
    subprocess.run([sys.executable, "-m", "train.data.synthetic", "--out", str(root), "--quick"],
                   cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)
    return root


def _train(root: Path, out: Path, epochs: int, *extra: str) -> None:
    """The `python -m train.train` command line, one process per run as a user runs it: the
    optimiser state is keyed by Paddle's per-process parameter names."""
    overrides = [f"data.root={root}", f"train.output_dir={out}", f"train.epochs={epochs}",
                 "train.batch_size=4", "model.width_mult=0.25", "data.num_workers=0",
                 "train.precise_bn_batches=2"]
    command = [sys.executable, "-m", "train.train", "-c", str(DEMO_RECIPE), "--no-progress",
               *[arg for o in overrides for arg in ("-o", o)], *extra]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def test_training_writes_checkpoints_and_resumes(quick_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _train(quick_dataset, out, 1)
    state = json.loads((out / "latest.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert math.isfinite(state["history"][0]["loss"])
    assert (out / "best.pdparams").is_file() and (out / "training_curves.png").is_file()

    _train(quick_dataset, out, 2, "--resume")
    state = json.loads((out / "latest.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    assert state["global_step"] == 2 * (16 // 4)  # 16 quick training clips, batch 4, drop_last


def test_smoothed_cross_entropy_matches_hand_computation() -> None:
    logits = np.array([[2.0, 0.0, -1.0]], dtype=np.float32)
    log_probs = logits[0] - np.log(np.exp(logits[0]).sum())
    target = np.array([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
    expected = -(target * log_probs).sum()
    got = smoothed_cross_entropy(paddle.to_tensor(logits), paddle.to_tensor([0]), smoothing=0.1)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    plain = smoothed_cross_entropy(paddle.to_tensor(logits), paddle.to_tensor([0]), smoothing=0.0)
    assert float(plain) == pytest.approx(-log_probs[0], rel=1e-5)
