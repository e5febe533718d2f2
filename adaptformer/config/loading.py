"""YAML files with `_base_` inheritance and `-o key=value` overrides, with the origin (file or
`-o`) of every key recorded for error messages. YAML itself is read by files/yaml_reader.py."""
from __future__ import annotations

import copy
import os
from typing import Any, Dict, Optional

from adaptformer.errors import ConfigError, InputFileError, one_line
from adaptformer.files.yaml_reader import parse_yaml, read_yaml

def load_yaml(path: str) -> Dict[str, Any]:
    if not os.path.lexists(path):
        raise ConfigError(f"{path}: config file not found")
    try:
        data = read_yaml(path)
    except InputFileError as e:
        raise ConfigError(str(e)) from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty (or only comments); a config needs at least one section")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _merge(base: Dict, top: Dict) -> Dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _record_origin(d: Dict, origin: Dict[str, str], source: str, prefix: str) -> None:
    for k, v in d.items():
        origin[prefix + str(k)] = source
        if isinstance(v, dict):
            _record_origin(v, origin, source, f"{prefix}{k}.")


def _load_with_bases(path: str, origin: Dict[str, str], seen: tuple = (), done: Optional[Dict] = None) -> Dict[str, Any]:
    """`path` merged over its `_base_` files; each file is read and merged once however often it is
    named (`done`), so a diamond of bases costs no more than a chain."""
    path = os.path.normpath(path)
    if path in seen:
        raise ConfigError(f"{path}: _base_ inheritance loops back to itself")
    done = {} if done is None else done
    if path in done:
        merged, recorded = done[path]
        origin.update(recorded)
        return copy.deepcopy(merged)
    own_origin: Dict[str, str] = {}
    data = load_yaml(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a file path or a list of file paths")
    merged: Dict[str, Any] = {}
    for b in bases:
        base_path = os.path.join(os.path.dirname(path), b)
        merged = _merge(merged, _load_with_bases(base_path, own_origin, seen + (path,), done))
    _record_origin(data, own_origin, path, "")
    merged = _merge(merged, data)
    done[path] = (copy.deepcopy(merged), dict(own_origin))
    origin.update(own_origin)
    return merged


def parse_override(text: str) -> tuple:
    """'optimizer.lr=0.1' -> ('optimizer.lr', 0.1); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"-o {text}: expected key=value, e.g. -o optimizer.lr=0.1")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"-o {text}: empty key")
    value = parse_yaml(raw, f"-o {one_line(text)[:80]}") if raw.strip() else None
    return key, value


def apply_overrides(data: Dict[str, Any], overrides: Dict[str, Any], origin: Dict[str, str], source: str) -> None:
    for key, value in overrides.items():
        parts = key.split(".")
        node = data
        for i, p in enumerate(parts[:-1]):
            if p not in node:
                origin.setdefault(".".join(parts[: i + 1]), source)  # a section only the override names
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source} {key}: '{p}' is a value, not a section")
            node = child
        node[parts[-1]] = value
        origin[key] = source
        if isinstance(value, dict):
            _record_origin(value, origin, source, key + ".")
