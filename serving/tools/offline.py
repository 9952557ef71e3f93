"""In-process prediction: what the service does to one video, without Paddle Serving.

PaddleVideo's `tools/predict.py` runs its own copy of the preprocessing, so its answers and its
timings can differ from its server's. This module instead chains the service's own pieces:
`open_video` (the decode op), `serving.core.stages` (sample, normalize, rank; the functions the
sample / normalize / pptsm ops run) and the same `Predictor` with the same settings, so an
offline answer equals the service's answer for the same file, and the timings it reports are
the service's stage costs minus HTTP, base64 and queueing.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from serving.core.metadata import ModelMeta, PreprocessSpec, load_meta
from serving.core.predictor import Predictor, PredictorSettings
from serving.core.preprocess.decode import DecodeLimits, open_video
from serving.core.postprocess import DEFAULT_TOPK
from serving.core.stages import (
    DECODE,
    INFER,
    NORMALIZE,
    PREPROCESS_STAGES,
    SAMPLE,
    classify_timeline,
    labelled_classes,
    network_views,
    sample_frames,
    timeline_fps,
)
from serving.core.timeline import (
    DEFAULT_MIN_SCORE,
    DEFAULT_WINDOW_S,
    RankedClass,
    TimelineOptions,
    TimelineResult,
    TimelineSettings,
)
from serving.core.timing import StageClock

VideoInput = Union[bytes, str, Path]


@dataclass(frozen=True)
class Prediction:
    """One video's ranked classes and what each stage cost (milliseconds)."""

    ranked: tuple[RankedClass, ...]
    stage_ms: dict[str, float]
    total_ms: float

    @property
    def preprocess_ms(self) -> float:
        """Probe + decode of the sampled frames + resize/crop/normalise, as PaddleVideo's tables
        count 'preprocessing'."""
        return sum(self.stage_ms[stage] for stage in PREPROCESS_STAGES)

    @property
    def infer_ms(self) -> float:
        return self.stage_ms[INFER]


@dataclass(frozen=True)
class DecodeSettings:
    """How uploads are opened; the service reads the same three values from its config."""

    limits: DecodeLimits = DecodeLimits()
    backend: str = "auto"
    temp_dir: Path | None = None


def network_input(video: bytes, spec: PreprocessSpec, mode: str, decode: DecodeSettings,
                  clock: StageClock | None = None) -> np.ndarray:
    """The network input float32 [views, T, 3, S, S] of one video file's bytes, built the way
    the decode, sample and normalize ops build it (laps 'decode', 'sample', 'normalize')."""
    clock = clock or StageClock()
    with open_video(video, limits=decode.limits, backend=decode.backend,
                    temp_dir=decode.temp_dir) as source:
        clock.lap(DECODE)
        frames = sample_frames(source, spec, mode)
    clock.lap(SAMPLE)
    views = network_views(frames, spec, mode)
    clock.lap(NORMALIZE)
    return views


class OfflinePredictor:
    """Loads `model_dir` once and classifies video bytes with the service's code path."""

    def __init__(self, model_dir: str | Path, settings: PredictorSettings | None = None,
                 decode: DecodeSettings = DecodeSettings(),
                 timeline: TimelineSettings = TimelineSettings()) -> None:
        self.meta: ModelMeta = load_meta(model_dir)
        self.predictor = Predictor(model_dir, self.meta, settings or PredictorSettings())
        self.decode = decode
        self.timeline_settings = timeline

    @classmethod
    def from_service_config(cls, model_dir: str | Path, config_path: str | Path,
                            **overrides: object) -> "OfflinePredictor":
        """Predictor, decode and timeline settings exactly as `python -m
        serving.pipeline.service --config config_path` would use them; `overrides` replace
        PredictorSettings fields (e.g. cpu_threads=1). Imports Paddle Serving (the config loader
        lives with the service)."""
        from serving.pipeline.service import load_service_config

        meta = load_meta(model_dir)
        config = load_service_config(Path(config_path), http_port=None, rpc_port=None, meta=meta)
        settings = dataclasses.replace(config.predictor, **overrides)
        return cls(model_dir, settings, DecodeSettings(config.limits, config.decode_backend,
                                                       config.decode_temp_dir), config.timeline)

    def classify(self, video: bytes, *, topk: int | None = None,
                 mode: str | None = None) -> Prediction:
        """Ranked classes of one video file's bytes. `mode` defaults to the model's sampling,
        `topk` to the service's default; a bad value raises ValueError, a bad video a
        VideoInputError (DecodeError, LimitExceededError) with the service's message."""
        spec = self.meta.preprocess
        clock = StageClock()
        views = network_input(video, spec, spec.sampling if mode is None else mode, self.decode,
                              clock)
        logits = self.predictor.predict(views)
        clock.lap(INFER)
        ranked = labelled_classes(logits, self._topk(topk), self.meta.labels)
        return Prediction(ranked, clock.stage_ms, clock.total_ms())

    def _topk(self, topk: int | None) -> int:
        """The service's default when None."""
        return min(DEFAULT_TOPK, self.meta.num_classes) if topk is None else topk

    def timeline(self, video: VideoInput, *, window_s: float = DEFAULT_WINDOW_S,
                 stride_s: float | None = None, min_score: float = DEFAULT_MIN_SCORE,
                 smooth: bool = True, topk: int | None = None) -> TimelineResult:
        """The timeline of one video (its bytes, or a path to it): what the service answers to
        `mode: timeline` with the same options (serving.core.timeline). `stride_s` defaults to
        half the window, `topk` to the service's default. A bad option raises ValueError naming
        it; a bad video, or one over a limit (max_windows included), a VideoInputError with the
        service's message. `result.to_json()` gives the service's `timeline`, `segments` and
        `timeline_stats` values."""
        options = TimelineOptions(window_s=window_s, stride_s=stride_s, min_score=min_score,
                                  smooth=smooth)
        data = video if isinstance(video, bytes) else Path(video).read_bytes()
        clock = StageClock()
        with open_video(data, limits=self.decode.limits, backend=self.decode.backend,
                        temp_dir=self.decode.temp_dir) as source:
            clock.lap(DECODE)
            return classify_timeline(source, self.meta.preprocess, self.meta.labels, options,
                                     timeline_fps(source), self.predictor.predict,
                                     batch_size=self.timeline_settings.batch_size,
                                     limits=self.decode.limits, topk=self._topk(topk),
                                     clock=clock)
