"""Checkpoint -> `model_repo/<name>/`: the inference program, serving confs, labels and the
metadata file that carries every preprocessing fact serving must agree on.

Format choice (see ../shared/reference/EXPORT_FACTS.md): the legacy `.pdmodel` program is the
default because it is the one format every model family runs with oneDNN on Paddle 3.3.1 and the
one Paddle Serving 0.9's tooling recognises; PIR `.json` is written when asked for, or when the
legacy export fails, and the reason is recorded in the metadata. The export is built in a
temporary folder and verified (Paddle Inference output vs the dygraph model) before it replaces
the previous export (serving.core.model_folder, the one writer of model folders), so a failed
export never destroys a working model.

Command line: `python -m train.export -c RECIPE.yaml -k CKPT.pdparams -n NAME`.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import logging
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import paddle
from paddle.static import InputSpec

from serving.core.errors import PPTSMError
from serving.core.metadata import InferenceSpec, ModelMeta, PreprocessSpec
from serving.core.model_folder import SERVER_SUBDIR, StagedModelFolder
from serving.core.predictor import Predictor, PredictorSettings
from train.config import Recipe
from train.models.layers import fuse_reparam_

log = logging.getLogger(__name__)

INPUT_NAME = "data_batch_0"  # PaddleVideo's exported input name; its clients send this key
PARITY_ATOL = 1e-4  # what the tests hold their small models to
PARITY_RTOL = 1e-5
_VERSIONED_PACKAGES = ("paddlepaddle", "paddle-serving-server", "numpy", "pillow", "decord",
                       "opencv-python-headless")


def parity_bound(reference: np.ndarray) -> float:
    """The largest acceptable max-abs difference from `reference` outputs: PARITY_ATOL plus
    PARITY_RTOL of their largest magnitude. Float32 rounding through ~30 layers (oneDNN's kernel
    order, fused re-parameterised branches) grows with the logits: a trained demo model's logits
    on the noise probe reach ~70 and differ by ~1.5e-4 between correct runtimes."""
    return PARITY_ATOL + PARITY_RTOL * float(np.abs(reference).max())


class ExportError(PPTSMError, RuntimeError):
    """The export could not be written or did not reproduce the model's output."""


def package_versions() -> dict[str, str]:
    """Versions of the packages that produced an export, recorded in its metadata."""
    versions = {}
    for pkg in _VERSIONED_PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _save_program(model: paddle.nn.Layer, prefix: Path, input_spec: InputSpec, fmt: str) -> None:
    static = paddle.jit.to_static(model, input_spec=[input_spec], full_graph=True)
    if fmt == "pdmodel":
        with paddle.pir_utils.DygraphOldIrGuard():
            paddle.jit.save(static, str(prefix))
    else:
        paddle.jit.save(static, str(prefix))


def _write_program(model: paddle.nn.Layer, server_dir: Path, stem: str, input_spec: InputSpec,
                   fmt: str) -> tuple[str, str]:
    """Writes the program; returns (format written, why)."""
    if fmt in ("auto", "pdmodel"):
        try:
            _save_program(model, server_dir / stem, input_spec, "pdmodel")
            return "pdmodel", ("legacy ProgramDesc: runs with oneDNN for every model family on "
                               "Paddle 3.3.1 and allows memory optimisation")
        except Exception as exc:  # noqa: BLE001 - any tracing failure means: try the other format
            if fmt == "pdmodel":
                raise ExportError(f"legacy .pdmodel export failed: {exc}") from exc
            log.warning("legacy export failed (%s); writing PIR .json instead", exc)
            for stale in server_dir.glob(stem + ".*"):
                stale.unlink()
            reason = f"PIR .json because the legacy export failed: {str(exc).splitlines()[0][:200]}"
    else:
        reason = "PIR .json requested"
    _save_program(model, server_dir / stem, input_spec, "json")
    return "json", reason


def export_model(model: paddle.nn.Layer, out_dir: str | Path, *, name: str, version: str,
                 labels: list[str], preprocess: PreprocessSpec, architecture: str,
                 source: Optional[dict[str, Any]] = None,
                 evaluation: Optional[dict[str, Any]] = None, fmt: str = "auto") -> ModelMeta:
    """Exports `model` (already holding its weights) to `out_dir` and verifies it."""
    if fmt not in ("auto", "pdmodel", "json"):
        raise ExportError(f"format: 'auto', 'pdmodel' or 'json', got {fmt!r}")
    staged = StagedModelFolder.begin(out_dir, "export")
    started = time.perf_counter()

    model.eval()
    fuse_reparam_(model)  # multi-branch depthwise convs become one conv, as PaddleVideo exports
    size, num_seg = preprocess.crop_size, preprocess.num_seg
    input_spec = InputSpec([None, num_seg, 3, size, size], "float32", name=INPUT_NAME)
    stem = getattr(model, "export_name", "ppTSM")
    written, reason = _write_program(model, staged.server_dir, stem, input_spec, fmt)
    suffix = ".pdmodel" if written == "pdmodel" else ".json"

    probe = np.random.RandomState(0).standard_normal((2, num_seg, 3, size, size)).astype("float32")
    with paddle.no_grad():
        expected = model(paddle.to_tensor(probe)).numpy()
    meta = ModelMeta(
        name=name, version=version, architecture=architecture, labels=tuple(labels),
        preprocess=preprocess,
        inference=InferenceSpec(
            format=written, model_file=f"{SERVER_SUBDIR}/{stem}{suffix}",
            params_file=f"{SERVER_SUBDIR}/{stem}.pdiparams", input_name=INPUT_NAME,
            input_shape=(-1, num_seg, 3, size, size), output_name="",
            output_shape=(-1, int(expected.shape[1])), format_reason=reason),
        source=dict(source or {}), evaluation=dict(evaluation or {}),
        exported_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), package_versions=package_versions())
    staged.save_meta(meta)
    predictor = Predictor.from_model_dir(staged.path, PredictorSettings())
    got = predictor.predict(probe)
    diff = float(np.abs(got - expected).max())
    bound = parity_bound(expected)
    if not diff <= bound:
        raise ExportError(f"exported program differs from the model by {diff:.2e} "
                          f"(tolerance {bound:.1e}); the export in {staged.path} was kept "
                          "for inspection and the previous model left in place")
    meta = with_output_name(meta, predictor.output_name, {
        "export_parity_max_abs_diff": diff,
        "export_seconds": round(time.perf_counter() - started, 2)})
    staged.publish(meta)
    return meta


def with_output_name(meta: ModelMeta, output_name: str,
                     evaluation: dict[str, Any]) -> ModelMeta:
    """`meta` with the program's real output name (known only once Paddle Inference has loaded
    the program) and extra evaluation entries."""
    raw = meta.to_dict()
    inference = {**raw["inference"], "output_name": output_name}
    return ModelMeta.from_dict({**raw, "inference": inference,
                                "evaluation": {**meta.evaluation, **evaluation}})


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks (checkpoints are hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_from_config(config_path: str, checkpoint: str, name: str, out_root: str = "model_repo",
                       overrides: tuple[str, ...] = (), fmt: str = "auto",
                       version: Optional[str] = None) -> ModelMeta:
    """The `make export` path: recipe + checkpoint -> model_repo/<name>/."""
    from train.config import class_count, load_config
    from serving.core.list_file import read_label_list
    from train.models.checkpoint import load_pdparams, load_state_dict_by_name
    from train.recipe import build_model_from_config

    cfg = load_config(config_path, overrides)
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise ExportError(f"{ckpt}: no such checkpoint (train first with `make train`)")
    labels = read_label_list(label_list_path(cfg))
    model = build_model_from_config(cfg, num_classes=class_count(cfg, labels,
                                                                 label_list_path(cfg)))
    load_state_dict_by_name(model, load_pdparams(ckpt), strict=True)
    evaluation = {}
    best = ckpt.with_suffix(".json")
    if best.is_file():
        import json

        evaluation["val_top1"] = json.loads(best.read_text()).get("top1")
    return export_model(
        model, Path(out_root) / name, name=name,
        version=version or time.strftime("%Y%m%d-%H%M%S"), labels=labels,
        preprocess=cfg.preprocess, architecture=cfg.model.name,
        source={"config": str(config_path), "checkpoint": str(ckpt),
                "checkpoint_sha256": file_sha256(ckpt), "model": cfg.model.as_dict()},
        evaluation=evaluation, fmt=fmt)


def label_list_path(cfg: Recipe) -> Path:
    """The class names of a recipe: `export.labels` if given, else the dataset's label list."""
    if cfg.export.labels is not None:
        return Path(cfg.export.labels)
    return Path(cfg.data.root) / cfg.data.label_list


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a checkpoint to model_repo/<name>/.")
    parser.add_argument("-c", "--config", required=True, help="the recipe the model was trained with")
    parser.add_argument("-k", "--checkpoint", required=True, help=".pdparams file")
    parser.add_argument("-n", "--name", default="pptsm", help="model_repo/<name> (default pptsm)")
    parser.add_argument("--out", default="model_repo", help="model repository root")
    parser.add_argument("--format", default="auto", choices=("auto", "pdmodel", "json"))
    parser.add_argument("--version", help="model version string (default: a timestamp)")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="override a recipe value, e.g. -o preprocess.crop_size=224")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        meta = export_from_config(args.config, args.checkpoint, args.name, args.out,
                                  tuple(args.override), args.format, args.version)
    except (ExportError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"exported {meta.name} ({meta.architecture}, {meta.inference.format}, "
          f"{meta.num_classes} classes, T={meta.preprocess.num_seg}, "
          f"{meta.preprocess.crop_size}px) to {Path(args.out) / args.name}; parity max abs diff "
          f"{meta.evaluation['export_parity_max_abs_diff']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
