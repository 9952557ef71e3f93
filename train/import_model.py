"""Imports an inference model written by PaddleVideo's own exporter into `model_repo/<name>/`.

A PaddleVideo export is a folder with `ppTSM.pdmodel` + `ppTSM.pdiparams` (+ `.pdiparams.info`)
from older Paddle or `FLAGS_enable_pir_api=0`, or `ppTSMv2.json` + `ppTSMv2.pdiparams` from
Paddle 3. It carries no preprocessing and no class names, so the user supplies them: the recipe
the model was trained with (`-c`), or the parameters themselves. The program is copied unchanged;
what this module adds is everything the service needs around it (metadata, label list, Paddle
Serving confs, written by serving.core.model_folder like every model folder) and the checks that the program
really is what the user says it is, so that a mismatch fails here and not in production:

* its declared input must be `[N, T, 3, S, S]` with the given T and crop size S;
* its output width must equal the number of class names;
* it must load and run with the service's settings (oneDNN, memory optimisation for `.pdmodel`),
  and row 0 of a batch of two must equal the same clip run alone (a wrong frame count shows up
  here for models whose head groups frames by a fixed T).

A PIR `.json` program containing `leaky_relu` (the PP-TSM ResNets) is refused: Paddle 3.3.1 stores
the slope as a double attribute that its oneDNN conv fusion reads as a float, and the predictor
crashes the process (EXPORT_FACTS.md, pitfall 2). Re-export such a model in the legacy format.

Command line: `python -m train.import_model --src DIR --name NAME (-c RECIPE | --num-seg T
--labels FILE [--scale-size 256] [--crop-size 224] [--sampling uniform])`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from serving.core.errors import PPTSMError
from serving.core.metadata import InferenceSpec, ModelMeta, PreprocessSpec
from serving.core.model_folder import SERVER_SUBDIR, StagedModelFolder
from serving.core.predictor import Predictor, PredictorError, PredictorSettings
from train.export import file_sha256, package_versions, parity_bound, with_output_name
from serving.core.program_files import legacy_program, pir_op_attributes

PROGRAM_FORMATS = {".pdmodel": "pdmodel", ".json": "json"}
PARAMS_SUFFIX = ".pdiparams"
PARAMS_INFO_SUFFIX = ".pdiparams.info"


class ModelImportError(PPTSMError, RuntimeError):
    """The folder is not a usable PaddleVideo export or does not match what the user said."""


@dataclass(frozen=True)
class PaddleVideoExport:
    """The files of one exported program inside a PaddleVideo export folder."""

    program: Path
    params: Path
    fmt: str  # "pdmodel" or "json"

    @property
    def files(self) -> list[Path]:
        info = self.params.with_suffix(PARAMS_INFO_SUFFIX)
        return [self.program, self.params] + ([info] if info.is_file() else [])


def find_paddlevideo_export(src: Path) -> PaddleVideoExport:
    """The single `<stem>.pdmodel|.json` + `<stem>.pdiparams` pair in `src`."""
    if not src.is_dir():
        raise ModelImportError(f"{src}: no such directory")
    found = []
    for params in sorted(src.glob("*" + PARAMS_SUFFIX)):
        stem = params.name[:-len(PARAMS_SUFFIX)]
        for suffix, fmt in PROGRAM_FORMATS.items():
            program = src / (stem + suffix)
            if program.is_file():
                found.append(PaddleVideoExport(program, params, fmt))
    if not found:
        listing = ", ".join(sorted(p.name for p in src.iterdir())) or "nothing"
        raise ModelImportError(
            f"{src}: no PaddleVideo export (expected <name>.pdmodel or <name>.json next to "
            f"<name>.pdiparams, e.g. ppTSM.pdmodel + ppTSM.pdiparams); found {listing}")
    if len(found) > 1:
        raise ModelImportError(f"{src}: several exported programs "
                               f"({', '.join(e.program.name for e in found)}); keep one per folder")
    return found[0]


def _pir_input(program: Path) -> tuple[str, tuple[int, ...]]:
    for attrs in pir_op_attributes(program, "data"):
        return str(attrs["name"]), tuple(int(d) for d in attrs["shape"])
    raise ModelImportError(f"{program}: no input (data) operation found in the PIR program")


def _legacy_input(program: Path) -> tuple[str, tuple[int, ...]]:
    block = legacy_program(program).blocks[0]
    feeds = [op.outputs[0].arguments[0] for op in block.ops if op.type == "feed"]
    if not feeds:
        raise ModelImportError(f"{program}: the program has no feed operation (not an inference "
                               "export?)")
    var = next(var for var in block.vars if var.name == feeds[0])
    return feeds[0], tuple(int(d) for d in var.type.dense_tensor.tensor.dims)


def declared_input(export: PaddleVideoExport) -> tuple[str, tuple[int, ...]]:
    """(input name, declared shape) read from the program file itself; Paddle Inference only
    reports shapes after a feed."""
    return _pir_input(export.program) if export.fmt == "json" else _legacy_input(export.program)


def _refuse_known_crash(export: PaddleVideoExport) -> None:
    if export.fmt == "json" and pir_op_attributes(export.program, "leaky_relu"):
        raise ModelImportError(
            f"{export.program}: a PIR .json program with leaky_relu (a PP-TSM ResNet) crashes "
            "Paddle Inference 3.3.1 with oneDNN (its slope is stored as a double that the oneDNN "
            "conv fusion reads as a float). Re-export it with FLAGS_enable_pir_api=0 set in "
            "PaddleVideo's export_model.py, or export its .pdparams with `python -m train.export`")


def _check_input(export: PaddleVideoExport, preprocess: PreprocessSpec) -> str:
    name, shape = declared_input(export)
    want = (preprocess.num_seg, 3, preprocess.crop_size, preprocess.crop_size)
    if len(shape) != 5 or shape[1:] != want:
        raise ModelImportError(
            f"{export.program}: input {name!r} is declared as {list(shape)}, but the given "
            f"preprocessing produces [N, {', '.join(map(str, want))}] (num_seg "
            f"{preprocess.num_seg}, crop {preprocess.crop_size}); pass the recipe or parameters "
            "the model was exported with")
    return name


def _run_checks(model_dir: Path, num_classes: int, sample_shape: tuple[int, ...]) -> Predictor:
    """Loads the program with the service's settings and runs a batch of 2 and a batch of 1."""
    try:
        predictor = Predictor.from_model_dir(model_dir, PredictorSettings())
    except PredictorError as exc:
        raise ModelImportError(str(exc)) from exc
    probe = np.random.RandomState(0).standard_normal((2, *sample_shape)).astype("float32")
    pair = predictor.predict(probe)
    if pair.shape != (2, num_classes):
        raise ModelImportError(
            f"a batch of 2 clips gave output {list(pair.shape)}, expected [2, {num_classes}] "
            f"({num_classes} class names): wrong label list or frame count?")
    single = predictor.predict(probe[:1])
    diff = float(np.abs(single[0] - pair[0]).max())
    if not np.isfinite(pair).all() or not diff <= parity_bound(pair[0]):
        raise ModelImportError(
            f"the program gives non-finite outputs or mixes the clips of a batch (clip 0 alone "
            f"vs in a batch of 2: max abs diff {diff:.2e}); was it exported for another frame "
            "count than its declared input says?")
    return predictor


def import_paddlevideo_export(src: str | Path, out_dir: str | Path, *, name: str,
                              preprocess: PreprocessSpec, labels: list[str],
                              architecture: str = "paddlevideo-export",
                              version: Optional[str] = None) -> ModelMeta:
    """Copies the export in `src` into `out_dir` with metadata, labels and serving confs."""
    src, out_dir = Path(src), Path(out_dir)
    preprocess.validate()
    export = find_paddlevideo_export(src)
    _refuse_known_crash(export)
    input_name = _check_input(export, preprocess)
    staged = StagedModelFolder.begin(out_dir, "import")
    for path in export.files:
        shutil.copy2(path, staged.server_dir / path.name)
    size = preprocess.crop_size
    meta = ModelMeta(
        name=name, version=version or time.strftime("%Y%m%d-%H%M%S"), architecture=architecture,
        labels=tuple(labels), preprocess=preprocess,
        inference=InferenceSpec(
            format=export.fmt, model_file=f"{SERVER_SUBDIR}/{export.program.name}",
            params_file=f"{SERVER_SUBDIR}/{export.params.name}", input_name=input_name,
            input_shape=(-1, preprocess.num_seg, 3, size, size), output_name="",
            output_shape=(-1, len(labels)),
            format_reason=f"imported as written by PaddleVideo's exporter ({export.fmt})"),
        source={"imported_from": str(src),
                "sha256": {path.name: file_sha256(path) for path in export.files}},
        exported_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), package_versions=package_versions())
    staged.save_meta(meta)
    predictor = _run_checks(staged.path, len(labels), tuple(meta.inference.input_shape[1:]))
    meta = with_output_name(meta, predictor.output_name, {"import_checks": "passed"})
    staged.publish(meta)
    return meta


def _spec_and_labels(args: argparse.Namespace) -> tuple[PreprocessSpec, list[str], str]:
    """(preprocessing, class names, architecture) from a recipe or from the explicit flags."""
    from serving.core.list_file import read_label_list

    if args.config:
        from train.config import load_config
        from train.export import label_list_path

        cfg = load_config(args.config)
        return cfg.preprocess, read_label_list(label_list_path(cfg)), cfg.model.name
    if args.num_seg is None or args.labels is None:
        raise ModelImportError("without -c RECIPE, give --num-seg and --labels")
    spec = PreprocessSpec(num_seg=args.num_seg, scale_size=args.scale_size,
                          crop_size=args.crop_size, sampling=args.sampling)
    return spec, read_label_list(args.labels), "paddlevideo-export"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Import a PaddleVideo inference export into model_repo/<name>/.")
    parser.add_argument("--src", required=True,
                        help="folder with ppTSM.pdmodel/.pdiparams or ppTSMv2.json/.pdiparams")
    parser.add_argument("-n", "--name", required=True, help="model_repo/<name>")
    parser.add_argument("-c", "--config", help="the recipe the model was trained with")
    parser.add_argument("--num-seg", type=int, help="frames per clip (without -c)")
    parser.add_argument("--scale-size", type=int, default=256, help="short side before the crop")
    parser.add_argument("--crop-size", type=int, default=224, help="network input size")
    parser.add_argument("--sampling", default="uniform", choices=("uniform", "dense"))
    parser.add_argument("--labels", help="'<index> <name>' label list (without -c)")
    parser.add_argument("--out", default="model_repo", help="model repository root")
    parser.add_argument("--version", help="model version string (default: a timestamp)")
    args = parser.parse_args(argv)
    try:
        spec, labels, architecture = _spec_and_labels(args)
        meta = import_paddlevideo_export(args.src, Path(args.out) / args.name, name=args.name,
                                         preprocess=spec, labels=labels,
                                         architecture=architecture, version=args.version)
    except (ModelImportError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"imported {args.src} as {meta.name} ({meta.inference.format}, {meta.num_classes} "
          f"classes, T={meta.preprocess.num_seg}, {meta.preprocess.crop_size}px) into "
          f"{Path(args.out) / args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
