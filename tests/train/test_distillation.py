"""KD and DML distillation: the losses against hand computation, the models pair (frozen or
mutual), a tiny training that lowers the loss, and the student-only checkpoint in PaddleVideo's
layout, from a real training run of the DML recipe."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import paddle
import pytest

from tests.tiny_recipe import REPO_ROOT, tiny_overrides
from train.config import ConfigError, LossTerm, OptimizerConfig, load_config, parse_loss_terms
from train.engine.checkpoints import STUDENT_CHECKPOINT, paddlevideo_student_state
from train.engine.distill import DistillationCriterion, DistillationPair
from train.engine.losses import MixedTargets, dml_kl_loss, kd_kl_loss
from train.engine.optim import build_lr_schedule, build_optimizer
from train.engine.trainer import train
from train.models import build_model, list_models
from train.models.checkpoint import load_pdparams, load_state_dict_by_name
from train.recipe import build_model_from_config

V2_CONFIGS = REPO_ROOT / "train" / "configs" / "pptsm" / "v2"
DML_8F = V2_CONFIGS / "pptsm_lcnet_k400_8frames_uniform_dml_distillation.yaml"
DML_16F = V2_CONFIGS / "pptsm_lcnet_k400_16frames_uniform_dml_distillation.yaml"
DISTILLATION_RECIPES = [path for path in sorted((REPO_ROOT / "train" / "configs").rglob("*.yaml"))
                        if "data" not in path.parts and load_config(path).distillation]
STUDENT_LOGITS = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=np.float32)
TEACHER_LOGITS = np.array([[2.0, 1.0, -0.5], [0.5, 0.5, 2.0]], dtype=np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _tensors() -> tuple[paddle.Tensor, paddle.Tensor]:
    return paddle.to_tensor(STUDENT_LOGITS), paddle.to_tensor(TEACHER_LOGITS)


# --- losses on fixed tensors ----------------------------------------------------------------------

def test_kd_loss_is_temperature_squared_kl_of_softened_predictions() -> None:
    t = 4.0
    p_teacher = _softmax(TEACHER_LOGITS.astype(np.float64) / t)
    p_student = _softmax(STUDENT_LOGITS.astype(np.float64) / t)
    expected = t * t * (p_teacher * np.log(p_teacher / p_student)).sum(axis=1).mean()
    assert float(kd_kl_loss(*_tensors(), temperature=t)) == pytest.approx(expected, rel=1e-5)


def test_kd_loss_sends_no_gradient_to_the_teacher() -> None:
    student, teacher = _tensors()
    student.stop_gradient = teacher.stop_gradient = False
    kd_kl_loss(student, teacher, 2.0).backward()
    assert student.grad is not None and teacher.grad is None


def test_dml_loss_is_paddleclas_symmetric_kl() -> None:
    """PaddleClas DMLLoss: mean over N x C elements of C * (t log(t/x) + x log(x/t)) / 2."""
    x, t, eps = _softmax(STUDENT_LOGITS.astype(np.float64)), _softmax(TEACHER_LOGITS), 1e-12
    classes = x.shape[1]
    elementwise = (t * np.log((t + eps) / (x + eps)) * classes
                   + x * np.log((x + eps) / (t + eps)) * classes) / 2
    assert float(dml_kl_loss(*_tensors())) == pytest.approx(elementwise.mean(), rel=1e-5)


def test_criterion_sums_the_weighted_terms_and_reports_each() -> None:
    student, teacher = _tensors()
    labels = np.array([1, 2])
    terms = [LossTerm("cross_entropy", ("student", "ground_truth"), 0.5),
             LossTerm("kd_kl", ("student", "teacher"), 0.5, temperature=2.0)]
    loss, parts = DistillationCriterion(terms)({"student": student, "teacher": teacher},
                                               MixedTargets.unmixed(paddle.to_tensor(labels)))
    hard = -np.log(_softmax(STUDENT_LOGITS.astype(np.float64))[[0, 1], labels]).mean()
    soft = float(kd_kl_loss(student, teacher, 2.0))
    assert parts == pytest.approx({"cross_entropy/student": hard, "kd_kl/student-teacher": soft},
                                  rel=1e-5)
    assert float(loss) == pytest.approx(0.5 * hard + 0.5 * soft, rel=1e-5)


@pytest.mark.parametrize("mode,losses,message", [
    ("kd", [{"name": "cross_entropy", "pair": ["teacher", "ground_truth"]}], "frozen"),
    ("kd", [{"name": "dml_kl", "pair": ["student", "teacher"]}], "mode dml"),
    ("dml", [{"name": "kl", "pair": ["student", "teacher"]}], "name must be one of"),
    ("dml", [{"name": "kd_kl", "pair": ["student", "ground_truth"]}], "pairs"),
    ("dml", [], "non-empty"),
])
def test_bad_loss_lists_are_refused(mode: str, losses: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_loss_terms(losses, mode)


@pytest.mark.parametrize("recipe", DISTILLATION_RECIPES, ids=lambda path: path.name)
def test_distillation_recipes_are_valid(recipe: Path) -> None:
    cfg = load_config(recipe)
    section = cfg.distillation
    terms = section.losses
    assert section.teacher.name in list_models()
    assert section.teacher.options["num_seg"] == cfg.model.options["num_seg"]
    assert any(term.pair == ("student", "teacher") for term in terms)


# --- the models pair ------------------------------------------------------------------------------

def _tiny(builder: str, **kwargs) -> paddle.nn.Layer:
    return build_model(builder, num_classes=4, num_seg=4, **kwargs)


def _steps(pair: DistillationPair, criterion: DistillationCriterion, count: int) -> list[float]:
    """`count` AdamW steps of `pair` on one fixed batch; the losses."""
    clips = paddle.to_tensor(np.random.RandomState(0).randn(2, 4, 3, 32, 32).astype("float32"))
    targets = MixedTargets.unmixed(paddle.to_tensor([0, 3]))
    opt_cfg = OptimizerConfig(name="adamw", lr=0.0005)
    schedule = build_lr_schedule(opt_cfg, steps_per_epoch=count, epochs=1, batch_size=2)
    optimizer = build_optimizer(opt_cfg, [p for p in pair.parameters() if not p.stop_gradient],
                                schedule)
    pair.train()
    losses = []
    for _ in range(count):
        loss, _parts = criterion(pair(clips), targets)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(loss))
    return losses


def test_kd_pair_trains_the_student_against_a_frozen_teacher() -> None:
    paddle.seed(0)
    teacher = _tiny("pptsm_mobilenet_v2")
    before = {k: v.numpy().copy() for k, v in teacher.state_dict().items()}
    pair = DistillationPair(_tiny("pptsm_v2_lcnet", width_mult=0.25, dropout=0.0), teacher,
                            freeze_teacher=True)
    pair.train()
    assert pair.student.training and not teacher.training
    assert all(not layer.training for layer in teacher.sublayers())
    criterion = DistillationCriterion(parse_loss_terms(
        [{"name": "cross_entropy", "pair": ["student", "ground_truth"], "weight": 0.5},
         {"name": "kd_kl", "pair": ["student", "teacher"], "weight": 0.5, "temperature": 4.0}],
        "kd"))
    losses = _steps(pair, criterion, 6)
    assert np.mean(losses[-2:]) < losses[0], losses
    for key, value in teacher.state_dict().items():  # BN statistics included: eval mode
        np.testing.assert_array_equal(value.numpy(), before[key], err_msg=key)


def test_dml_pair_trains_both_networks() -> None:
    paddle.seed(0)
    student = _tiny("pptsm_v2_lcnet", width_mult=0.25, dropout=0.0, use_temporal_att=True)
    teacher = _tiny("pptsm_mobilenet_v2")
    teacher_before = teacher.backbone.out.weight.numpy().copy()
    pair = DistillationPair(student, teacher, freeze_teacher=False)
    terms = parse_loss_terms([{"name": "cross_entropy", "pair": ["student", "ground_truth"]},
                              {"name": "cross_entropy", "pair": ["teacher", "ground_truth"]},
                              {"name": "dml_kl", "pair": ["student", "teacher"]}], "dml")
    losses = _steps(pair, DistillationCriterion(terms), 6)
    assert np.mean(losses[-2:]) < losses[0], losses
    assert not np.array_equal(teacher.backbone.out.weight.numpy(), teacher_before)


# --- checkpoints ----------------------------------------------------------------------------------

def test_student_checkpoint_has_the_released_dml_student_layout(load_manifest: Callable) -> None:
    manifest = load_manifest("pptsmv2_lcnet_16f_lta_dml_student")
    student = build_model_from_config(load_config(DML_16F), num_classes=400)
    layout = [[key, list(tensor.shape)]
              for key, tensor in paddlevideo_student_state(student).items()]
    assert layout == [[key, shape] for key, shape, _dtype in manifest["state_dict"]]


def test_dml_recipe_trains_and_keeps_the_student_alone(quick_dataset: Path,
                                                       tmp_path: Path) -> None:
    """One epoch of the 8-frame DML recipe (shrunk) through the trainer."""
    out = tmp_path / "dml"
    cfg = load_config(DML_8F, tiny_overrides(
        quick_dataset, out, 1, "data.format=video", "data.train_list=train.list",
        "data.val_list=val.list", "data.label_list=label_list.txt", "train.pretrained=null",
        "distillation.teacher.pretrained=null", "distillation.teacher.num_seg=4"))
    result = train(cfg, progress=False)
    assert result.epochs == 1
    student = build_model_from_config(cfg, num_classes=8)
    best = load_pdparams(out / "best.pdparams")
    assert sorted(best) == sorted(student.state_dict())  # the student alone, our layout
    released = load_pdparams(out / STUDENT_CHECKPOINT)
    assert all(key.startswith("0.") for key in released)  # no head parameters in PP-TSMv2
    report = load_state_dict_by_name(student, out / STUDENT_CHECKPOINT)
    assert report.layout == "dml_student" and report.complete
    for key, tensor in student.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), best[key], err_msg=key)
    latest = paddle.load(str(out / "latest.pdparams"))
    assert any(k.startswith("teacher.") for k in latest)  # resuming needs both networks
    history = json.loads((out / "latest.json").read_text())["history"]
    assert np.isfinite(history[0]["loss"])
