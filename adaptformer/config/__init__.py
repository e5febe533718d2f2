"""Typed experiment configuration (schema.py, loading.py, build.py, checks.py; the public API here): YAML files with `_base_` inheritance and
`-o section.key=value` overrides, validated against the dataclasses below.

Every error names the file (or `-o`) the offending key came from and what was
expected. The resolved config is the single source of truth for a run and is
saved next to its outputs.
"""
from __future__ import annotations

import os

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import yaml

from adaptformer.errors import ConfigError  # noqa: F401  (raised here; defined with the other errors)
from adaptformer.config.build import _build
from adaptformer.config.checks import _check_consistency, method_sections  # noqa: F401
from adaptformer.config.loading import _load_with_bases, _record_origin, apply_overrides, load_yaml, parse_override  # noqa: F401
from adaptformer.config.schema import (  # noqa: F401  (the schema's classes are part of the public API)
    AmpConfig,
    AugmentConfig,
    CHOICES,
    Config,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimizerConfig,
    SchedulerConfig,
    StageConfig,
    StudyConfig,
    SuiteConfig,
    SweepConfig,
    TrainConfig,
)

def load_config(
    path: str,
    overrides: Optional[List[str]] = None,
    extra: Optional[Dict[str, Any]] = None,
    method: Optional[str] = None,
) -> Config:
    """Read a run config; `extra` (dotted keys) is applied before the `-o` overrides.
    `method` replaces method.name and drops the file's settings of other methods
    (one file describing several methods, as the benchmark uses it)."""
    origin: Dict[str, str] = {}
    data = _load_with_bases(path, origin)
    for kind in ("study", "suite"):
        if kind in data:
            raise ConfigError(f"{path}: this is a {kind} config; run it with tools/train.py -c {path}")
    if extra:
        apply_overrides(data, extra, origin, f"{path} (study overrides)")
    if method is not None:
        chosen = [n.strip() for n in method.split("+")]
        section = data.setdefault("method", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: method must be a mapping, got {section!r}")
        for name in method_sections():
            if name not in chosen and section.pop(name, None) is not None:
                for key in [k for k in origin if k.startswith(f"method.{name}.")]:
                    del origin[key]
        apply_overrides(data, {"method.name": method}, origin, "--method")
    parsed = dict(parse_override(o) for o in (overrides or []))
    apply_overrides(data, parsed, origin, "-o")
    cfg = _build(Config, data, origin, path)
    _check_consistency(cfg, origin, path)
    return cfg


def is_study(path: str) -> bool:
    return "study" in load_yaml(path)


def is_suite(path: str) -> bool:
    return "suite" in load_yaml(path)


def split_study_overrides(overrides: Optional[List[str]], section: str = "study") -> tuple:
    """(-o study.KEY=VALUE as a dict, the other -o strings, which go to every stage's run config)."""
    study, runs = {}, []
    for o in overrides or []:
        key, value = parse_override(o)
        if key.startswith(section + "."):
            study[key[len(section) + 1:]] = value
        else:
            runs.append(o)
    return study, runs


def load_suite(path: str, overrides: Optional[Dict[str, Any]] = None) -> SuiteConfig:
    """A suite file; `overrides` are its own keys (without the suite. prefix) from -o."""
    origin: Dict[str, str] = {}
    data = _load_with_bases(path, origin)
    if set(data) != {"suite"}:
        raise ConfigError(f"{path}: a suite file holds only a 'suite:' section, found {sorted(data)}")
    if overrides:
        apply_overrides(data, {f"suite.{k}": v for k, v in overrides.items()}, origin, "-o")
    suite = _build(SuiteConfig, data["suite"], origin, path, prefix="suite.")
    names = [m.name for m in suite.methods]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"{path}: suite.methods must name at least one method, each once, got {names}")
    for m in suite.methods:
        if m.pretrained_from or m.checkpoint:
            raise ConfigError(f"{path}: suite method '{m.name}': pretrained_from and checkpoint are study keys; "
                              "a suite's methods start from their config's model.pretrained")
    if suite.sweep.key is not None and not suite.sweep.values:
        raise ConfigError(f"{path}: suite.sweep.key {suite.sweep.key} needs values")
    bad = [n for n in suite.sweep.stages if n not in names]
    if bad:
        raise ConfigError(f"{path}: suite.sweep.stages must be method names from {names}, got {bad}")
    for pair in suite.compare:
        if not (isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1] and set(pair) <= set(names)):
            raise ConfigError(f"{path}: suite.compare entries are pairs of two method names from {names}, got {pair!r}")
    return suite


def load_study(path: str, overrides: Optional[Dict[str, Any]] = None) -> StudyConfig:
    """A study file; `overrides` are its own keys (without the study. prefix) from -o."""
    origin: Dict[str, str] = {}
    data = _load_with_bases(path, origin)
    unknown = set(data) - {"study"}
    if unknown:
        raise ConfigError(f"{path}: a study file holds only a 'study:' section, found {sorted(unknown)}")
    if overrides:
        apply_overrides(data, {f"study.{k}": v for k, v in overrides.items()}, origin, "-o")
    study = _build(StudyConfig, data["study"], origin, path, prefix="study.")
    names = [s.name for s in study.stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: study.stages names must be distinct, got {names}")
    for i, s in enumerate(study.stages):
        if s.pretrained_from is not None and s.pretrained_from not in names[:i]:
            raise ConfigError(
                f"{path}: stage '{s.name}' has pretrained_from '{s.pretrained_from}', "
                f"which is not an earlier stage ({names[:i]})"
            )
    for pair in study.compare:
        if len(pair) != 2 or any(n not in names for n in pair):
            raise ConfigError(f"{path}: study.compare entries must be two stage names from {names}, got {pair}")
    bad = [n for n in study.sweep.stages if n not in names]
    if bad or (study.sweep.key is not None and not study.sweep.values):
        raise ConfigError(f"{path}: study.sweep needs values and stage names from {names}, got stages {bad or []}")
    return study


def from_dict(data: Dict[str, Any], source: str) -> Config:
    """A Config from plain data, e.g. sections saved beside tuned weights (absent sections and
    keys take their defaults), validated as load_config validates a file; errors name `source`."""
    origin: Dict[str, str] = {}
    if isinstance(data, dict):
        _record_origin(data, origin, source, "")
    cfg = _build(Config, data, origin, source)
    _check_consistency(cfg, origin, source)
    return cfg


def to_dict(cfg) -> Dict[str, Any]:
    data = dataclasses.asdict(cfg)
    if isinstance(cfg, Config):
        # Settings of methods not chosen are errors, so a saved config must not carry them.
        chosen = cfg.method.names
        data["method"] = {k: v for k, v in data["method"].items() if k not in method_sections() or k in chosen}
        # Likewise the settings of dataset kinds other than data.dataset.
        from adaptformer.data.kinds import KINDS

        data["data"] = {k: v for k, v in data["data"].items()
                        if not (k in KINDS and KINDS[k].section is not None) or k == cfg.data.dataset}
    return data


def save_config(cfg: Config, path: str) -> None:
    from adaptformer.files.atomic import atomic_write_text

    atomic_write_text(path, dump(cfg))


def dump(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def check_saved_config(cfg: Config, out: str, ignored: Sequence[str] = (), fix: str = "") -> None:
    """The one rule for reusing a run folder (--resume of a run, of a study's finished run): its
    config.yaml exists and is `cfg`, apart from train.output_dir (a folder may be moved) and the
    `ignored` dotted keys. The saved file is loaded like any config, so keys added since that run
    compare at their defaults. A one-line ConfigError ending with `fix` otherwise."""
    path = os.path.join(out, "config.yaml")
    if not os.path.lexists(path):
        raise ConfigError(f"{out}: a run without its config.yaml cannot be checked for --resume; {fix}")
    saved, planned = yaml.safe_load(dump(load_config(path))), yaml.safe_load(dump(cfg))
    for key in ("train.output_dir", *ignored):
        section, name = key.split(".", 1)
        for d in (saved, planned):
            if isinstance(d.get(section), dict):
                d[section].pop(name, None)
    if saved != planned:
        raise ConfigError(f"{path}: the run in {out} was made with another config; {fix}")
