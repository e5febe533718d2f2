"""Several tasks on one backbone in one process: the backbone's tensors exist once.

    bank = TaskBank(backbone)                # a plain model with its pretrained weights
    bank.add("cifar100", "runs/c100/tuned")  # tuned-weights folders (adaptformer/serve/tuned.py)
    bank.add("flowers", "runs/flowers/tuned")
    bank.activate("flowers")
    logits = bank(images)                    # [batch, 3, H, W] -> the active task's logits

Tasks on several backbones (an image ViT and a video ViT, say) share one bank: name the backbones
and say which one each task is on.

    bank = TaskBank({"vit": image_backbone, "videomae": video_backbone})
    bank.add("cifar100", "runs/c100/tuned", backbone="vit")
    bank.add("ssv2", "runs/ssv2/tuned", backbone="videomae")   # its inputs are clips [batch, 3, T, H, W]

A task's model is built under paddle.LazyGuard (its tensors are not allocated), every
frozen backbone tensor is replaced by the backbone's own Parameter / Tensor object, the
method's modules are inserted, what is still unallocated (the head) is initialised, and the
tuned weights are loaded strictly, fingerprint checked. Tasks of the same shape (model,
method config and class count) share one such model: each keeps only its own tuned tensors,
which are put into the model's slots when the task is used. So the first task of a shape costs
its tuned tensors plus its layer objects, every further one its tuned tensors alone. The shared
tensors are frozen (stop_gradient) by the methods applied.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import paddle
import paddle.nn as nn

from adaptformer.models.backbone import build_model
from adaptformer.config import ConfigError
from adaptformer.errors import CheckpointError, one_line
from adaptformer.serve.tuned import META, backbone_fingerprint, load_tuned, read_tuned_meta, tuned_config, tuned_state_names


@dataclass
class _Backbone:
    model: nn.Layer
    state: Dict[str, paddle.Tensor]
    parameters: set


@dataclass
class _Shape:
    """One model for every task of the same shape; `bound` is the task whose tensors it holds."""
    model: nn.Layer
    shared: List[str]  # state-dict names whose tensors are the backbone's
    bound: Optional[str] = None
    # Of the frozen tensors, computed once: they are the backbone's, which the bank never changes.
    fingerprint: Optional[str] = None


@dataclass
class _Task:
    shape: _Shape
    meta: Dict
    tensors: Dict[str, paddle.Tensor] = field(default_factory=dict)  # the task's own tuned tensors

    @property
    def model(self) -> nn.Layer:
        return self.shape.model

    @property
    def shared(self) -> List[str]:
        return self.shape.shared


def _shape_key(meta: Dict, backbone: str) -> str:
    return json.dumps([backbone, meta["model"], meta["method"], len(meta["class_names"])], sort_keys=True)


def _owner(model: nn.Layer, name: str):
    """(sub-layer, leaf) that holds state-dict entry `name`."""
    *path, leaf = name.split(".")
    layer = model
    for part in path:
        layer = dict(layer.named_children())[part]
    return layer, leaf


def _is_parameter(layer: nn.Layer, leaf: str) -> bool:
    return leaf in dict(layer.named_parameters(include_sublayers=False))


def _slot_tensor(model: nn.Layer, name: str) -> paddle.Tensor:
    layer, leaf = _owner(model, name)
    return getattr(layer, leaf)


def _like(model: nn.Layer, name: str, tensor: paddle.Tensor) -> paddle.Tensor:
    """A new tensor for slot `name`, of its kind (parameter or buffer), shape, dtype and trainability."""
    if _is_parameter(*_owner(model, name)):
        new = paddle.create_parameter(tensor.shape, tensor.dtype)
        new.stop_gradient = tensor.stop_gradient
        return new
    return paddle.zeros(tensor.shape, tensor.dtype)


DEFAULT_BACKBONE = "backbone"


class TaskBank:
    def __init__(self, backbones, log=print):
        """`backbones`: one plain model with its pretrained weights, or {name: model} for tasks on several."""
        if isinstance(backbones, nn.Layer):
            backbones = {DEFAULT_BACKBONE: backbones}
        if not isinstance(backbones, dict) or not backbones or \
                not all(isinstance(k, str) and isinstance(v, nn.Layer) for k, v in backbones.items()):
            raise TypeError("TaskBank takes a backbone model or a non-empty {name: model} dict")
        self._backbones: Dict[str, _Backbone] = {}
        for key, model in backbones.items():
            model.eval()
            self._backbones[key] = _Backbone(model, model.state_dict(), {n for n, _ in model.named_parameters()})
        self._tasks: Dict[str, _Task] = {}
        self._shapes: Dict[str, _Shape] = {}
        self._active: Optional[str] = None
        self._log = log

    # --- tasks -----------------------------------------------------------------------------

    @property
    def backbones(self) -> List[str]:
        return list(self._backbones)

    def backbone(self, name: Optional[str] = None) -> nn.Layer:
        """The backbone model `name` (the only one when the bank has one), whose tensors the tasks share."""
        return self._backbones[self._backbone_named(name)].model

    def _backbone_named(self, backbone: Optional[str]) -> str:
        if backbone is None:
            if len(self._backbones) > 1:
                raise ValueError(f"the bank has backbones {', '.join(self._backbones)}: say which one the task is on "
                                 "(add(..., backbone=NAME))")
            return next(iter(self._backbones))
        if backbone not in self._backbones:
            raise KeyError(f"no backbone {backbone!r} in the bank (backbones: {', '.join(self._backbones)})")
        return backbone

    def add(self, name: str, tuned_dir: str, force: bool = False, backbone: Optional[str] = None) -> None:
        """A task from a tuned-weights folder, on `backbone` (needed when the bank has several);
        the first task added becomes active."""
        if name in self._tasks:
            raise ValueError(f"task {name!r} is already in the bank")
        on = self._backbone_named(backbone)
        meta = read_tuned_meta(tuned_dir)
        key = _shape_key(meta, on)
        shape = self._shapes.get(key) or self._build(meta, tuned_dir, self._backbones[on])
        if shape.bound is not None:  # fresh tensors for this task in the shared model's tuned slots
            self._bind(shape, {n: _like(shape.model, n, t) for n, t in self._tasks[shape.bound].tensors.items()})
            shape.bound = None
        if shape.fingerprint is None:
            shape.fingerprint = backbone_fingerprint(shape.model, tuned_state_names(shape.model))
        load_tuned(shape.model, tuned_dir, force=force, log=self._log, fingerprint=shape.fingerprint)
        shape.model.eval()
        task = _Task(shape, meta, {n: _slot_tensor(shape.model, n) for n in meta["tensors"]})
        self._shapes[key] = shape
        self._tasks[name] = task
        shape.bound = name
        if self._active is None:
            self._active = name

    def _build(self, meta: Dict, tuned_dir: str, backbone: _Backbone) -> _Shape:
        meta_path = os.path.join(tuned_dir, META)
        cfg = tuned_config(meta, meta_path)
        shared: List[str] = []
        try:
            model = build_model(cfg, load_backbone=False, lazy=True, error=CheckpointError, log_method=False,
                                where=f"{meta_path}: method {cfg.method.name}",
                                before_method=lambda m: shared.extend(self._share(m, set(meta["tensors"]), tuned_dir, backbone)))
        except ConfigError as e:
            raise CheckpointError(f"{meta_path}: {one_line(e)}") from None
        for param in model.parameters():
            # LazyGuard's parameters wait for initialize(); Paddle has no public test for that state
            if not param._is_initialized():
                param.initialize()
        return _Shape(model, shared)

    @staticmethod
    def _bind(shape: _Shape, tensors: Dict[str, paddle.Tensor]) -> None:
        for n, tensor in tensors.items():
            setattr(*_owner(shape.model, n), tensor)  # Layer.__setattr__ keeps a parameter one, a buffer one

    def _use(self, name: str) -> _Task:
        """Task `name` with its tensors in its model's slots."""
        task = self._task(name)
        if task.shape.bound != name:
            self._bind(task.shape, task.tensors)
            task.shape.bound = name
        return task

    @staticmethod
    def _share(model: nn.Layer, tuned: set, tuned_dir: str, backbone: _Backbone) -> List[str]:
        """Put the backbone's own tensor objects in place of every entry of `model` that is not tuned."""
        shared = []
        for name, placeholder in model.state_dict().items():
            if name in tuned:
                continue
            own = backbone.state.get(name)
            if own is None:
                raise CheckpointError(f"{tuned_dir}: the task's model has '{name}', which the backbone lacks")
            if list(own.shape) != list(placeholder.shape) or own.dtype != placeholder.dtype:
                raise CheckpointError(f"{tuned_dir}: '{name}' is {list(placeholder.shape)} {placeholder.dtype} in the "
                                      f"task's model, {list(own.shape)} {own.dtype} in the backbone")
            layer, leaf = _owner(model, name)
            slot_is_parameter = _is_parameter(layer, leaf)
            if slot_is_parameter != (name in backbone.parameters):
                kind = "a parameter" if slot_is_parameter else "a buffer"
                raise CheckpointError(f"{tuned_dir}: '{name}' is {kind} in the task's model, not in the backbone")
            setattr(layer, leaf, own)
            shared.append(name)
        return shared

    @property
    def names(self) -> List[str]:
        return list(self._tasks)

    @property
    def active(self) -> Optional[str]:
        return self._active

    def activate(self, name: str) -> None:
        self._task(name)
        self._active = name

    def model(self, name: str) -> nn.Layer:
        """Task `name`'s model. Tasks of the same shape share one model object, which computes
        the task last used through the bank (this call, activate, predict or a bank call)."""
        return self._use(name).model

    def meta(self, name: str) -> Dict:
        return self._task(name).meta

    def class_names(self, name: str) -> List[str]:
        return list(self._task(name).meta["class_names"])

    def shared_names(self, name: str) -> List[str]:
        """State-dict names of `name`'s model whose tensors are the backbone's own objects."""
        return list(self._task(name).shared)

    def _task(self, name: str) -> _Task:
        if name not in self._tasks:
            raise KeyError(f"no task {name!r} in the bank (tasks: {', '.join(self._tasks) or 'none'})")
        return self._tasks[name]

    # --- inference -------------------------------------------------------------------------

    def __call__(self, images):
        """Logits of the active task for a batch of normalised images [N, 3, H, W] or, on a video
        backbone, clips [N, 3, T, H, W] (Tensor or array)."""
        if self._active is None:
            raise KeyError("the bank has no task yet (add one first)")
        model = self._use(self._active).model
        if not isinstance(images, paddle.Tensor):
            images = paddle.to_tensor(np.asarray(images, dtype="float32"))
        model.eval()
        with paddle.no_grad():
            return model(images)

    def predict(self, name: str, sources, topk: int = 5, batch_size: int = 32):
        """Image files or PIL images (video files for a task on a video backbone) classified by task
        `name` with the evaluation transform its tuned folder records: a list of
        adaptformer.serve.predict.Prediction, one per source."""
        from adaptformer.serve.predict import Predictor

        data = tuned_config(self.meta(name), name).data
        predictor = Predictor(self._use(name).model, self.class_names(name), data,
                              batch_size=batch_size)
        return predictor.predict(sources, topk=topk)
