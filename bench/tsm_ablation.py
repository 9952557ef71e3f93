"""Measurement, not a test: what the temporal shift and distillation buy on the synthetic set.

    python -m bench.tsm_ablation [--data data/synthetic] [--epochs 4] [--format frames]
        [--train-clips N] [--variants tsm no_shift student student_kd] [--out output/ablation]

Four trainings of the demo recipe (PP-TSMv2, 48 px, 4 frames; temporal attention off so that
the shift is the only thing that mixes frames), each scored on the test list:

* `tsm`: the PP-TSMv2 network at width 0.5;
* `no_shift`: the same network with its temporal shift replaced by the identity
  (`model.temporal_shift: false`): a per-frame CNN whose clip score averages the frames, blind
  to their order, so it cannot tell a class from its reverse (move left / right, up-right /
  down-left, grow / shrink);
* `student`: the same network at width 0.25, alone;
* `student_kd`: the width-0.25 student distilled (KD, T = 4) from the trained `tsm` network as a
  frozen teacher.

The table gives top-1, the share of clips put in the right *pair* of opposite classes, and the
direction accuracy within the right pair (top-1 / pair accuracy): an order-blind network can
reach the first, but not beat chance (0.5) on the second. `--format frames` reads the frame
folders of `make frames` (several times faster); `--train-clips` trains on the first N clips only,
for a short run. All numbers come from one run on a shared CPU; rerun for spread.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from train.config import load_config
from train.data.datasets import label_names
from train.data.synthetic_classes import opposite_class
from train.engine.trainer import train
from train.eval import evaluate_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO_ROOT / "train" / "configs" / "demo" / "pptsmv2_lcnet_synthetic_demo.yaml"
TEACHER_WIDTH, STUDENT_WIDTH = 0.5, 0.25
VARIANTS = ("tsm", "no_shift", "student", "student_kd")


def _kd_section(teacher_checkpoint: Path) -> dict[str, Any]:
    """The `tsm` network as the frozen teacher: the demo recipe's model (frames, depth) at the
    teacher's width."""
    model = load_config(DEMO_RECIPE).model.as_dict()
    return {"mode": "kd",
            "teacher": {**model, "width_mult": TEACHER_WIDTH, "use_temporal_att": False,
                        "checkpoint": str(teacher_checkpoint)},
            "losses": [{"name": "cross_entropy", "pair": ["student", "ground_truth"],
                        "weight": 0.5},
                       {"name": "kd_kl", "pair": ["student", "teacher"], "weight": 0.5,
                        "temperature": 4.0}]}


def _variants(out: Path) -> list[tuple[str, list[str], Optional[dict[str, Any]]]]:
    """(name, overrides, distillation section) in run order (the KD teacher is `tsm`)."""
    return [("tsm", [f"model.width_mult={TEACHER_WIDTH}"], None),
            ("no_shift", [f"model.width_mult={TEACHER_WIDTH}", "model.temporal_shift=false"], None),
            ("student", [f"model.width_mult={STUDENT_WIDTH}"], None),
            ("student_kd", [f"model.width_mult={STUDENT_WIDTH}"],
             _kd_section(out / "tsm" / "best.pdparams"))]


def _data_overrides(data: Path, data_format: str, train_clips: Optional[int],
                    out: Path) -> list[str]:
    suffix = "_frames" if data_format == "frames" else ""
    lists = {split: data / f"{split}{suffix}.list" for split in ("train", "val", "test")}
    missing = [str(path) for path in lists.values() if not path.is_file()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run `make data`"
                 f"{' and `make frames`' if data_format == 'frames' else ''} first")
    if train_clips:
        subset = out / f"train{suffix}_{train_clips}.list"
        lines = lists["train"].read_text().splitlines()
        # Every n-th line keeps the class balance of the generator's round-robin order.
        step = max(1, len(lines) // train_clips)
        subset.write_text("".join(line + "\n" for line in lines[::step][:train_clips]))
        lists["train"] = subset
    return [f"data.root={data}", f"data.format={data_format}",
            *(f"data.{split}_list={path.resolve()}" for split, path in lists.items())]


def opposite_pairs(names: list[str]) -> list[tuple[int, int]]:
    """Label pairs (i, j), i < j, of classes that are each other's time reversal."""
    index = {name: label for label, name in enumerate(names)}
    return sorted({tuple(sorted((label, index[opposite_class(name)])))
                   for label, name in enumerate(names) if opposite_class(name) in index})


def pair_scores(confusion: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[float, float]:
    """(share of clips predicted in their class's opposite pair, top-1 within that share)."""
    total = confusion.sum()
    in_pair = sum(confusion[np.ix_(pair, pair)].sum() for pair in pairs)
    correct = np.trace(confusion)
    return in_pair / total, (correct / in_pair if in_pair else float("nan"))


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    args.out.mkdir(parents=True, exist_ok=True)
    common = [f"train.epochs={args.epochs}", "model.use_temporal_att=false",
              f"data.num_workers={args.workers}",
              *_data_overrides(args.data, args.format, args.train_clips, args.out)]
    rows = []
    for name, overrides, distillation in _variants(args.out):
        if name not in args.variants:
            continue
        # JSON is YAML: the distillation section goes in as one override, checked like the rest.
        extra = [f"distillation={json.dumps(distillation)}"] if distillation else []
        cfg = load_config(DEMO_RECIPE, [*common, *overrides, *extra,
                                        f"train.output_dir={args.out / name}"])
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        result = train(cfg, progress=not args.no_progress)
        seconds = time.perf_counter() - start
        report = evaluate_checkpoint(cfg, args.out / name / "best.pdparams", "uniform", "test",
                                     progress=False)
        in_pair, direction = pair_scores(np.asarray(report["confusion"]),
                                         opposite_pairs(label_names(cfg)))
        rows.append({"variant": name, "width": cfg.model.options["width_mult"],
                     "val_top1": result.best_top1, "test_top1": report["top1"],
                     "pair_acc": in_pair, "direction_acc": direction, "train_s": seconds})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | width | best val top-1 | test top-1 | right pair | direction in pair "
             "| train s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['width']} | {r['val_top1']:.3f} | {r['test_top1']:.3f} | "
              f"{r['pair_acc']:.3f} | {r['direction_acc']:.3f} | {r['train_s']:.0f} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="TSM and distillation ablation (synthetic set).")
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "synthetic")
    parser.add_argument("--format", choices=("video", "frames"), default="video")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-clips", type=int, help="train on this many clips only")
    parser.add_argument("--workers", type=int, default=1, help="data loader processes")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "output" / "ablation")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="which runs (student_kd needs a `tsm` run in --out, now or before)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args)
    report = table(rows)
    (args.out / "ablation.md").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
