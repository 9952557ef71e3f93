"""The answer of `GET /<service>/metadata`: what a client needs to know about the served model
before sending it anything, taken from model_meta.json and the service's config (never
restated by hand, so it cannot drift from what the pipeline does)."""
from __future__ import annotations

import dataclasses
from typing import Any

from serving.core.metadata import ModelMeta
from serving.core.preprocess.decode_limits import DecodeLimits
from serving.core.preprocess.pipeline import SAMPLING_MODES


def model_metadata(meta: ModelMeta, *, engine: str, precision: str,
                   limits: DecodeLimits) -> dict[str, Any]:
    """Name, version, classes with labels, the preprocessing recorded at export, the inference
    program's input and output, the engine and precision it runs with (as chosen at start-up
    where the config says `auto`) and the request limits."""
    inference = meta.inference
    return {
        "name": meta.name,
        "version": meta.version,
        "architecture": meta.architecture,
        "num_classes": meta.num_classes,
        "classes": [{"class_id": class_id, "label": label}
                    for class_id, label in enumerate(meta.labels)],
        "preprocess": dataclasses.asdict(meta.preprocess),
        "sampling_modes": list(SAMPLING_MODES),
        "inference": {"format": inference.format, "input_name": inference.input_name,
                      "input_shape": list(inference.input_shape),
                      "output_name": inference.output_name,
                      "output_shape": list(inference.output_shape),
                      "output_kind": inference.output_kind},
        "engine": engine,
        "precision": precision,
        "limits": dataclasses.asdict(limits),
        "exported_at": meta.exported_at,
    }
