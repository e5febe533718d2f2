"""Plain data -> the typed dataclasses: unknown keys, types and fixed choices checked, every
error naming the file (or `-o`) the key came from."""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Dict, List, Optional

from adaptformer.errors import ConfigError
from adaptformer.config.schema import CHOICES

def _where(origin: Dict[str, str], key: str, default: str) -> str:
    # The most specific recorded source of this key or of an enclosing section.
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        src = origin.get(".".join(parts[:i]))
        if src:
            return src
    return default


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str, where: str) -> Any:
    origin_tp = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin_tp is typing.Union and type(None) in args:
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key, where)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        raise AssertionError("sections are built by _build")
    if origin_tp in (list, List):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list of {_type_name(args[0])}, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin_tp in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        number = _as_float(value)
        if number is None:
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return value
    raise AssertionError(f"unsupported schema type {tp} for {key}")


def _as_float(value: Any) -> Optional[float]:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _build(cls, data: Any, origin: Dict[str, str], default_src: str, prefix: str = ""):
    where = _where(origin, prefix.rstrip("."), default_src) if prefix else default_src
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in fields:
            known = ", ".join(fields)
            raise ConfigError(
                f"{_where(origin, prefix + str(k), default_src)}: unknown key '{prefix}{k}' (known: {known})"
            )
    kwargs = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing required key '{key}'")
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name], origin, default_src, key + ".")
        elif typing.get_origin(tp) in (list, List) and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            items = data[name]
            if not isinstance(items, list):
                raise ConfigError(f"{_where(origin, key, default_src)}: {key} must be a list")
            kwargs[name] = [
                _build(typing.get_args(tp)[0], item, origin, default_src, f"{key}[{i}].")
                for i, item in enumerate(items)
            ]
        else:
            value = _coerce(data[name], tp, key, _where(origin, key, default_src))
            allowed = CHOICES.get(key)
            if allowed and value not in allowed:
                raise ConfigError(
                    f"{_where(origin, key, default_src)}: {key} must be one of {', '.join(allowed)}, got {value!r}"
                )
            kwargs[name] = value
    return cls(**kwargs)
