"""Key layouts of released ViT checkpoints -> this package's names, Paddle orientation.

Target names are timm's / PaddleClas's (patch_embed.proj, cls_token, pos_embed,
blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm, fc_norm,
head) with `nn.Linear` weights stored [in, out] as Paddle does.

Layouts:
- paddle    .pdparams from PaddleClas or from this package: already right.
- timm      PyTorch-side timm / DeiT / MAE state dicts: Linear weights are
            [out, in] and get transposed; BatchNorm statistics renamed. The
            official iFormer releases (iformer_small.pth, ...) are in this layout
            too: models/iformer.py keeps their names.
- adaptformer_official  as timm, but q/k/v are separate projections (merged
            here into qkv), the MLP is blocks.N.fc1/fc2, adapters blocks.N.adaptmlp.
- videomae_pretrain  VideoMAE's pre-training files: the encoder's tensors under `encoder.` (taken,
            prefix removed), beside the decoder's (ignored); the encoder's final norm, which
            the fine-tuning model replaces by fc_norm, becomes `encoder_norm` (ignored). With
            q/k/v split (AdaptFormer's convert.py), merged as for adaptformer_official.
            Recognised by the keys, whatever the file is called.
- google    flax .npz of the original ViT and AugReg releases (and big_vision's
            module numbering): kernels are already [in, out]; attention kernels
            are per head, (dim, heads, head_dim), and are flattened.
"""
from __future__ import annotations

import re
from typing import Dict, Tuple

import numpy as np

from adaptformer.weights.checkpoint import CheckpointError
from adaptformer.weights.formats import Checkpoint

Tensors = Dict[str, np.ndarray]

_QKV_SPLIT = re.compile(r"^(blocks\.\d+\.attn)\.([qkv])_proj\.(weight|bias)$")
_OFFICIAL_RENAMES = (
    (re.compile(r"^(blocks\.\d+)\.(fc[12])\."), r"\1.mlp.\2."),
    (re.compile(r"^(blocks\.\d+)\.adaptmlp\."), r"\1.adapter."),
)
_BATCHNORM_RENAMES = ((".running_mean", "._mean"), (".running_var", "._variance"))


def to_model_names(ckpt: Checkpoint) -> Tuple[Tensors, str]:
    """Returns the converted tensors and the name of the layout that was recognised."""
    if ckpt.format == "npz":
        return _from_google(ckpt.tensors, ckpt.path), "google"
    if ckpt.format == "pdparams":
        return dict(ckpt.tensors), "paddle"
    tensors = ckpt.tensors
    layout = "timm"
    if any(k.startswith(_ENCODER) for k in tensors):
        tensors = _from_videomae_pretrain(tensors)
        layout = "videomae_pretrain"
    if any(_QKV_SPLIT.match(k) for k in tensors):
        tensors = {_rename(k, _OFFICIAL_RENAMES): v for k, v in _merge_qkv(tensors, ckpt.path).items()}
        layout = "adaptformer_official" if layout == "timm" else f"{layout}, q/k/v split (AdaptFormer's convert.py)"
    return _torch_to_paddle(tensors), layout


_ENCODER = "encoder."


def _from_videomae_pretrain(tensors: Tensors) -> Tensors:
    out: Tensors = {}
    for key, value in tensors.items():
        if key.startswith(_ENCODER + "norm."):
            key = "encoder_norm." + key[len(_ENCODER + "norm."):]
        elif key.startswith(_ENCODER):
            key = key[len(_ENCODER):]
        out[key] = value
    return out


def _rename(key: str, rules) -> str:
    for pattern, replacement in rules:
        key = pattern.sub(replacement, key)
    return key


def _merge_qkv(tensors: Tensors, path: str) -> Tensors:
    out: Tensors = {}
    parts: Dict[Tuple[str, str], Dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        m = _QKV_SPLIT.match(key)
        if m:
            parts.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
        else:
            out[key] = value
    for (attn, kind), qkv in parts.items():
        if set(qkv) != {"q", "k", "v"}:
            raise CheckpointError(f"{path}: {attn} has {kind}s for only {sorted(qkv)} of q, k, v")
        out[f"{attn}.qkv.{kind}"] = np.concatenate([qkv["q"], qkv["k"], qkv["v"]], axis=0)  # torch: [3*out, in]
    return out


def _torch_to_paddle(tensors: Tensors) -> Tensors:
    out: Tensors = {}
    for key, value in tensors.items():
        if key.endswith(".num_batches_tracked"):
            continue
        for old, new in _BATCHNORM_RENAMES:
            if key.endswith(old):
                key = key[: -len(old)] + new
        # In a ViT every 2-D ".weight" is an nn.Linear (norms are 1-D, the patch conv 4-D).
        if key.endswith(".weight") and value.ndim == 2:
            value = value.T
        out[key] = np.ascontiguousarray(value)
    return out


# Google flax names. The original/AugReg releases number a block's modules
# LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3; big_vision
# numbers them LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0.
_GOOGLE_BLOCK_NUMBERING = {
    "original": ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3"),
    "big_vision": ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0"),
}
_GOOGLE_PREFIXES = ("", "opt/target/", "params/", "params/img/")


def _from_google(w: Tensors, path: str) -> Tensors:
    prefix = next((p for p in _GOOGLE_PREFIXES if f"{p}embedding/kernel" in w), None)
    if prefix is None:
        raise CheckpointError(f"{path}: an .npz without 'embedding/kernel': not a Google ViT checkpoint")
    block0 = f"{prefix}Transformer/encoderblock_0/"
    numbering = next(
        (name for name, mods in _GOOGLE_BLOCK_NUMBERING.items() if f"{block0}{mods[1]}/query/kernel" in w), None
    )
    if numbering is None:
        stacked = f"{prefix}Transformer/encoderblock/LayerNorm_0/scale" in w
        why = "blocks stacked by scan are not supported" if stacked else "no known block layout"
        raise CheckpointError(f"{path}: {why} (looked for {block0}MultiHeadDotProductAttention_*)")
    ln1, mha, ln2, mlp = _GOOGLE_BLOCK_NUMBERING[numbering]
    used = set()

    def take(name: str) -> np.ndarray:
        key = prefix + name
        if key not in w:
            raise CheckpointError(f"{path}: missing '{key}'")
        used.add(key)
        return np.asarray(w[key], dtype=np.float32)

    out: Tensors = {
        "patch_embed.proj.weight": take("embedding/kernel").transpose(3, 2, 0, 1),  # HWIO -> OIHW
        "patch_embed.proj.bias": take("embedding/bias"),
        "norm.weight": take("Transformer/encoder_norm/scale"),
        "norm.bias": take("Transformer/encoder_norm/bias"),
    }
    if f"{prefix}cls" in w:
        out["cls_token"] = take("cls")
    original_pos = "Transformer/posembed_input/pos_embedding"
    pos = take(original_pos if prefix + original_pos in w else "pos_embedding")
    if "cls_token" in out and _is_square(pos.shape[1]):
        # big_vision adds position embeddings to the patches only; its class token already holds
        # its own position, which is the same as a zero row in front of the patches' rows.
        pos = np.concatenate([np.zeros_like(pos[:, :1]), pos], axis=1)
    out["pos_embed"] = pos
    depth = 0
    while f"{prefix}Transformer/encoderblock_{depth}/{ln1}/scale" in w:
        b, t = f"blocks.{depth}.", f"Transformer/encoderblock_{depth}/"
        out[b + "norm1.weight"] = take(t + ln1 + "/scale")
        out[b + "norm1.bias"] = take(t + ln1 + "/bias")
        dim = out[b + "norm1.weight"].shape[0]
        qkv = [take(f"{t}{mha}/{part}/kernel").reshape(dim, -1) for part in ("query", "key", "value")]
        out[b + "attn.qkv.weight"] = np.concatenate(qkv, axis=1)
        out[b + "attn.qkv.bias"] = np.concatenate([take(f"{t}{mha}/{p}/bias").reshape(-1) for p in ("query", "key", "value")])
        out[b + "attn.proj.weight"] = take(f"{t}{mha}/out/kernel").reshape(-1, dim)
        out[b + "attn.proj.bias"] = take(f"{t}{mha}/out/bias")
        out[b + "norm2.weight"] = take(t + ln2 + "/scale")
        out[b + "norm2.bias"] = take(t + ln2 + "/bias")
        for i in (0, 1):
            out[f"{b}mlp.fc{i + 1}.weight"] = take(f"{t}{mlp}/Dense_{i}/kernel")
            out[f"{b}mlp.fc{i + 1}.bias"] = take(f"{t}{mlp}/Dense_{i}/bias")
        depth += 1
    if f"{prefix}head/kernel" in w:
        out["head.weight"] = take("head/kernel")
        out["head.bias"] = take("head/bias")
    # Anything else (pre_logits of the IN-21k releases, optimizer state) is passed on under its own
    # name, so the loader reports it as unexpected instead of it vanishing here.
    for key in w:
        if key not in used:
            out[key[len(prefix):].replace("/", ".")] = np.asarray(w[key])
    return out


def _is_square(n: int) -> bool:
    return int(round(np.sqrt(n))) ** 2 == n
