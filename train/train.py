"""Command line: `python -m train.train -c RECIPE.yaml [-o key=value ...] [--resume]`.

Data-parallel over N processes (GPUs, or CPU processes with gloo) with Paddle's launcher, which
runs a script file rather than a module, hence the path form:

    python -m paddle.distributed.launch --nproc_per_node N train/train.py -c RECIPE.yaml ...
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (the launcher): import `train` from the repo root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from train.config import ConfigError, load_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a PP-TSM / PP-TSMv2 model from a recipe.")
    parser.add_argument("-c", "--config", required=True, help="recipe YAML under train/configs/")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="override a recipe value, e.g. -o train.epochs=3 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/latest.* if present")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (CI logs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.override)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from train.engine.trainer import train  # after arg parsing: paddle import is slow

    try:
        result = train(cfg, resume=args.resume, progress=not args.no_progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done: {result.epochs} epochs in {result.seconds:.0f} s; best val top-1 "
          f"{result.best_top1:.4f} at epoch {result.best_epoch}; "
          f"checkpoint {result.output_dir / 'best.pdparams'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
