"""Resumable training checkpoints in an output directory.

Layout: `latest.pdparams` / `latest.pdopt` (model, optimiser + LR-scheduler state),
`latest.pdscaler` (float16 AMP's loss-scaler state, only in such runs) and `latest.json` (epoch
done, best score, history); `best.pdparams` + `best.json` for the best
validation top-1. A distillation run's `latest.*` hold both networks; its `best.pdparams` holds
the student alone, and `best_student.pdparams` the same weights in the layout of PaddleVideo's
released `*_student.pdparams` (keys `0.*` for the backbone, `1.*` for the head). Files are
written to a temporary name and renamed, so an interrupted save never leaves a truncated
checkpoint that a resume would trust.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import paddle

from train.models.checkpoint import LAYOUT_PREFIXES

STUDENT_CHECKPOINT = "best_student.pdparams"
SCALER_CHECKPOINT = "latest.pdscaler"
# Our names -> PaddleVideo's student-only names: the inverse of the loader's `dml_student` map.
_TO_PADDLEVIDEO_STUDENT = {ours: theirs for theirs, ours in LAYOUT_PREFIXES["dml_student"].items()}


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    global_step: int = 0
    best_top1: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    paddle.save(obj, str(tmp))
    os.replace(tmp, path)


def _atomic_write_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_latest(out_dir: Path, model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer,
                state: TrainState, scaler_state: Optional[dict[str, Any]] = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_save(model.state_dict(), out_dir / "latest.pdparams")
    _atomic_save(optimizer.state_dict(), out_dir / "latest.pdopt")
    if scaler_state:
        _atomic_save(scaler_state, out_dir / SCALER_CHECKPOINT)
    _atomic_write_json(asdict(state), out_dir / "latest.json")


def paddlevideo_student_state(student: paddle.nn.Layer) -> dict[str, paddle.Tensor]:
    """The student's state_dict under PaddleVideo's student-only key names (`0.*`, `1.*`)."""
    renamed = {}
    for key, tensor in student.state_dict().items():
        prefix = next((p for p in _TO_PADDLEVIDEO_STUDENT if key.startswith(p)), None)
        if prefix is None:
            raise ValueError(f"{key}: not a backbone/head parameter; no PaddleVideo name for it")
        renamed[_TO_PADDLEVIDEO_STUDENT[prefix] + key[len(prefix):]] = tensor
    return renamed


def save_best(out_dir: Path, model: paddle.nn.Layer, state: TrainState,
              distilled: bool = False) -> None:
    """`model` is the student of a distillation run (`distilled`), which adds its
    PaddleVideo-layout copy."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_save(model.state_dict(), out_dir / "best.pdparams")
    if distilled:
        _atomic_save(paddlevideo_student_state(model), out_dir / STUDENT_CHECKPOINT)
    _atomic_write_json({"epoch": state.best_epoch, "top1": state.best_top1}, out_dir / "best.json")


def load_latest(out_dir: Path, model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer
                ) -> Optional[TrainState]:
    """Restores model and optimiser from `out_dir/latest.*`; None when there is nothing to resume."""
    meta = out_dir / "latest.json"
    if not meta.is_file():
        return None
    model.set_state_dict(paddle.load(str(out_dir / "latest.pdparams")))
    optimizer.set_state_dict(paddle.load(str(out_dir / "latest.pdopt")))
    return TrainState(**json.loads(meta.read_text(encoding="utf-8")))


def load_scaler_state(out_dir: Path) -> dict[str, Any]:
    """The loss-scaler state `save_latest` kept in `out_dir` ({} when there is none)."""
    path = out_dir / SCALER_CHECKPOINT
    return paddle.load(str(path)) if path.is_file() else {}
