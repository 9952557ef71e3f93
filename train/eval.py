"""Command line: evaluate a checkpoint on a list (`make eval CONFIG=... CKPT=...`).

    python -m train.eval -c RECIPE.yaml -k CHECKPOINT.pdparams [--mode uniform|dense]
        [--split test|val|train] [--out DIR] [--batch-size N] [-o key=value ...]

`uniform` is PaddleVideo's 1-clip centre-crop test, `dense` its 10-clip x 3-crop test (logits
averaged over the 30 views, as the service does). Writes `report.json` (top-1, top-5, per-class
accuracy, confusion matrix, each clip's predicted class and its probability) and
`confusion.png` to `--out` (default: `eval-<split>-<mode>/` beside the checkpoint). The
checkpoint may be any PaddleVideo layout (`backbone.*`, a DML student's `0.*`, a full DML
checkpoint's `Student.*`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from serving.core.preprocess.pipeline import SAMPLING_MODES
from serving.core.postprocess import softmax
from train.config import ConfigError, Recipe, load_config
from train.data.datasets import build_dataset, label_names
from train.data.loader import build_loader
from train.engine.evaluate import predict_logits, scores_from_logits
from train.engine.plots import plot_confusion_matrix
from train.models.checkpoint import load_state_dict_by_name
from train.recipe import build_model_from_config



def evaluate_checkpoint(cfg: Recipe, checkpoint: Path, mode: str, split: str,
                        batch_size: Optional[int] = None, progress: bool = True) -> dict[str, Any]:
    """The report of `checkpoint` on the recipe's `<split>_list` in `mode`."""
    labels = label_names(cfg)
    dataset = build_dataset(cfg, split, mode)
    model = build_model_from_config(cfg, num_classes=len(labels))
    load_state_dict_by_name(model, checkpoint)
    batch = batch_size or (1 if mode == "dense" else cfg.train.batch_size)
    loader = build_loader(dataset, cfg.data.num_workers, batch_size=batch)
    logits, truth = predict_logits(model, loader, dataset.spec.num_seg, f"eval {mode}", progress)
    result = scores_from_logits(logits, truth, len(labels))
    probabilities = softmax(logits.astype(np.float64))
    predicted = np.argsort(-logits, axis=1)[:, 0]
    return {"config": cfg.source, "checkpoint": str(checkpoint), "split": split,
            "mode": mode, "labels": labels, **result.to_dict(labels),
            "predictions": [{"path": str(sample.path), "label": sample.label,
                             "predicted": int(index), "score": float(probs[index])}
                            for sample, index, probs in zip(dataset.samples, predicted,
                                                            probabilities)]}


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Writes report.json and confusion.png; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    title = f"{report['split']} ({report['mode']}): top-1 {report['top1']:.3f}"
    image = plot_confusion_matrix(np.asarray(report["confusion"]), report["labels"],
                                  out_dir / "confusion.png", title)
    return report_path, image


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a PP-TSM / PP-TSMv2 checkpoint.")
    parser.add_argument("-c", "--config", required=True,
                        help="the recipe the model was trained with")
    parser.add_argument("-k", "--checkpoint", required=True, type=Path, help=".pdparams to score")
    parser.add_argument("--mode", choices=SAMPLING_MODES, default="uniform")
    parser.add_argument("--split", default="test", help="which data.<split>_list to score")
    parser.add_argument("--out", type=Path, help="report folder (default: beside the checkpoint)")
    parser.add_argument("--batch-size", type=int, help="clips per batch (default: train.batch_size "
                        "for uniform, 1 for dense)")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="override a recipe value, e.g. -o data.root=data/synthetic")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.override)
        report = evaluate_checkpoint(cfg, args.checkpoint, args.mode, args.split,
                                     args.batch_size, not args.no_progress)
    except (ConfigError, ValueError, OSError) as exc:  # CheckpointError, ListFileError included
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir = args.out or args.checkpoint.parent / f"eval-{args.split}-{args.mode}"
    report_path, image = write_report(report, out_dir)
    print(f"{args.split} ({args.mode}, {report['num_samples']} clips): top-1 {report['top1']:.4f}"
          f"  top-5 {report['top5']:.4f}")
    for name, accuracy in report["per_class_top1"].items():
        print(f"  {name:<24} {'-' if accuracy is None else f'{accuracy:.3f}'}")
    print(f"report {report_path}; confusion matrix {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
