"""Tuned weights: only what a tuning method changed, saved apart from the backbone it tuned.

A folder holds two files (docs/tuned_weights.md):

    tuned.pdparams   the tuned tensors (paddle.save format): trainable parameters, LoRA as its
                     factors, plus the buffers and BatchNorm statistics of every sub-layer that
                     trains (runs in train mode under freeze.set_train_mode)
    tuned.json       what rebuilds the model around them: the model and method config, class
                     names, eval transform, the tensor list and the backbone's fingerprint

    save_tuned(model, out_dir, cfg, class_names)       write the folder
    read_tuned_meta(tuned_dir)                         tuned.json, validated
    load_tuned(model, tuned_dir, force=False)          onto a backbone, strictly, fingerprint checked
    build_tuned_model(tuned_dir, backbone_weights)     backbone file + tuned folder -> model in eval mode

The fingerprint (sha256 over the frozen tensors' names, dtypes, shapes and bytes) tells whether
a backbone is the one the weights were tuned on; another one is refused unless `force`.
Every file is read through the restricted reader (checkpoint.read_state).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Dict, List, Optional

import paddle
import paddle.nn as nn

from adaptformer import freeze
from adaptformer.data.transforms import EVAL_KEYS
from adaptformer.models.backbone import build_model
from adaptformer.weights.checkpoint import check_keys, dtype_name, key_mismatch, read_state
from adaptformer.config import Config, ConfigError, from_dict, to_dict
from adaptformer.errors import CheckpointError, InputFileError, one_line, quoted
from adaptformer.files import read_json
from adaptformer.methods import apply_method
from adaptformer.methods.registry import method_layer_classes
from adaptformer.models.lora import is_merged
from adaptformer.files.atomic import atomic_write, atomic_write_text, remove_stale_temp_files

FORMAT = "adaptformer-tuned/1"
WEIGHTS = "tuned.pdparams"
META = "tuned.json"
EVAL_TRANSFORM_KEYS = EVAL_KEYS  # what the meta records of the evaluation transform


def eval_transform_of(data: Dict) -> Dict:
    """The data settings a tuned folder keeps to prepare inputs as the run's evaluation did: for a
    video run also data.video (clip length, sampling, the test's views)."""
    kept = {k: data[k] for k in EVAL_TRANSFORM_KEYS}
    if data["dataset"] == "video":
        kept["video"] = data["video"]
    return kept
META_KEYS = ("format", "model", "method", "class_names", "eval_transform", "tensors", "backbone_fingerprint")
_FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")


# --- what is tuned ---------------------------------------------------------------------------

def tuned_state_names(model: nn.Layer) -> List[str]:
    """State-dict names of what the method changed: trainable parameters, and the other entries
    (buffers such as a fixed adapter scale, BatchNorm statistics, which Paddle keeps as frozen
    parameters) of every sub-layer that trains, i.e. is not inside one freeze.frozen_sublayers names."""
    trainable = freeze.trainable_named_parameters(model)
    learnable = freeze.learnable_parameters(model)
    frozen = freeze.frozen_sublayers(model)

    def trains(owner: str) -> bool:
        return not any(owner == f or owner.startswith(f + ".") for f in frozen)

    return [
        name for name in model.state_dict()
        if name in trainable or (name not in learnable and trains(name.rpartition(".")[0]))
    ]


def backbone_fingerprint(model: nn.Layer, tuned_names) -> str:
    """sha256 over every state-dict tensor not in `tuned_names`, in sorted-name order: for each a
    JSON header [name, dtype, shape] and a newline, then its bytes."""
    state = model.state_dict()
    tuned = set(tuned_names)
    digest = hashlib.sha256()
    for name in sorted(k for k in state if k not in tuned):
        tensor = state[name]
        digest.update(json.dumps([name, dtype_name(tensor), list(tensor.shape)]).encode() + b"\n")
        digest.update(tensor.numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


def _method_modules(model: nn.Layer) -> List[nn.Layer]:
    """The layers a method inserted (every method's own list, methods/registry.py)."""
    return [layer for layer in model.sublayers() if isinstance(layer, method_layer_classes())]


def _refuse_merged(model: nn.Layer, where: str) -> None:
    if any(is_merged(layer) for layer in model.sublayers()):
        raise CheckpointError(f"{where}: the model's LoRA layers are merged; tuned weights hold LoRA as its factors "
                              "(models.lora.unmerge_lora first)")


# --- saving ----------------------------------------------------------------------------------

def save_tuned(model: nn.Layer, out_dir: str, cfg: Config, class_names: List[str],
               fingerprint: Optional[str] = None) -> str:
    """Write `out_dir`/tuned.pdparams and tuned.json (each atomically) for a model that `cfg`'s
    method was applied to; returns `out_dir`. `fingerprint`: the backbone's, taken before AMP O2
    cast it (the float32 backbone the weights are served on); by default the model's own."""
    if cfg.method.names == ["full"]:
        raise CheckpointError(f"{out_dir}: method 'full' trains every tensor; save the whole state dict instead")
    _refuse_merged(model, out_dir)
    names = [str(n) for n in class_names]
    if len(names) != cfg.model.num_classes:
        raise CheckpointError(f"{out_dir}: {len(names)} class names for a {cfg.model.num_classes}-class model")
    state = model.state_dict()
    tuned = tuned_state_names(model)
    data = to_dict(cfg)
    meta = {
        "format": FORMAT,
        "model": data["model"],  # name, num_classes, kwargs; pretrained: the backbone file it was tuned on
        "method": data["method"],
        "class_names": names,
        "eval_transform": eval_transform_of(data["data"]),
        "tensors": {n: {"shape": list(state[n].shape), "dtype": dtype_name(state[n])} for n in tuned},
        "backbone_fingerprint": fingerprint or backbone_fingerprint(model, tuned),
    }
    remove_stale_temp_files(out_dir)
    atomic_write(os.path.join(out_dir, WEIGHTS), lambda tmp: paddle.save({n: state[n] for n in tuned}, tmp))
    atomic_write_text(os.path.join(out_dir, META), json.dumps(meta, indent=2) + "\n")
    return out_dir


def tuned_size(tuned_dir: str) -> int:
    """Bytes of the two files."""
    return sum(os.path.getsize(os.path.join(tuned_dir, n)) for n in (WEIGHTS, META))


# --- reading ---------------------------------------------------------------------------------

def _read_json(path: str):
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not found (a tuned-weights folder holds {META} and {WEIGHTS})")
    try:
        return read_json(path, "json", want=None)
    except InputFileError as e:
        raise CheckpointError(str(e)) from None


def tuned_config(meta: Dict, source: str) -> Config:
    """The model, method and eval-transform sections of `meta` as a Config (other sections default)."""
    try:
        return from_dict({"model": meta["model"], "method": meta["method"], "data": meta["eval_transform"]}, source)
    except ConfigError as e:
        raise CheckpointError(one_line(e)) from None


def _check_tensors(tensors, path: str) -> None:
    if not isinstance(tensors, dict) or not tensors:
        raise CheckpointError(f"{path}: 'tensors' must map tensor names to {{shape, dtype}}")
    for name, spec in tensors.items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        ok = (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
              and isinstance(spec.get("dtype"), str))
        if not ok:
            raise CheckpointError(f"{path}: tensors['{one_line(name)}'] must be {{\"shape\": [int, ...], \"dtype\": str}}")


def read_tuned_meta(tuned_dir: str) -> Dict:
    """tuned.json of a tuned-weights folder, checked key by key (one-line errors naming the file and key)."""
    if not os.path.isdir(tuned_dir):
        what = "is a file" if os.path.exists(tuned_dir) else "not found"
        raise CheckpointError(f"{tuned_dir}: {what}, expected a tuned-weights folder ({META} and {WEIGHTS})")
    path = os.path.join(tuned_dir, META)
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: holds a {type(meta).__name__}, expected an object")
    if meta.get("format") != FORMAT:
        found = one_line(str(meta.get("format")))[:60]
        raise CheckpointError(f"{path}: 'format' is {found!r}, expected {FORMAT!r} (tuned weights of this package)")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: missing {', '.join(repr(k) for k in missing)}")
    keys = list(EVAL_TRANSFORM_KEYS) + (["video"] if isinstance(meta["eval_transform"], dict)
                                        and meta["eval_transform"].get("dataset") == "video" else [])
    if not isinstance(meta["eval_transform"], dict) or set(meta["eval_transform"]) != set(keys):
        raise CheckpointError(f"{path}: 'eval_transform' must hold exactly {', '.join(keys)}")
    cfg = tuned_config(meta, path)
    names = meta["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) != cfg.model.num_classes:
        raise CheckpointError(f"{path}: 'class_names' must be a list of {cfg.model.num_classes} strings "
                              "(model.num_classes)")
    _check_tensors(meta["tensors"], path)
    if not isinstance(meta["backbone_fingerprint"], str) or not _FINGERPRINT.match(meta["backbone_fingerprint"]):
        raise CheckpointError(f"{path}: 'backbone_fingerprint' must be 'sha256:' and 64 hex digits")
    return meta


# --- loading ---------------------------------------------------------------------------------

def _prepare(model: nn.Layer, cfg: Config, path: str) -> None:
    """Head for the meta's class count; the method applied unless its modules are already there
    (methods without modules, linear and bitfit, only freeze: applying them again changes nothing)."""
    if getattr(model, "num_classes", None) != cfg.model.num_classes:
        model.reset_classifier(cfg.model.num_classes)
    if not _method_modules(model):
        try:
            apply_method(model, cfg.method)
        except ValueError as e:
            raise CheckpointError(f"{path}: method {cfg.method.name}: {one_line(e)}") from None


def load_tuned(model: nn.Layer, tuned_dir: str, force: bool = False, log=print,
               fingerprint: Optional[str] = None) -> Dict:
    """Tuned weights onto `model`: a backbone with its pretrained weights, with or without the
    method applied. Strict: the file holds exactly the tensors the model's method tunes, in their
    shapes, and the model's frozen tensors must have the fingerprint the weights were tuned on
    (`force` loads onto another backbone with a warning). `fingerprint` is that of the model's
    frozen tensors when the caller already has it (TaskBank: the same shared tensors for every
    task of a shape). Returns the meta."""
    meta = read_tuned_meta(tuned_dir)
    meta_path, path = os.path.join(tuned_dir, META), os.path.join(tuned_dir, WEIGHTS)
    _refuse_merged(model, path)
    state = read_state(path)
    _prepare(model, tuned_config(meta, meta_path), meta_path)
    model_state = model.state_dict()
    tuned = tuned_state_names(model)
    check_keys(state, {n: model_state[n] for n in tuned}, path,
               f"does not fit the model with method {meta['method']['name']}")
    listed = {n: (spec["shape"], spec["dtype"]) for n, spec in meta["tensors"].items()}
    mismatch = key_mismatch(listed, state)
    if mismatch:
        raise CheckpointError(f"{meta_path}: 'tensors' and {WEIGHTS} disagree ({mismatch} in {WEIGHTS})")
    for n in tuned:
        held = (list(model_state[n].shape), dtype_name(model_state[n]))
        if listed[n] != held:
            raise CheckpointError(f"{meta_path}: tensors['{one_line(n)}'] is {listed[n][0]} {quoted(listed[n][1])}, "
                                  f"the model holds {held[0]} {held[1]}")
    found = fingerprint or backbone_fingerprint(model, tuned)
    expected = meta["backbone_fingerprint"]
    if found != expected:
        message = f"{tuned_dir}: tuned on backbone {expected}, but this model's frozen tensors are {found}"
        if not force:
            raise CheckpointError(f"{message}; force=True (CLI --force) loads them anyway")
        log(f"warning: {message}; loading anyway (force)")
    with paddle.no_grad():
        for n in tuned:
            model_state[n].set_value(state[n])
    return meta


def build_tuned_model(tuned_dir: str, backbone_weights: str = None, force: bool = False, log=print):
    """(model in eval mode, meta): the meta's model with the backbone file (default: the meta's
    model.pretrained) loaded by the training rules, then the tuned weights."""
    meta = read_tuned_meta(tuned_dir)
    meta_path = os.path.join(tuned_dir, META)
    cfg = tuned_config(meta, meta_path)
    if backbone_weights is None:
        source, weights = f"{meta_path}: model.pretrained", cfg.model.pretrained
        if weights is None:
            raise CheckpointError(f"{meta_path}: model.pretrained is null (tuned on a randomly initialised backbone?); "
                                  "pass backbone_weights=PATH")
    else:
        source, weights = "backbone_weights", backbone_weights
    model = build_model(cfg, weights=weights, log=log, source=source, hint="pass backbone_weights=PATH",
                        error=CheckpointError, where=f"{meta_path}: method {cfg.method.name}", log_method=False)
    load_tuned(model, tuned_dir, force=force, log=log)
    model.eval()
    return model, meta
