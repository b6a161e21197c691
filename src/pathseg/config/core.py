"""Strict conversion between YAML/dicts and typed dataclass configs.

A config is a (possibly nested) dataclass. :func:`load_config` merges, in order, the dataclass defaults, an
optional YAML file and ``key.sub=value`` overrides, then validates every value against the field types. An
unknown key is an error naming the key and the nearest valid one.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Trainer:
    ...     max_epochs: int = 10
    >>> @dataclass
    ... class Cfg:
    ...     trainer: Trainer = field(default_factory=Trainer)
    >>> load_config(Cfg, overrides=["trainer.max_epochs=5"]).trainer.max_epochs
    5
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from pathseg.errors import ConfigError
from pathseg.io.atomic import atomic_write_text

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _nearest(key: str, options: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, list(options), n=1, cutoff=0.0)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _coerce(value: Any, tp: Any, where: str, partial: bool = False) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, partial)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(f"'{where}': {value!r} does not fit {tp}")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"'{where}': {value!r} is not one of {choices}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{where}': expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{where}.", partial=partial)
    if origin in (list, Sequence, tuple) or tp in (list, tuple):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ConfigError(f"'{where}': expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"'{where}': expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]", partial) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]", partial) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{where}': expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}", partial) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"'{where}': {value!r} is not one of {[e.value for e in tp]}") from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise ConfigError(f"'{where}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"'{where}': expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"'{where}': expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"'{where}': expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"'{where}': expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, Mapping | list):
            raise ConfigError(f"'{where}': expected a string, got {value!r}")
        return str(value)
    if tp is Path:
        if not isinstance(value, str | os.PathLike):
            raise ConfigError(f"'{where}': expected a path, got {value!r}")
        return Path(value)
    raise TypeError(f"unsupported config type {tp} at '{where}'")


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "", partial: bool = False) -> Any:
    """Build dataclass ``cls`` from ``data``, validating keys and types.

    Args:
        cls: A dataclass type.
        data: Values by field name; missing fields keep their defaults.
        prefix: Dotted prefix used in error messages.
        partial: Check keys and types only (a part of a config, e.g. one YAML file before the flags are merged):
            no required values, no ``validate()``; returns the checked values as a dict.

    Raises:
        ConfigError: An unknown key, a missing required value or a value of the wrong type.
    """
    ftypes = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in ftypes:
            full = f"{prefix}{key}"
            raise ConfigError(f"unknown key '{full}'{_nearest(str(key), list(ftypes))}".replace(
                "did you mean '", f"did you mean '{prefix}"))
        kwargs[key] = _coerce(value, ftypes[key], f"{prefix}{key}", partial)
    if partial:
        return kwargs
    missing = [
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init and f.name not in kwargs
        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        flag = f" (give --{missing[0].replace('_', '-')} or set it in the config file)" if not prefix else ""
        raise ConfigError(f"missing required value '{prefix}{missing[0]}'{flag}")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check()
    return obj


def config_to_dict(obj: Any) -> Any:
    """Turn a config (dataclass, lists, paths, enums) into plain YAML-safe Python values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): config_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    return obj


def config_to_yaml(obj: Any) -> str:
    """Serialise a config to YAML text."""
    return yaml.safe_dump(config_to_dict(obj), sort_keys=False)


def save_config(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write a config as YAML, atomically."""
    atomic_write_text(path, config_to_yaml(obj))


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Parse ``key.sub=value`` strings into a nested dict; values are parsed as YAML scalars or lists.

    Raises:
        ConfigError: An override without ``=`` or with an empty key.
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' must look like key=value (e.g. trainer.max_epochs=5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}' conflicts with an earlier value for '{part}'")
            node = child
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping, with file-naming errors for missing files and syntax errors."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config file not found", p)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"YAML syntax error{where}: {problem}", p) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("a config file must hold a mapping at its top level", p)
    return data


def load_config(
    cls: type[T],
    path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
) -> T:
    """Load a typed config: defaults, then the YAML file, then ``values``, then the overrides, validated once.

    Args:
        cls: The dataclass type.
        path: Optional YAML file.
        overrides: ``key.sub=value`` strings.
        values: Values applied after the file (e.g. from command-line flags).

    Raises:
        ConfigError: Unknown keys (with the nearest valid one), type errors, YAML syntax errors; errors from
            the file name it.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(path)
        try:  # unknown keys and wrong types name the file; required values may come from the flags
            from_dict(cls, data, partial=True)
        except ConfigError as exc:
            raise ConfigError(exc.message, path) from None
    data = _merge(_merge(data, dict(values or {})), parse_overrides(overrides))
    return typing.cast(T, from_dict(cls, data))
