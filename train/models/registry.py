"""Model registry, in the style of timm: one builder per variant, looked up by name.

Configs name a builder (`model.name`) and pass keyword arguments (`num_classes`, `num_seg`, ...);
tests walk `list_models()` to check every registered variant.
"""
from __future__ import annotations

from typing import Any, Callable

import paddle.nn as nn

ModelBuilder = Callable[..., nn.Layer]

_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(fn: ModelBuilder) -> ModelBuilder:
    """Decorator: registers a builder under its function name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs: Any) -> nn.Layer:
    """Builds a registered model; an unknown name lists the known ones."""
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None
    return builder(**kwargs)
