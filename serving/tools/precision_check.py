"""How far a lower-precision predictor (bf16, int8) strays from the fp32 one, and how much
faster it is, on real clips.

    python -m serving.tools.precision_check --model-dir model_repo/pptsm --precision bf16
        --list data/synthetic/test.list [--clips 64] [--root DIR] [--candidate-dir DIR]
        [--engine paddle|openvino] [--record]

A faster precision is only worth serving if it gives the same answers. Both predictors see the
same network inputs, built by the service's own preprocessing (serving.tools.offline.network_input),
and the comparison reports what a user would notice (top-1 agreement, and accuracy where labels
are known) next to the raw output difference and each predictor's inference time. bf16 runs the
fp32 model folder with oneDNN's bfloat16 kernels; int8 needs the quantised copy that
`serving.tools.quantize` writes (by default MODEL_DIR-int8), or with `--engine openvino` the
IR that `quantize --engine openvino` put in MODEL_DIR. `--record` writes the agreement into
MODEL_DIR's metadata, which is what lets `precision: auto` serve bf16 there.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from serving.core.errors import VideoInputError
from serving.core.engines.base import ENGINES
from serving.core.metadata import (
    META_FILENAME,
    MetadataError,
    ModelMeta,
    PreprocessSpec,
    load_meta,
)
from serving.core.model_folder import StagedModelFolder
from serving.tools.offline import DecodeSettings, network_input
from serving.core.predictor import (
    Predictor,
    PredictorError,
    PredictorSettings,
    default_int8_dir,
)
from serving.core.stages import INFER, ranked_classes
from serving.core.timing import StageClock

Item = TypeVar("Item")


@dataclass(frozen=True)
class LabelledInput:
    """One clip's network input (uniform sampling) and its class id from the list file."""

    path: Path
    views: np.ndarray
    label: int


@dataclass(frozen=True)
class Agreement:
    clips: int
    top1_agreement: float  # fraction of clips whose best class is the same
    max_abs_diff: float  # largest difference of any output logit
    reference_accuracy: float  # top-1 accuracy against the list's labels
    candidate_accuracy: float
    reference_ms: float  # median inference time per clip, after one warm-up run
    candidate_ms: float
    # How many different classes the reference's top-1 takes over the clips: where a model
    # (random weights, say) gives every clip the same class, agreement says nothing.
    reference_classes: int

    @property
    def speedup(self) -> float:
        return self.reference_ms / self.candidate_ms

    def as_dict(self) -> dict[str, float | int]:
        return {"clips": self.clips, "top1_agreement": round(self.top1_agreement, 4),
                "max_abs_diff": float(f"{self.max_abs_diff:.3g}"),
                "reference_accuracy": round(self.reference_accuracy, 4),
                "candidate_accuracy": round(self.candidate_accuracy, 4),
                "reference_ms": round(self.reference_ms, 2),
                "candidate_ms": round(self.candidate_ms, 2), "speedup": round(self.speedup, 2),
                "reference_classes": self.reference_classes}

    def summary(self, precision: str) -> str:
        return (f"{precision} vs fp32 on {self.clips} clips: top-1 agreement "
                f"{self.top1_agreement:.1%} (fp32's top-1 takes {self.reference_classes} "
                f"different classes), largest logit difference {self.max_abs_diff:.3g}, "
                f"accuracy {self.reference_accuracy:.1%} (fp32) / {self.candidate_accuracy:.1%} "
                f"({precision}); inference {self.reference_ms:.1f} -> {self.candidate_ms:.1f} ms "
                f"per clip (median), {self.speedup:.2f}x")


def spread_pick(items: Sequence[Item], count: int) -> list[Item]:
    """`count` items taken at even steps through `items` (all of them if count is larger):
    list files are usually grouped by class, so the first `count` lines would miss classes."""
    if count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def labelled_inputs(list_path: str | Path, spec: PreprocessSpec, *, count: int,
                    root: str | Path | None = None) -> Iterator[LabelledInput]:
    """Network inputs of `count` clips spread over a PaddleVideo list file."""
    from serving.core.list_file import read_list_file  # the list format's one reader

    for sample in spread_pick(read_list_file(list_path, root), count):
        try:
            views = network_input(sample.path.read_bytes(), spec, "uniform", DecodeSettings())
        except VideoInputError as exc:  # name the clip: the message alone does not
            raise ValueError(f"{sample.path}: {exc}") from exc
        yield LabelledInput(sample.path, views, sample.label)


def compare(reference: Predictor, candidate: Predictor,
            inputs: Sequence[LabelledInput]) -> Agreement:
    """Runs both predictors on every input; `reference` is normally the fp32 predictor. Each
    runs the first input once untimed: oneDNN builds its kernels on the first call."""
    if not inputs:
        raise ValueError("no clips to compare on")
    reference.predict(inputs[0].views)
    candidate.predict(inputs[0].views)
    same = right_ref = right_cand = 0
    max_diff = 0.0
    ref_classes: set[int] = set()
    ref_ms: list[float] = []
    cand_ms: list[float] = []
    for item in inputs:
        ref_logits = _timed_predict(reference, item.views, ref_ms)
        cand_logits = _timed_predict(candidate, item.views, cand_ms)
        max_diff = max(max_diff, float(np.abs(ref_logits - cand_logits).max()))
        ref_top1 = ranked_classes(ref_logits, 1)[0][0]
        cand_top1 = ranked_classes(cand_logits, 1)[0][0]
        ref_classes.add(ref_top1)
        same += ref_top1 == cand_top1
        right_ref += ref_top1 == item.label
        right_cand += cand_top1 == item.label
    count = len(inputs)
    return Agreement(count, same / count, max_diff, right_ref / count, right_cand / count,
                     statistics.median(ref_ms), statistics.median(cand_ms), len(ref_classes))


def _timed_predict(predictor: Predictor, views: np.ndarray, times_ms: list[float]) -> np.ndarray:
    clock = StageClock()
    logits = predictor.predict(views)
    times_ms.append(clock.lap(INFER))
    return logits


def compare_with_fp32(model_dir: Path, candidate: Predictor, list_path: str | Path, *,
                      count: int, root: str | Path | None = None,
                      threads: int = PredictorSettings.cpu_threads) -> Agreement:
    """`candidate` against the fp32 model in `model_dir`, run by the candidate's engine, on
    `count` clips of a list file, preprocessed as `model_dir` records it."""
    meta = load_meta(model_dir)
    reference = Predictor(model_dir, meta, PredictorSettings(
        engine=candidate.settings.engine, cpu_threads=threads))
    inputs = list(labelled_inputs(list_path, meta.preprocess, count=count, root=root))
    return compare(reference, candidate, inputs)


def compare_precision(model_dir: Path, precision: str, list_path: str | Path, *, count: int,
                      root: str | Path | None = None, candidate_dir: Path | None = None,
                      threads: int = PredictorSettings.cpu_threads,
                      engine: str = "paddle") -> Agreement:
    """The fp32 model in `model_dir` against `precision` on `count` clips of a list file, both
    run by `engine`: bf16 runs `model_dir` itself; Paddle int8 its quantised copy
    (`candidate_dir`, default MODEL_DIR-int8), OpenVINO int8 the IR inside the folder."""
    if precision not in ("bf16", "int8"):
        raise ValueError(f"precision {precision!r}: compare bf16 or int8 with fp32")
    if candidate_dir is None:
        paddle_int8 = precision == "int8" and engine == "paddle"
        candidate_dir = default_int8_dir(model_dir) if paddle_int8 else model_dir
    candidate = Predictor.from_model_dir(
        candidate_dir, PredictorSettings(engine=engine, cpu_threads=threads, precision=precision))
    return compare_with_fp32(model_dir, candidate, list_path, count=count, root=root,
                             threads=threads)


def record_agreement(model_dir: Path, engine: str, precision: str, agreement: Agreement,
                     list_path: str | Path) -> ModelMeta:
    """Writes `agreement` under "<engine>/<precision>" into `model_dir`'s metadata (through
    the model-folder writer), for what runs from `model_dir` itself: bf16, OpenVINO int8."""
    meta = load_meta(model_dir)
    if precision == "int8" and engine == "paddle":
        raise ValueError("Paddle int8 runs from its own folder, which is served as int8 "
                         "whatever is recorded; --record is for bf16 and OpenVINO int8")
    updated = dataclasses.replace(meta, agreement={**meta.agreement, f"{engine}/{precision}": {
        **agreement.as_dict(), "validation_list": str(list_path),
        "tool": "serving.tools.precision_check"}})
    StagedModelFolder.begin_from(model_dir, "record").publish(updated)
    return updated


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare a bf16 or int8 predictor with the fp32 one on labelled clips.")
    parser.add_argument("--model-dir", required=True, type=Path, help="the fp32 model folder")
    parser.add_argument("--precision", required=True, choices=("bf16", "int8"))
    parser.add_argument("--engine", choices=ENGINES, default="paddle",
                        help="engine that runs both (default paddle); openvino int8 is the IR "
                        "`quantize --engine openvino` put in MODEL_DIR")
    parser.add_argument("--list", required=True, type=Path,
                        help="PaddleVideo list file of labelled clips (e.g. the test split)")
    parser.add_argument("--clips", type=int, default=64,
                        help="clips compared, spread over the list (default 64)")
    parser.add_argument("--root", type=Path, help="folder the list paths are relative to "
                        "(default: the list file's folder)")
    parser.add_argument("--candidate-dir", type=Path,
                        help="int8 model folder (default: MODEL_DIR-int8, as serving.tools.quantize "
                        "writes it); bf16 always runs MODEL_DIR")
    parser.add_argument("--threads", type=int, default=PredictorSettings.cpu_threads,
                        help="CPU threads per predictor (default %(default)s)")
    parser.add_argument("--record", action="store_true",
                        help="write the agreement into MODEL_DIR's model_meta.json, where "
                        "`precision: auto` reads it (bf16, and OpenVINO int8; use the "
                        "validation split)")
    args = parser.parse_args(argv)
    try:
        agreement = compare_precision(args.model_dir, args.precision, args.list,
                                      count=args.clips, root=args.root,
                                      candidate_dir=args.candidate_dir, threads=args.threads,
                                      engine=args.engine)
        print(agreement.summary(args.precision))
        if args.record:
            record_agreement(args.model_dir, args.engine, args.precision, agreement, args.list)
            print(f"recorded in {args.model_dir / META_FILENAME}")
    except (MetadataError, PredictorError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
