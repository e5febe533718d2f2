"""PyTorch reference benchmark for the ViT / AdaptFormer model of this package.

This script is the side-by-side reference for ``tools/benchmark.py``: it builds
the same Vision Transformer as ``adaptformer/models/vit.py`` (patch-embedding
Conv2d, class token, learned position embedding, pre-norm blocks with LayerNorm
eps 1e-6, fused-qkv attention, GELU(erf) MLP, final LayerNorm, class-token
pooling, Linear head) with the same optional AdaptFormer module in every block
(parallel to the MLP, reading the post-attention stream), and times training and
inference steps on a fixed random batch on the CPU.

PyTorch is NOT a dependency of the package; it is only needed to run this file.
Get a Python with CPU torch from the repository root with

    PY=$(../shared/tools/torch-ref-env.sh)
    OMP_NUM_THREADS=2 $PY bench/torch_vit.py --method adaptformer --threads 2

The script prints exactly one JSON line on stdout (progress goes to stderr):
framework, version, method, batch, trainable_params, total_params,
train_step_s, eval_step_s (timed steps, warm-up excluded), train_images_per_s,
eval_images_per_s (batch / median step time), baseline_rss_mb, peak_rss_mb,
train_memory_mb (peak - baseline resident set size during the training steps)
and threads.

Methods:
    full         no adapters, every parameter trains
    linear       no adapters, only the classification head trains
    adaptformer  adapters in every block; only the adapters (down, up, scale)
                 and the head train
Frozen sub-modules run in eval mode while training (as ``freeze.set_train_mode``
does in the package); the optimizer is AdamW over the trainable parameters only.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- model


def _trunc_normal(tensor: torch.Tensor, std: float = 0.02) -> None:
    # Paddle's TruncatedNormal cuts at two standard deviations.
    nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


class PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] -> [B, D, H/p, W/p] -> [B, N, D]
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, impl: str = "sdpa"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by heads {num_heads}")
        if impl not in ("sdpa", "plain"):
            raise ValueError(f"unknown attention implementation {impl!r}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.impl = impl
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, H, N, hd]
        if self.impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, scale=self.scale)
        else:
            weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
            out = torch.matmul(weights, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="none")  # exact erf form, as Paddle's default
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Adapter(nn.Module):
    """AdaptFormer bottleneck: scale * Up(Dropout(ReLU(Down(x)))), Up zero-initialised."""

    def __init__(self, dim: int, bottleneck: int, scale: float, dropout: float):
        super().__init__()
        self.down_proj = nn.Linear(dim, bottleneck)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.up_proj = nn.Linear(bottleneck, dim)
        self.scale = nn.Parameter(torch.full((1,), float(scale)))
        bound = 1.0 / math.sqrt(dim)
        with torch.no_grad():
            self.down_proj.weight.uniform_(-bound, bound)
            self.down_proj.bias.zero_()
            self.up_proj.weight.zero_()
            self.up_proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up_proj(self.dropout(self.act(self.down_proj(x)))) * self.scale


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, attention: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, attention)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adapter: Adapter | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        h = self.mlp(self.norm2(x))
        if self.adapter is None:
            return x + h
        # Parallel adapter on the post-attention stream x.
        return x + h + self.adapter(x)


class VisionTransformer(nn.Module):
    def __init__(
        self,
        img_size: int,
        patch_size: int,
        num_classes: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        attention: str,
        in_chans: int = 3,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        _trunc_normal(self.pos_embed)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, attention) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            _trunc_normal(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def add_adapters(self, bottleneck: int, scale: float, dropout: float) -> None:
        # Added after the weight init, so the adapters keep their own init (Up = 0).
        for block in self.blocks:
            block.adapter = Adapter(self.embed_dim, bottleneck, scale, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.head(x[:, 0])


# --------------------------------------------------------------------------- methods


def apply_method(model: VisionTransformer, method: str, args: argparse.Namespace) -> None:
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return
    if method == "adaptformer":
        model.add_adapters(args.bottleneck, args.adapter_scale, args.adapter_dropout)
    for name, p in model.named_parameters():
        trainable = name.startswith("head.") or (method == "adaptformer" and ".adapter." in name)
        p.requires_grad_(trainable)


def set_train_mode(model: nn.Module) -> None:
    """model.train(), then eval mode for every sub-module whose parameters are all frozen."""
    model.train()
    for _, module in model.named_modules():
        if module is model:
            continue
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()


# --------------------------------------------------------------------------- memory


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB -> MB
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError as e:  # peak then includes model construction
        print(f"warning: could not reset peak RSS ({e})", file=sys.stderr)


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=("full", "linear", "adaptformer"))
    p.add_argument("--gemm", action="store_true",
                   help="print the float32 FLOP/s of a 2048^3 matrix product instead (the practical peak)")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--mlp-ratio", type=float, default=4.0)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--bottleneck", type=int, default=64)
    p.add_argument("--adapter-scale", type=float, default=0.1)
    p.add_argument("--adapter-dropout", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed training steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps (train and eval)")
    p.add_argument("--eval-steps", type=int, default=5, help="timed inference steps")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attention", choices=("sdpa", "plain"), default="sdpa",
                   help="sdpa: F.scaled_dot_product_attention; plain: matmul-softmax-matmul")
    args = p.parse_args(argv)
    if not args.gemm and args.method is None:
        p.error("--method is required (or --gemm)")
    if args.steps < 1 or args.eval_steps < 1 or args.warmup < 0:
        p.error("--steps and --eval-steps must be >= 1 and --warmup >= 0")
    return args


def gemm_flops_per_s(n: int = 2048, repeats: int = 15, warmup: int = 3) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.gemm:
        print(json.dumps({"framework": "torch", "version": torch.__version__, "threads": args.threads,
                          "gemm_flops_per_s": gemm_flops_per_s()}))
        return
    torch.manual_seed(args.seed)

    model = VisionTransformer(
        img_size=args.img_size,
        patch_size=args.patch,
        num_classes=args.num_classes,
        embed_dim=args.dim,
        depth=args.depth,
        num_heads=args.heads,
        mlp_ratio=args.mlp_ratio,
        attention=args.attention,
    )
    apply_method(model, args.method, args)
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainable_params = sum(p.numel() for p in trainable)
    total_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    criterion = nn.CrossEntropyLoss()

    images = torch.randn(args.batch, 3, args.img_size, args.img_size)
    labels = torch.randint(0, args.num_classes, (args.batch,))

    baseline_rss_mb = _status_mb("VmRSS")
    _reset_peak_rss()

    set_train_mode(model)
    train_times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            train_times.append(dt)
        print(f"train step {i + 1}/{args.warmup + args.steps}: {dt:.3f} s loss {loss.item():.4f}", file=sys.stderr)
    peak_rss_mb = _status_mb("VmHWM")

    model.eval()
    eval_times = []
    with torch.no_grad():
        for i in range(args.warmup + args.eval_steps):
            t0 = time.perf_counter()
            model(images)
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                eval_times.append(dt)
            print(f"eval step {i + 1}/{args.warmup + args.eval_steps}: {dt:.3f} s", file=sys.stderr)

    result = {
        "framework": "torch",
        "version": torch.__version__,
        "method": args.method,
        "batch": args.batch,
        "trainable_params": int(trainable_params),
        "total_params": int(total_params),
        "train_step_s": train_times,
        "eval_step_s": eval_times,
        "train_images_per_s": args.batch / statistics.median(train_times),
        "eval_images_per_s": args.batch / statistics.median(eval_times),
        "baseline_rss_mb": baseline_rss_mb,
        "peak_rss_mb": peak_rss_mb,
        "train_memory_mb": peak_rss_mb - baseline_rss_mb,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
