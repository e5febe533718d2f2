"""Read a checkpoint file into a flat {name: numpy array}, whatever wrote it.

The format is told by the file's first bytes, not its name:
- zip holding `*/data.pkl`  -> a PyTorch (>= 1.6) checkpoint, restricted unpickler
- zip holding `*.npy`       -> a NumPy .npz (Google / big_vision ViT releases)
- 8-byte length + JSON      -> .safetensors (timm / Hugging Face hub)
- a pickle                  -> a Paddle .pdparams (restricted unpickler as well)
"""
from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from adaptformer.weights.checkpoint import CheckpointError, require_file
from adaptformer.errors import one_line, short_reason
from adaptformer.files import open_regular, read_json
from adaptformer.errors import short_list
from adaptformer.files.safe_pickle import read_npz, read_numpy_pickle, read_torch_zip

INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
# Where training scripts nest the weights: MAE / DeiT {'model'}, Lightning {'state_dict'}, wrappers {'module'}.
CONTAINER_KEYS = ("model", "state_dict", "module")
PADDLE_NAME_TABLE = "StructuredToParameterName@@"  # bookkeeping entry paddle.save adds


@dataclass
class Checkpoint:
    path: str
    format: str  # torch | safetensors | npz | pdparams
    tensors: Dict[str, np.ndarray]
    # (mean, std) the weights were trained with, when the file or its release tells; else None.
    normalization: Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]] = None
    container: Optional[str] = None  # the key the weights were nested under, if any


def read_checkpoint(path: str) -> Checkpoint:
    require_file(path, "a checkpoint file")
    fmt = detect_format(path)
    normalization = None
    if fmt == "npz":
        obj = read_npz(path)
        normalization = INCEPTION  # every Google ViT release normalises to [-1, 1]
    elif fmt == "safetensors":
        obj = _read_safetensors(path)
        normalization = _hub_normalization(path)
    elif fmt == "torch":
        obj = read_torch_zip(path)
    else:
        obj = read_numpy_pickle(path)
    tensors, container = _state_dict(obj, path)
    return Checkpoint(path, fmt, tensors, normalization, container)


def detect_format(path: str) -> str:
    with open_regular(path, "weights", "a checkpoint file") as f:  # a FIFO or device is refused, not read
        head = f.read(16)
    size = os.path.getsize(path)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise CheckpointError(f"{path}: damaged zip archive ({e})") from None
        if any(n.endswith(".npy") for n in names) and not any(n.endswith("data.pkl") for n in names):
            return "npz"
        return "torch"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol >= 2
        # A pickle named like a PyTorch file is torch's pre-1.6 format; its reader says so.
        return "torch" if path.lower().endswith(TORCH_SUFFIXES) else "pdparams"
    raise CheckpointError(
        f"{path}: not a checkpoint this package reads "
        "(expected .pdparams, .safetensors, a Google ViT .npz or a PyTorch .pth zip)"
    )


def _read_safetensors(path: str) -> Dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001  (SafetensorError, or NumPy's refusal of a dtype such as float8)
        msg = short_reason(e) if not isinstance(e, (SafetensorError, ValueError, OSError)) else str(e)
        if "bf16" in msg.lower() or "bfloat16" in msg.lower():
            msg = "bfloat16 tensors are not readable by NumPy; save the checkpoint in float32"
        raise CheckpointError(f"{path}: unreadable .safetensors ({msg})") from None


def _hub_normalization(path: str):
    """timm's Hugging Face repositories keep mean/std in config.json next to model.safetensors."""
    config = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if not os.path.lexists(config):
        return None
    cfg = read_json(config, "json", f"the Hugging Face config.json beside {path}").get("pretrained_cfg", {})
    try:
        return tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _is_flat(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, np.ndarray) for v in obj.values())


def _state_dict(obj, path: str) -> Tuple[Dict[str, np.ndarray], Optional[str]]:
    container = None
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != PADDLE_NAME_TABLE}
        if not _is_flat(obj):
            container = next((k for k in CONTAINER_KEYS if _is_flat(obj.get(k))), None)
            if container is None:
                keys = ", ".join(map(one_line, list(obj)[:8]))
                raise CheckpointError(
                    f"{path}: found no weights: neither a flat dict of tensors nor one under "
                    f"{'/'.join(CONTAINER_KEYS)} (top-level keys: {keys})"
                )
            obj = obj[container]
    else:
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    if not all(isinstance(k, str) for k in obj):
        other = [k for k in obj if not isinstance(k, str)]
        raise CheckpointError(f"{path}: tensor names must be strings (found {short_list(other)})")
    if all(k.startswith("module.") for k in obj):  # saved from DistributedDataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj, container
