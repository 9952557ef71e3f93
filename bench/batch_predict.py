"""The benchmark's batch section: how many videos per second `python -m serving.tools.predict`
classifies over the 64 test clips of data/synthetic, with 1 and with 2 worker processes.

The clips go through `serving.tools.batch_run.run_batch`, the tool's own loop, with the
serving section's model (PP-TSMv2 16 f, random weights, unless --serving-model) and
workers x threads = the cores this process may use. Two rates per run: over the whole run
(starting the workers and loading the model included, what a user waits for) and from the first
answer on (the steady rate a long corpus approaches). The rows of both runs must agree on every
video's top-1 class, since the worker count must not change an answer.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.model_zoo import FAMILIES, exported_family
from bench.report import Table, plt
from serving.core.metadata import load_meta
from serving.tools.batch_run import PredictorRecipe, Task, available_cores, run_batch, threads_per_worker
from serving.tools.corpus import find_videos

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_CLIPS = REPO_ROOT / "data" / "synthetic" / "test.list"
WORKER_COUNTS = (1, 2)
QUICK_CLIPS = 16


@dataclass(frozen=True)
class BatchRun:
    workers: int
    threads: int
    videos: int
    failed: int
    wall_s: float
    first_answer_s: float  # from the start to the first row (workers started, model loaded)

    @property
    def videos_per_s(self) -> float:
        return self.videos / self.wall_s

    @property
    def steady_videos_per_s(self) -> float:
        """Rows after the first one over the time after it (nan for fewer than two rows)."""
        if self.videos < 2:
            return float("nan")
        return (self.videos - 1) / (self.wall_s - self.first_answer_s)


def time_batch(model_dir: Path, clips: Path, workers: int, limit: int | None = None
               ) -> tuple[BatchRun, list[str | None]]:
    """One run over the clips of the list file `clips`: its timing and each video's top-1."""
    videos = find_videos(clips, load_meta(model_dir).labels)[:limit]
    threads = threads_per_worker(workers)
    started = time.perf_counter()
    first = None
    labels, failed = [], 0
    for row in run_batch(PredictorRecipe(model_dir, threads), Task(), videos, workers):
        first = first if first is not None else time.perf_counter() - started
        labels.append(row["label"])
        failed += row["error"] is not None
    return BatchRun(workers, threads, len(videos), failed, time.perf_counter() - started,
                    first or 0.0), labels


def run_batch_bench(quick: bool, args: argparse.Namespace, load_note: str) -> tuple[Table, list]:
    model_dir = args.serving_model or exported_family(FAMILIES[-1], args.out / "models")
    runs, answers = [], []
    for workers in WORKER_COUNTS:
        run, labels = time_batch(model_dir, TEST_CLIPS, workers, QUICK_CLIPS if quick else None)
        runs.append(run)
        answers.append(labels)
    agree = all(labels == answers[0] for labels in answers)
    note = (f"Model {model_dir}; the first {runs[0].videos} clips of {TEST_CLIPS.relative_to(REPO_ROOT)} "
            f"(uniform sampling, decoder auto), {available_cores()} cores: workers x threads = "
            f"cores. 'Whole run' counts starting the workers and loading the model; 'steady' "
            f"counts from the first answer on. Top-1 classes "
            f"{'identical' if agree else 'DIFFERENT'} across worker counts. {load_note}.")
    return batch_table(runs, note), runs


def batch_table(runs: Sequence[BatchRun], note: str) -> Table:
    return Table("Batch classification (python -m serving.tools.predict)",
                 ("workers x threads", "videos", "failed", "wall s", "first answer s",
                  "videos/s, whole run", "videos/s, steady"),
                 [(f"{r.workers} x {r.threads}", r.videos, r.failed, r.wall_s, r.first_answer_s,
                   f"{r.videos_per_s:.2f}", f"{r.steady_videos_per_s:.2f}") for r in runs], note)


def plot_batch(runs: Sequence[BatchRun], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 2.5))
    names = [f"{r.workers} x {r.threads}" for r in runs]
    ax.barh(names, [r.steady_videos_per_s for r in runs], label="steady")
    ax.barh(names, [r.videos_per_s for r in runs], height=0.4, label="whole run")
    ax.set_xlabel("videos per second")
    ax.set_ylabel("workers x threads")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
