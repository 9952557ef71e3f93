"""Reads a YAML mapping into a frozen dataclass, checking every key against the dataclass's
fields and every value against the field's type annotation.

Why a reader of our own: the recipe needs exactly four things no small library gives together
without a schema language of its own: refusing an unknown key with the closest known one
(`train.epoch: unknown key; did you mean train.epochs?`), messages that name the dotted key
path, the defaults kept in the dataclass alone, and YAML's quirks handled (`true` is not an
integer, `1` is a valid float). The annotations it understands are the ones the recipe uses:
bool, int, float, str, Literal, Optional, tuple / Sequence, dict / Mapping, nested dataclasses
and Any.

A field's metadata may carry `minimum` (a number the value must reach) or `read` (a function
`(raw, path) -> value` that reads the field itself). A dataclass's own `__post_init__` may raise
ValueError("<field>: message"); the message comes back as a ConfigError prefixed with the path.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import types
import typing
from typing import Any, Callable, Iterable, Literal, TypeVar, Union

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe is malformed (unknown key, wrong type, bad value); the message names the key."""


def join(where: str, key: str) -> str:
    """`where.key`, or `key` at the top level."""
    return f"{where}.{key}" if where else key


def at_least(minimum: float, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose value must be >= `minimum` (checked by the reader)."""
    return dataclasses.field(default=default, metadata={"minimum": minimum})


def read_by(reader: Callable[[Any, str], Any], default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field read by `reader(raw, path)` instead of by its annotation."""
    return dataclasses.field(default=default, metadata={"read": reader})


def unknown_key(where: str, key: Any, known: Iterable[str]) -> ConfigError:
    """The error for `key`, naming the closest known key (or all of them when none is close)."""
    known = sorted(known)
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = (f"did you mean {join(where, close[0])}?" if close
            else f"known keys: {', '.join(known) or 'none'}")
    return ConfigError(f"{join(where, str(key))}: unknown key; {hint}")


def _yaml_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The fields of a section that are YAML keys (not those marked `internal`)."""
    return {item.name: item for item in dataclasses.fields(cls)
            if item.init and not item.metadata.get("internal")}


def keys_of(cls: type) -> list[str]:
    """The YAML keys of a section."""
    return list(_yaml_fields(cls))


def read_section(cls: type[T], raw: Any, where: str) -> T:
    """The mapping `raw` (None: an empty one) as `cls`; ConfigError names any problem."""
    raw = {} if raw is None else raw
    if not isinstance(raw, collections.abc.Mapping):
        raise ConfigError(f"{where or 'recipe'}: expected a mapping of "
                          f"{', '.join(keys_of(cls))}, got {raw!r}")
    fields = _yaml_fields(cls)
    for key in raw:
        if key not in fields:
            raise unknown_key(where, key, fields)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, item in fields.items():
        path = join(where, name)
        if name in raw:
            values[name] = _read_field(raw[name], hints[name], item, path)
        elif item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}: missing (required)")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as exc:  # a __post_init__ check: "<field>: message"
        raise ConfigError(f"{where + '.' if where else ''}{exc}") from None


def _read_field(value: Any, hint: Any, item: dataclasses.Field, path: str) -> Any:
    reader = item.metadata.get("read")
    if reader is not None:
        return reader(value, path)
    return convert(value, hint, path, item.metadata.get("minimum"))


def convert(value: Any, hint: Any, path: str, minimum: float | None = None) -> Any:
    """`value` checked against the annotation `hint` (lists become tuples for tuple fields)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Union or origin is types.UnionType:
        return _union(value, args, path, minimum)
    if origin is Literal:
        return _literal(value, args, path)
    if dataclasses.is_dataclass(hint):
        return read_section(hint, value, path)
    if hint in (bool, int, float, str):
        return _scalar(value, hint, path, minimum)
    if origin in (tuple, collections.abc.Sequence):
        return _sequence(value, args, path, minimum)
    if origin in (dict, collections.abc.Mapping):
        return _mapping(value, args, path, minimum)
    raise TypeError(f"{path}: the reader has no rule for the annotation {hint!r}")


def _union(value: Any, args: tuple, path: str, minimum: float | None) -> Any:
    if value is None and type(None) in args:
        return None
    inner = [arg for arg in args if arg is not type(None)]
    if len(inner) != 1:
        raise TypeError(f"{path}: the reader has no rule for a union of {inner!r}")
    return convert(value, inner[0], path, minimum)


def _literal(value: Any, choices: tuple, path: str) -> Any:
    if value in choices and type(value) in {type(choice) for choice in choices}:
        return value
    close = difflib.get_close_matches(str(value), [str(choice) for choice in choices], n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"{path}: one of {', '.join(map(str, choices))}, got {value!r}{hint}")


_WANTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _scalar(value: Any, kind: type, path: str, minimum: float | None) -> Any:
    ok = {bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str)}[kind]
    below = ok and minimum is not None and value < minimum
    if ok and not below:
        return float(value) if kind is float else value
    wanted = _WANTED[kind]
    if minimum is not None:
        wanted = ("a positive integer" if (kind, minimum) == (int, 1)
                  else f"{wanted} >= {minimum}")
    raise ConfigError(f"{path}: expected {wanted}, got {value!r}")


def _sequence(value: Any, args: tuple, path: str, minimum: float | None) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{path}: expected a list, got {value!r}")
    if (args and args[-1] is Ellipsis) or len(args) == 1:
        kinds = [args[0]] * len(value)
    elif args:
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {list(value)!r}")
        kinds = list(args)
    else:
        kinds = [Any] * len(value)
    return tuple(convert(item, kind, f"{path}[{index}]", minimum)
                 for index, (item, kind) in enumerate(zip(value, kinds)))


def _mapping(value: Any, args: tuple, path: str, minimum: float | None) -> dict:
    if not isinstance(value, collections.abc.Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {value!r}")
    kind = args[1] if args else Any
    return {str(key): convert(item, kind, join(path, str(key)), minimum)
            for key, item in value.items()}
