"""FLOPs per training step, against closed forms of the ViT's matrix products."""
import pytest

from adaptformer.config import MethodConfig
from adaptformer.methods.adaptformer import AdaptFormerConfig
from adaptformer.methods.vpt import VPTConfig
from adaptformer.engine.flops import count_flops
from adaptformer.methods import apply_method
from adaptformer.models import create_model

D, DEPTH, CLASSES, HIDDEN = 32, 2, 4, 128
N = 65  # 32 px in patches of 4: 64 patches + the class token


def tiny(method="full", **method_settings):
    model = create_model("vit_tiny_patch4_32", num_classes=CLASSES, depth=DEPTH, embed_dim=D, num_heads=2)
    apply_method(model, MethodConfig(name=method, **method_settings))
    return model


# Multiply-adds of one image, times 2 for FLOPs.
PATCH = 2 * 64 * D * (3 * 4 * 4)
LINEARS = 2 * N * (D * 3 * D + D * D + D * HIDDEN + HIDDEN * D)  # qkv, proj, fc1, fc2 of one block
ATTENTION = 2 * 2 * N * N * D  # q @ k^T and attn @ v
HEAD = 2 * D * CLASSES


def adapter(r):
    return 2 * N * D * r * 2  # down and up


def test_full_fine_tuning():
    f = count_flops(tiny("full"), 32)
    assert f.forward == PATCH + DEPTH * (LINEARS + ATTENTION) + HEAD
    # Every weight gets a gradient; every activation but the image does.
    assert f.backward_weight == PATCH + DEPTH * LINEARS + HEAD
    assert f.backward_input == DEPTH * (LINEARS + 2 * ATTENTION) + HEAD
    assert f.recompute == 0 and f.train == f.forward + f.backward


def test_linear_probing_backpropagates_into_the_head_only():
    f = count_flops(tiny("linear"), 32)
    assert (f.backward_input, f.backward_weight) == (0, HEAD)


def test_frozen_backbone_skips_weight_gradients_and_everything_before_the_first_adapter():
    r = 4
    f = count_flops(tiny("adaptformer", adaptformer=AdaptFormerConfig(bottleneck=r)), 32)
    assert f.forward == PATCH + DEPTH * (LINEARS + ATTENTION + adapter(r)) + HEAD
    assert f.backward_weight == DEPTH * adapter(r) + HEAD
    # Block 0 reads the frozen embedding: only its adapter's up-projection passes a
    # gradient back (to the down-projection's weights). Block 1 passes it everywhere.
    up = adapter(r) / 2
    assert f.backward_input == up + (LINEARS + 2 * ATTENTION + adapter(r)) + HEAD


def test_recompute_adds_the_forward_of_blocks_with_a_gradient():
    model = tiny("adaptformer", adaptformer=AdaptFormerConfig(bottleneck=4))
    model.set_grad_checkpointing(True)
    f = count_flops(model, 32)
    assert f.recompute == LINEARS + ATTENTION + adapter(4)  # block 1 only; block 0's input needs none
    assert f.train == f.forward + f.backward + f.recompute


def test_prompts_lengthen_the_sequence():
    f = count_flops(tiny("vpt", vpt=VPTConfig(num_tokens=3, deep=True)), 32)
    n = N + 3
    linears = 2 * n * (D * 3 * D + D * D + D * HIDDEN + HIDDEN * D)
    assert f.forward == PATCH + DEPTH * (linears + 2 * 2 * n * n * D) + HEAD


def test_vit_b16_matches_the_published_count():
    # ViT-B/16 at 224 px: 17.56 GMACs per image (timm / fvcore, matrix products only).
    f = count_flops(create_model("vit_base_patch16_224", num_classes=1000), 224)
    assert f.forward / 2 == pytest.approx(17.56e9, rel=2e-3)


# ---- iFormer: convolutions (depthwise by their groups) and attention over pooled positions ----------

IF = dict(img_size=32, depths=[2, 1, 1, 1], embed_dims=[16, 16, 24, 32], num_heads=[4, 4, 3, 4],
          attention_heads=[1, 2, 2, 1, 3], mlp_ratio=2.0, use_layer_scale=True)
POOLS = [2, 2, 1, 1]


def iformer(method="full", **method_settings):
    model = create_model("iformer_small", num_classes=CLASSES, **IF)
    apply_method(model, MethodConfig(name=method, **method_settings))
    return model


def iformer_parts(size=32, r=0):
    """Closed forms of a reduced iFormer's products per image: (stem + patch embeddings, blocks, adapters)."""
    dims, grids = IF["embed_dims"], [size // 4 // 2**s for s in range(4)]
    c0 = dims[0]
    embed = 2 * (size // 2) ** 2 * (c0 // 2) * 3 * 9 + 2 * grids[0] ** 2 * c0 * (c0 // 2) * 9  # stem: two 3x3/2 convs
    embed += sum(2 * grids[s] ** 2 * dims[s] * dims[s - 1] * 9 for s in (1, 2, 3))  # 3x3/2 convs between stages
    blocks = adapters = 0
    heads = iter(IF["attention_heads"])
    for s, depth in enumerate(IF["depths"]):
        d, g, p = dims[s], grids[s], POOLS[s]
        for _ in range(depth):
            low = next(heads) * d // IF["num_heads"][s]
            high = d - low
            half = high // 2
            fused = low + 2 * high
            n = (g // p) ** 2
            blocks += 2 * g * g * (2 * half * half + 2 * half * 9 + 2 * half * half)  # high mixer: 1x1, depthwise, 1x1
            blocks += 2 * n * low * 3 * low + 2 * 2 * n * n * low  # qkv on the pooled grid, q @ k^T and attn @ v
            blocks += 2 * g * g * (fused * 9 + fused * d)  # depthwise conv_fuse, 1x1 proj
            blocks += 2 * g * g * 2 * d * int(d * IF["mlp_ratio"])  # fc1, fc2
            adapters += 2 * g * g * d * r * 2
    return embed, blocks, adapters


IHEAD = 2 * IF["embed_dims"][-1] * CLASSES


@pytest.mark.parametrize("size", [32, 64])
def test_iformer_forward_flops_match_the_closed_form(size):
    embed, blocks, _ = iformer_parts(size)
    f = count_flops(iformer("full"), size)
    assert f.forward == embed + blocks + IHEAD
    linear = count_flops(iformer("linear"), size)
    assert (linear.forward, linear.backward_input, linear.backward_weight) == (embed + blocks + IHEAD, 0, IHEAD)


def test_iformer_adapters_add_their_products_and_train_only_them():
    embed, blocks, adapters = iformer_parts(32, r=4)
    f = count_flops(iformer("adaptformer", adaptformer=AdaptFormerConfig(bottleneck=4)), 32)
    assert f.forward == embed + blocks + adapters + IHEAD
    assert f.backward_weight == adapters + IHEAD


# ---- a video ViT: the tubelet embedding is a Conv3D; the blocks see (T / t) x (H / p)^2 tokens ------


@pytest.mark.parametrize("frames", [8, 16])
def test_video_vit_forward_flops_match_the_closed_form_and_adaptformer_trains_fewer(frames):
    kw = dict(img_size=32, patch_size=8, num_frames=frames, tubelet_size=2, embed_dim=D, depth=DEPTH, num_heads=2)
    n = (frames // 2) * (32 // 8) ** 2  # tokens; no class token
    patch = 2 * n * D * (3 * 2 * 8 * 8)
    linears = 2 * n * (D * 3 * D + D * D + D * HIDDEN + HIDDEN * D)
    attention = 2 * 2 * n * n * D
    full = create_model("videomae_vit_small_patch16_224", num_classes=CLASSES, **kw)
    f = count_flops(full, 32)
    assert f.forward == patch + DEPTH * (linears + attention) + 2 * D * CLASSES
    af = create_model("videomae_vit_small_patch16_224", num_classes=CLASSES, **kw)
    apply_method(af, MethodConfig(name="adaptformer", adaptformer=AdaptFormerConfig(bottleneck=4)))
    g = count_flops(af, 32)
    assert g.forward == f.forward + DEPTH * 2 * n * D * 4 * 2  # the adapters' down and up
    assert g.backward_weight < f.backward_weight / 10  # frozen backbone: only adapters and head get weight grads
