"""Command line: `python -m train.train -c RECIPE.yaml [-o key=value ...] [--resume] [--nproc N]`.

Data-parallel over N processes (GPUs with NCCL, or CPU processes with gloo) in one of two ways:

    python -m train.train -c RECIPE.yaml --nproc N          # spawns N workers itself
    python -m paddle.distributed.launch --nproc_per_node N train/train.py -c RECIPE.yaml ...

`--nproc` defaults to the recipe's `train.processes` (1 when absent). Spawned workers share the
terminal, so rank 0's progress bar shows as it does in a single process; Paddle's launcher writes
each worker's output to a log file instead, which suits clusters. On CPU, Paddle's training
kernels use about one core per process, so N processes on N cores train about N times faster.
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (the launcher): import `train` from the repo root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from train.config import ConfigError, Recipe, load_config, positive_int  # noqa: E402


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a PP-TSM / PP-TSMv2 model from a recipe.")
    parser.add_argument("-c", "--config", required=True, help="recipe YAML under train/configs/")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="override a recipe value, e.g. -o train.epochs=3 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/latest.* if present")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (CI logs)")
    parser.add_argument("--nproc", type=int, default=None,
                        help="data-parallel worker processes to spawn (default: the recipe's "
                             "train.processes, else 1)")
    args = parser.parse_args(argv)
    _configure_logging()
    try:
        cfg = load_config(args.config, args.override)
        nproc = (positive_int(args.nproc, "--nproc") if args.nproc is not None
                 else cfg.train.processes)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import paddle.distributed as dist  # after arg parsing: paddle import is slow

    if nproc > 1 and dist.get_world_size() == 1:
        return _spawn_workers(cfg, args.resume, not args.no_progress, nproc)
    return run(cfg, args.resume, not args.no_progress)


def run(cfg: Recipe, resume: bool, progress: bool) -> int:
    """Trains in this process (one rank of a group, or alone); rank 0 prints the summary."""
    import paddle.distributed as dist
    from train.engine.trainer import train

    try:
        result = train(cfg, resume=resume, progress=progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if dist.get_rank() == 0:
        print(f"done: {result.epochs} epochs in {result.seconds:.0f} s; best val top-1 "
              f"{result.best_top1:.4f} at epoch {result.best_epoch}; "
              f"checkpoint {result.output_dir / 'best.pdparams'}", flush=True)
    return 0


def _die_with_parent(parent_pid: int) -> None:
    """Asks Linux to SIGTERM this worker when the spawning process dies: a `kill` of the command
    (unlike Ctrl-C, which reaches the whole process group) would otherwise leave the workers
    training on, orphaned. A parent that died before the request was made (while this worker
    was still importing) is caught by the parent-pid check. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(1)


def _worker(cfg: Recipe, resume: bool, progress: bool, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    _configure_logging()  # a spawned process starts with none
    if run(cfg, resume, progress) != 0:
        raise SystemExit(2)  # spawn reports a worker's failure by raising in the parent


def _spawn_workers(cfg: Recipe, resume: bool, progress: bool, nproc: int) -> int:
    import paddle.distributed as dist

    print(f"training with {nproc} data-parallel processes", flush=True)
    try:
        dist.spawn(_worker, args=(cfg, resume, progress, os.getpid()), nprocs=nproc)
    except Exception as exc:  # a worker failed: its own traceback is already on the terminal
        print(f"error: a training process failed: {str(exc).strip().splitlines()[-1]}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
