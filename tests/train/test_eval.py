"""`python -m train.eval` (`make eval`): uniform and dense evaluation of a fixed checkpoint on a
tiny synthetic list, checked clip by clip against the service's own path (serving.tools.offline:
decode, sample, views) run on the same network, plus the report files."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import paddle
import pytest

from serving.tools.offline import DecodeSettings, network_input
from serving.core.stages import ranked_classes
from tests.tiny_recipe import DEMO_RECIPE, TINY_OVERRIDES
from train import eval as eval_cli
from train.config import load_config
from train.data.datasets import build_dataset
from serving.core.list_file import read_list_file
from train.engine.checkpoints import paddlevideo_student_state
from train.recipe import build_model_from_config

CLIPS = 3  # dense evaluation runs 30 views per clip: keep the list short


@pytest.fixture(scope="module")
def fixed_checkpoint(quick_dataset: Path, tmp_path_factory,
                     calibrate_bn: Callable) -> tuple[Path, list[str], paddle.nn.Layer]:
    """A tiny PP-TSMv2 with input-sensitive weights (BN calibrated on real clips), saved as a
    checkpoint; (checkpoint, the recipe overrides that evaluate it, the network)."""
    folder = tmp_path_factory.mktemp("eval")
    short_list = folder / "short.list"
    short_list.write_text("".join(line + "\n" for line in
                                  (quick_dataset / "val.list").read_text().splitlines()[:CLIPS]))
    overrides = [f"data.root={quick_dataset}", f"data.test_list={short_list}", *TINY_OVERRIDES]
    cfg = load_config(DEMO_RECIPE, overrides)
    paddle.seed(3)
    model = build_model_from_config(cfg, num_classes=8)
    train_set = build_dataset(cfg, "train", "uniform")
    calibrate_bn(model, paddle.to_tensor(np.stack([train_set[i][0] for i in range(8)])))
    model.eval()
    checkpoint = folder / "fixed.pdparams"
    paddle.save(model.state_dict(), str(checkpoint))
    return checkpoint, overrides, model


def _service_predictions(model: paddle.nn.Layer, overrides: list[str],
                         mode: str) -> list[tuple[int, float]]:
    """(top-1 class, its probability) of each clip the way the service computes them."""
    cfg = load_config(DEMO_RECIPE, overrides)
    spec = cfg.preprocess
    samples = read_list_file(cfg.data.test_list, cfg.data.root)
    predictions = []
    with paddle.no_grad():
        for sample in samples:
            views = network_input(sample.path.read_bytes(), spec, mode, DecodeSettings())
            (class_id, score), = ranked_classes(model(paddle.to_tensor(views)).numpy(), 1)
            predictions.append((class_id, score))
    return predictions


@pytest.mark.parametrize("mode", ["uniform", "dense"])
def test_eval_reports_the_services_top1(fixed_checkpoint, tmp_path: Path, mode: str) -> None:
    checkpoint, overrides, model = fixed_checkpoint
    out = tmp_path / "report"
    args = ["-c", str(DEMO_RECIPE), "-k", str(checkpoint), "--mode", mode, "--out", str(out),
            "--no-progress"]
    assert eval_cli.main(args + [arg for o in overrides for arg in ("-o", o)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (out / "confusion.png").stat().st_size > 0

    expected = _service_predictions(model, overrides, mode)
    labels = [p["label"] for p in report["predictions"]]
    assert [p["predicted"] for p in report["predictions"]] == [c for c, _ in expected]
    assert [p["score"] for p in report["predictions"]] == pytest.approx(
        [score for _, score in expected], rel=1e-4)
    assert len({round(score, 5) for _, score in expected}) == CLIPS  # input-sensitive network
    hits = [c == label for (c, _), label in zip(expected, labels)]
    assert report["top1"] == pytest.approx(np.mean(hits))
    assert report["num_samples"] == CLIPS and report["mode"] == mode
    assert np.asarray(report["confusion"]).sum() == CLIPS
    assert report["top5"] >= report["top1"]
    scored = [name for name, value in report["per_class_top1"].items() if value is not None]
    assert len(scored) == len(set(labels))


def test_eval_reads_a_paddlevideo_student_checkpoint(fixed_checkpoint, tmp_path: Path) -> None:
    """A DML run's `best_student.pdparams` (keys `0.*`) scores exactly like the plain file."""
    checkpoint, overrides, model = fixed_checkpoint
    student_file = tmp_path / "student.pdparams"
    paddle.save(paddlevideo_student_state(model), str(student_file))
    reports = []
    for path in (checkpoint, student_file):
        out = tmp_path / path.stem
        args = ["-c", str(DEMO_RECIPE), "-k", str(path), "--out", str(out), "--no-progress"]
        assert eval_cli.main(args + [arg for o in overrides for arg in ("-o", o)]) == 0
        reports.append(json.loads((out / "report.json").read_text()))
    assert reports[0]["predictions"] == reports[1]["predictions"]


def test_eval_names_a_missing_checkpoint(quick_dataset: Path, tmp_path: Path, capsys) -> None:
    code = eval_cli.main(["-c", str(DEMO_RECIPE), "-k", str(tmp_path / "none.pdparams"),
                          "-o", f"data.root={quick_dataset}"])
    assert code == 2 and "none.pdparams" in capsys.readouterr().err
