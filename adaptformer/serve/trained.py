"""A trained model ready for inference, from a run (config + checkpoint) or a tuned folder
(adaptformer/serve/tuned.py): the model in eval mode, its class names and the data settings its
inputs are prepared with. Prediction (predict.py) and export (export.py) start from here."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

from adaptformer.config import Config, ConfigError, DataConfig, load_config
from adaptformer.data import DataError, class_names
from adaptformer.files import read_json
from adaptformer.files.outputs import TUNED_FILES


@dataclass
class TrainedModel:
    model: Any  # paddle.nn.Layer, in eval mode
    class_names: List[str]
    data: DataConfig  # img_size, mean, std, eval_resize_crop: the evaluation transform
    source: str  # what the weights came from, for messages and the files written
    model_config: Dict[str, Any] = field(default_factory=dict)  # name, kwargs, num_classes
    method: Dict[str, Any] = field(default_factory=dict)
    inputs: List[str] = field(default_factory=list)  # the files it was built from: no output may replace them


def _quiet(*args, **kwargs) -> None:
    pass


def _recorded_class_names(checkpoint: str) -> Optional[List[str]]:
    """The class names a run recorded in summary.json beside its checkpoint, if any."""
    summary = os.path.join(os.path.dirname(checkpoint), "summary.json")
    if not os.path.lexists(summary):
        return None
    names = read_json(summary, "json", "a run's summary.json (read for its class names)").get("class_names")
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


def _class_names(cfg: Config, checkpoint: str, log) -> List[str]:
    """The class names the run recorded (summary.json), else the data config's; class_0.. when
    neither is there (the data is never downloaded for this)."""
    recorded = _recorded_class_names(checkpoint)
    if recorded is not None and len(recorded) == cfg.model.num_classes:
        return recorded
    try:
        names = class_names(dataclasses.replace(cfg.data, download=False))
    except DataError as e:
        names = [f"class_{i}" for i in range(cfg.model.num_classes)]
        log(f"warning: no class names ({e}); predictions are named class_0..class_{cfg.model.num_classes - 1}")
    if len(names) != cfg.model.num_classes:
        raise ConfigError(f"model.num_classes is {cfg.model.num_classes} but the data has {len(names)} classes")
    return names


def from_run(config: Union[str, Config], checkpoint: Optional[str] = None, overrides: Sequence[str] = (),
             log=print) -> TrainedModel:
    """The model of run config `config` (a path or a Config) with `checkpoint` loaded strictly
    (default: best.pdparams in its train.output_dir)."""
    from adaptformer.engine.runner import build_model, load_run_weights
    from adaptformer.engine.trainer import BEST

    cfg = load_config(config, list(overrides)) if isinstance(config, str) else config
    checkpoint = checkpoint or os.path.join(cfg.train.output_dir, BEST)
    names = _class_names(cfg, checkpoint, log)
    model = build_model(cfg, load_backbone=False, log=_quiet)
    load_run_weights(model, checkpoint)
    model.eval()
    model_config = {"name": cfg.model.name, "kwargs": dict(cfg.model.kwargs), "num_classes": cfg.model.num_classes}
    inputs = [checkpoint, os.path.join(os.path.dirname(checkpoint), "summary.json")]
    inputs += [config] if isinstance(config, str) else []
    return TrainedModel(model, names, cfg.data, checkpoint, model_config, dataclasses.asdict(cfg.method), inputs)


def from_tuned(tuned_dir: str, backbone_weights: Optional[str] = None, force: bool = False,
               log=print) -> TrainedModel:
    """A tuned folder's model (adaptformer.serve.tuned.build_tuned_model) with its recorded class names
    and evaluation-transform settings."""
    from adaptformer.serve.tuned import META, build_tuned_model, tuned_config

    model, meta = build_tuned_model(tuned_dir, backbone_weights=backbone_weights, force=force, log=log)
    model.eval()
    cfg = tuned_config(meta, os.path.join(tuned_dir, META))  # read_tuned_meta has validated every section
    model_config = {"name": cfg.model.name, "kwargs": dict(cfg.model.kwargs), "num_classes": cfg.model.num_classes}
    inputs = [os.path.join(tuned_dir, n) for n in TUNED_FILES] + [backbone_weights or cfg.model.pretrained]
    return TrainedModel(model, list(meta["class_names"]), cfg.data, tuned_dir, model_config, dict(meta["method"]),
                        inputs)
