"""Shared test fixtures: the repo on sys.path, tiny synthetic datasets (video and frames) and
the read-only PaddleVideo reference oracle.

The oracle (manifests, reference logits and activations, the deterministic-weight rule) lives
outside the repo; its location can be overridden with PPTSM_REFERENCE_DIR. Tests that need it skip
with the reason when it is absent, so the suite still runs on a bare clone.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import paddle
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.reference_paths import REFERENCE_DIR  # noqa: E402


@pytest.fixture(scope="session")
def quick_dataset(tmp_path_factory) -> Path:
    """The generator's `--quick` synthetic set (16 train, 8 val, 8 test clips; ~5 s to make)."""
    root = tmp_path_factory.mktemp("synthetic") / "data"
    subprocess.run([sys.executable, "-m", "train.data.synthetic", "--out", str(root), "--quick"],
                   cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)
    return root


@pytest.fixture(scope="session")
def quick_frames(quick_dataset: Path) -> Path:
    """`quick_dataset` with its train and val clips extracted to `rawframes/` (the
    `make frames` command), giving `train_frames.list` and `val_frames.list`."""
    if not (quick_dataset / "val_frames.list").is_file():
        subprocess.run([sys.executable, "-m", "train.extract_frames", "--root", str(quick_dataset),
                        "--out", str(quick_dataset / "rawframes"), "--no-progress",
                        "--list", str(quick_dataset / "train.list"),
                        "--list", str(quick_dataset / "val.list")],
                       cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)
    return quick_dataset


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference oracle folder (env PPTSM_REFERENCE_DIR or ../shared/reference)."""
    path = REFERENCE_DIR
    if not (path / "manifests").is_dir():
        pytest.skip(f"reference oracle not found at {path} (set PPTSM_REFERENCE_DIR)")
    return path


@pytest.fixture(scope="session")
def det_weights(reference_dir: Path) -> ModuleType:
    """The oracle's `det_weights` module (det_state_dict, det_input, det_value)."""
    source = reference_dir / "det_weights.py"
    if not source.is_file():
        pytest.skip(f"{source} not found")
    spec = importlib.util.spec_from_file_location("det_weights", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_manifest(reference_dir: Path) -> Callable[[str], dict[str, Any]]:
    """Returns a reader for `manifests/<model id>.json`."""
    def read(model_id: str) -> dict[str, Any]:
        return json.loads((reference_dir / "manifests" / f"{model_id}.json").read_text())
    return read


def calibrate_batch_norm_(model: paddle.nn.Layer, clip: paddle.Tensor) -> None:
    """Sets every BN's running stats to the statistics of one forward pass on `clip`.

    With random weights the signal of a deep mobile net fades to ~1e-6 of the input's influence,
    so comparisons of two implementations would pass even if they ignored the input. Calibrated
    BNs keep every layer's output at unit scale, making such comparisons meaningful.
    """
    norms = [layer for layer in model.sublayers() if isinstance(layer, paddle.nn.BatchNorm2D)]
    momenta = [norm._momentum for norm in norms]
    was_training = model.training
    for norm in norms:
        norm._momentum = 0.0  # running = batch statistics
    model.train()
    with paddle.no_grad():
        model(clip)
    for norm, momentum in zip(norms, momenta):
        norm._momentum = momentum
    if not was_training:
        model.eval()


@pytest.fixture(scope="session")
def calibrate_bn() -> Callable[[paddle.nn.Layer, paddle.Tensor], None]:
    return calibrate_batch_norm_
