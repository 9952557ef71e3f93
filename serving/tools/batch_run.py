"""Classifying a list of videos in this process or in worker processes, one row per video.

Every worker builds its own OfflinePredictor (the service's code path, serving.tools.offline)
from a picklable `PredictorRecipe`; workers are spawned, not forked, because the parent may
already hold Paddle's thread pools. Rows come back in the videos' order whatever the number of
workers, so a results file is the same for any `--workers` and an interrupted file is a prefix
of the complete one. A video that fails becomes a row with its error; only a predictor that
cannot be built stops the run.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from serving.core.errors import PPTSMError
from serving.core.predictor import PredictorSettings
from serving.core.timeline import TIMELINE
from serving.tools.batch_rows import Row, classification_row, error_row, timeline_row
from serving.tools.corpus import CorpusVideo
from serving.tools.offline import OfflinePredictor

_WORKER_START_METHOD = "spawn"


class WorkerStartError(PPTSMError):
    """A worker could not build its predictor; the message is the reason."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers narrow)."""
    return len(os.sched_getaffinity(0))


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Math threads of each worker's predictor so that workers x threads = cores (at least 1)."""
    return max(1, (cores or available_cores()) // workers)


@dataclass(frozen=True)
class PredictorRecipe:
    """How to build the predictor, in this process or in a spawned worker: from the service's
    config when given (as the service would), else from the predictor's defaults; `threads`,
    `precision` and `backend` override either."""

    model_dir: Path
    threads: int
    config: Path | None = None
    precision: str | None = None
    backend: str | None = None

    def build(self) -> OfflinePredictor:
        overrides = {"cpu_threads": self.threads,
                     **({"precision": self.precision} if self.precision is not None else {})}
        if self.config is not None:
            predictor = OfflinePredictor.from_service_config(self.model_dir, self.config, **overrides)
        else:
            predictor = OfflinePredictor(self.model_dir,
                                         dataclasses.replace(PredictorSettings(), **overrides))
        if self.backend is not None:
            predictor.decode = dataclasses.replace(predictor.decode, backend=self.backend)
        return predictor


@dataclass(frozen=True)
class Task:
    """What is asked of every video: the sampling mode (or a timeline) and its options."""

    mode: str | None = None  # None: the model's own sampling
    topk: int | None = None
    window_s: float | None = None  # timeline options; None: the service's defaults
    stride_s: float | None = None
    min_score: float | None = None
    smooth: bool | None = None

    def timeline_options(self) -> dict[str, float | bool]:
        chosen = {"window_s": self.window_s, "stride_s": self.stride_s, "min_score": self.min_score,
                  "smooth": self.smooth}
        return {name: value for name, value in chosen.items() if value is not None}


def classify_video(predictor: OfflinePredictor, task: Task, video: CorpusVideo) -> Row:
    """One video's row: its answer, or the error that stopped it."""
    started = time.perf_counter()

    def elapsed_ms() -> float:
        return (time.perf_counter() - started) * 1e3

    try:
        if task.mode == TIMELINE:
            result = predictor.timeline(video.path, topk=task.topk, **task.timeline_options())
            return timeline_row(video, result, elapsed_ms())
        prediction = predictor.classify(video.path.read_bytes(), topk=task.topk, mode=task.mode)
        return classification_row(video, prediction, elapsed_ms())
    except (PPTSMError, ValueError, OSError) as exc:
        return error_row(video, str(exc), elapsed_ms())
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a corpus-long run
        return error_row(video, f"internal error: {type(exc).__name__}: {exc}", elapsed_ms())


# The predictor of a worker process (built once by _start_worker) or why it could not be built.
_worker_predictor: OfflinePredictor | None = None
_worker_task: Task | None = None
_worker_start_error: str | None = None


def _start_worker(recipe: PredictorRecipe, task: Task) -> None:
    """Pool initializer. Ctrl-C reaches the whole process group: only the parent handles it (it
    stops the pool and keeps the rows written so far). A failure to build the predictor is kept
    and raised by the first task, so the parent stops instead of the pool restarting workers."""
    global _worker_predictor, _worker_task, _worker_start_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_task = task
    try:
        _worker_predictor = recipe.build()
    except Exception as exc:  # noqa: BLE001 - reported to the parent by _work
        _worker_start_error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PPTSMError) \
            else str(exc)
    # Paddle's import installs a handler that prints a C++ "FatalError" report for SIGTERM, which
    # is how the pool stops its workers after an interruption: a worker ends quietly instead.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _work(video: CorpusVideo) -> Row:
    if _worker_predictor is None or _worker_task is None:
        raise WorkerStartError(f"a worker could not load the model: {_worker_start_error}")
    return classify_video(_worker_predictor, _worker_task, video)


def run_batch(recipe: PredictorRecipe, task: Task, videos: Sequence[CorpusVideo],
              workers: int = 1) -> Iterator[Row]:
    """The rows of `videos`, in order, as they are ready."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        predictor = recipe.build()
        for video in videos:
            yield classify_video(predictor, task, video)
        return
    context = multiprocessing.get_context(_WORKER_START_METHOD)
    with context.Pool(min(workers, max(1, len(videos))), initializer=_start_worker,
                      initargs=(recipe, task)) as pool:
        yield from pool.imap(_work, videos)
        pool.close()  # every row is in: let the workers exit on their own
        pool.join()
