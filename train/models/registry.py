"""Model registry, in the style of timm: one builder per name, looked up by name.

Two kinds of names share it, as in timm's `list_models()`:

* architectures (`pptsm_resnet50`, `pptsm_v2_lcnet`, ...), registered with `@register_model`;
  configs name one (`model.name`) and pass its keyword arguments (`num_seg`, ...);
* released variants (`pptsm_r50_k400_8f`, `pptsmv2_lcnet_k400_16f_dml`, ...), registered by
  `train.models.variants`: an architecture with the keyword arguments of one published checkpoint,
  so a name alone builds the network that checkpoint loads into.

`list_models(released=True)` lists only the released variants (timm's `pretrained=True`).
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Iterable

import paddle.nn as nn

ModelBuilder = Callable[..., nn.Layer]

_REGISTRY: dict[str, ModelBuilder] = {}
_RELEASED: set[str] = set()


class UnknownModelError(KeyError):
    """A name that is not registered; the message names the closest registered ones.

    A KeyError so existing `except KeyError` callers (export, import) keep catching it; `str()`
    gives the plain message rather than KeyError's quoted repr.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def register_model(fn: ModelBuilder) -> ModelBuilder:
    """Decorator: registers an architecture builder under its function name."""
    _add(fn.__name__, fn)
    return fn


def register_released(name: str, builder: ModelBuilder) -> None:
    """Registers the builder of a released variant (listed by `list_models(released=True)`)."""
    _add(name, builder)
    _RELEASED.add(name)


def _add(name: str, builder: ModelBuilder) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = builder


def _ensure_released_registered() -> None:
    """Imports train.models.variants, which registers the released variants, on first use.

    Not imported by the package itself: `python -m train.models.variants` would then run a
    second copy of a module that is already imported (runpy warns about exactly that).
    """
    importlib.import_module("train.models.variants")


def list_models(released: bool = False) -> list[str]:
    """Every registered name, or only the released variants."""
    _ensure_released_registered()
    return sorted(_RELEASED if released else _REGISTRY)


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    """"unknown <kind> 'x'; did you mean ...?" with the closest known names, then all of them,
    so a typo in a recipe or on a command line names its own fix."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (registered: {', '.join(known)})"


def get_builder(name: str) -> ModelBuilder:
    """The registered builder; an unknown name is refused naming the closest known ones."""
    _ensure_released_registered()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(unknown_name_message("model", name, _REGISTRY)) from None


def build_model(name: str, **kwargs: Any) -> nn.Layer:
    """Builds a registered model (an architecture or a released variant) by name."""
    return get_builder(name)(**kwargs)
