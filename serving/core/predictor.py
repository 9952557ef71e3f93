"""The one object that runs an exported PP-TSM program, whichever engine runs it.

`Predictor(model_dir, meta, settings)` takes float32 [N, T, 3, S, S] and returns float32
[N, num_classes] logits, with the same names and batching whichever engine
(serving.core.engines: Paddle Inference or OpenVINO) and precision `settings` ask for; `auto`
engine or precision are resolved here, at construction, by serving.core.engines.choice
(`selection.summary()` says what was chosen and why).

Thread safety: an engine's runner must not run in two threads at once, so the predictor keeps
the runners the engine made (Paddle: up-front clones, one on CPU; OpenVINO: one infer request
per instance) in a pool; `predict` borrows one for the whole feed-run-fetch and gives it back,
which makes one `Predictor` safe to share between the threads of a Paddle Serving op.

The settings, the error and the constants other modules use are re-exported from here, so
callers import one module whatever engine runs.
"""
from __future__ import annotations

import queue
from pathlib import Path

import numpy as np

from serving.core.engines.base import (
    CPU_PRECISIONS,
    INT8_SOURCE_KEY,
    ONEDNN_SLOW_OPS,
    TENSORRT_PRECISIONS,
    PredictorError,
    PredictorSettings,
)
from serving.core.engines.choice import Selection, choose
from serving.core.metadata import ModelMeta, load_meta

__all__ = ["CPU_PRECISIONS", "INT8_SOURCE_KEY", "ONEDNN_SLOW_OPS", "TENSORRT_PRECISIONS",
           "Predictor", "PredictorError", "PredictorSettings", "default_int8_dir"]


def default_int8_dir(model_dir: Path) -> Path:
    """Where serving.tools.quantize writes a model's Paddle int8 copy unless told otherwise, and
    where serving.tools.precision_check looks for it: MODEL_DIR-int8 beside the fp32 folder."""
    return model_dir.with_name(f"{model_dir.name}-int8")


class Predictor:
    """Runs one exported model: float32 [N, T, 3, S, S] in, float32 [N, num_classes] out.

    `settings` is what runs (engine and precision concrete, after `auto`); `selection` how it
    was chosen."""

    def __init__(self, model_dir: str | Path, meta: ModelMeta, settings: PredictorSettings):
        settings.validate()
        self.meta = meta
        self._sample_shape = tuple(meta.inference.input_shape[1:])
        model_dir = Path(model_dir)
        for relative in (meta.inference.model_file, meta.inference.params_file):
            if not (model_dir / relative).is_file():
                raise PredictorError(f"{model_dir / relative}: model file missing")
        self.selection: Selection = choose(model_dir, meta, settings)
        self.settings: PredictorSettings = self.selection.settings
        program = self.selection.program
        self.input_name: str = program.input_name
        self.output_name: str = program.output_name
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        for runner in program.runners:
            self._pool.put(runner)

    @classmethod
    def from_model_dir(cls, model_dir: str | Path,
                       settings: PredictorSettings | None = None) -> "Predictor":
        """Loads `model_dir/model_meta.json` and the program it names."""
        return cls(model_dir, load_meta(model_dir), settings or PredictorSettings())

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Returns the raw network output (logits) for a batch of clips or views."""
        if batch.dtype != np.float32 or batch.ndim != 5 or tuple(batch.shape[1:]) != self._sample_shape:
            raise ValueError(
                f"expected float32 [N, {', '.join(map(str, self._sample_shape))}], "
                f"got {batch.dtype} {list(batch.shape)}")
        if batch.shape[0] == 0:
            raise ValueError("empty batch")
        runner = self._pool.get()
        try:
            return runner(batch)
        finally:
            self._pool.put(runner)
