"""YAML recipe loading with PaddleVideo-style `-o key.sub=value` overrides.

Recipes are plain nested dicts; overrides are parsed as YAML scalars so `-o train.epochs=3`
gives an int and `-o model.use_temporal_att=false` a bool.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml


class ConfigError(ValueError):
    """A recipe file or override is malformed; the message names the key."""


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    with path.open(encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh) or {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    cfg = apply_overrides(cfg, overrides)
    cfg.setdefault("_source", str(path))
    return cfg


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Returns a copy of `cfg` with every `dotted.key=value` applied."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = cfg
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = yaml.safe_load(raw)
    return cfg


def section(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """A required top-level section, with an error that names it."""
    value = cfg.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"config {cfg.get('_source', '')}: missing section {name!r}")
    return value


def positive_int(value: Any, key: str) -> int:
    """`value` when it is an integer >= 1 (YAML's true/false are not), else a ConfigError
    naming `key`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return value
