"""VideoMAE's video ViT against the official PyTorch code (fixtures written by
tests/fixtures/make_golden_videomae.py from VideoMAE's modeling_finetune.py and AdaptFormer's
models/vit_video.py, seeded weights with non-zero q/v biases, norms away from 1 and, for
AdaptFormer, non-zero adapters and BatchNorm statistics), the three checkpoint layouts, and the
tuning methods attaching through the same mechanism as on the image ViT."""
import json
import os

import numpy as np
import paddle
import pytest

from adaptformer import freeze
from adaptformer.config import MethodConfig
from adaptformer.methods import apply_method
from adaptformer.methods.adaptformer import AdaptFormerConfig
from adaptformer.methods.lora import LoRAConfig
from adaptformer.methods.vpt import VPTConfig
from adaptformer.models import create_model, load_pretrained
from adaptformer.models.videomae import VideoVisionTransformer, sinusoid_table
from adaptformer.weights.checkpoint import CheckpointError, save_state
from adaptformer.weights.formats import read_checkpoint

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "golden")
REF = np.load(os.path.join(GOLDEN, "videomae_reference.npz"))
R = json.loads(str(REF["reduced_json"]))
KWARGS = dict(img_size=R["img_size"], patch_size=R["patch_size"], num_frames=R["all_frames"],
              tubelet_size=R["tubelet_size"], embed_dim=R["embed_dim"], depth=R["depth"], num_heads=R["num_heads"],
              num_classes=R["num_classes"])
CLIPS = np.random.default_rng(int(REF["clip_seed"])).standard_normal(
    (2, 3, R["all_frames"], R["img_size"], R["img_size"])).astype(np.float32)
ATOL = 1e-5  # float32 logits of a 2-block model, two frameworks' kernels


def logits(model, x=CLIPS):
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def test_logits_equal_videomaes_own_model():
    model = VideoVisionTransformer(**KWARGS)
    report = load_pretrained(model, os.path.join(GOLDEN, "videomae_finetune.pth"))
    assert report.layout == "timm" and not report.reinitialised and not report.unexpected
    np.testing.assert_allclose(logits(model), REF["finetune_logits"], atol=ATOL, rtol=0)


def test_the_position_table_is_videomaes_and_not_a_weight():
    np.testing.assert_allclose(sinusoid_table(8, R["embed_dim"]), REF["pos_table"], atol=1e-7, rtol=0)
    model = VideoVisionTransformer(**KWARGS)
    assert "pos_table" not in model.state_dict() and "pos_table" not in dict(model.named_parameters())
    np.testing.assert_allclose(model.pos_table.numpy(), REF["pos_table"], atol=1e-7, rtol=0)


def test_q_and_v_have_biases_and_k_none():
    """Moving k's share of the bias changes nothing; moving q's or v's does: the fused qkv's bias is
    [q_bias, 0, v_bias]."""
    model = VideoVisionTransformer(**KWARGS)
    load_pretrained(model, os.path.join(GOLDEN, "videomae_finetune.pth"))
    attn = model.blocks[0].attn
    assert attn.qkv.bias is None and attn.q_bias.shape == [R["embed_dim"]]
    before = logits(model)
    attn.v_bias.set_value(attn.v_bias + 1.0)
    assert np.abs(logits(model) - before).max() > 1e-3


def test_a_videomae_pretraining_file_loads_its_encoder_by_its_keys(tmp_path):
    """encoder.* taken whatever the file is called; its norm, decoder and mask token ignored; fc_norm
    and head start afresh. The encoder's features then equal the fine-tune file's."""
    pretrained = VideoVisionTransformer(**KWARGS)
    report = load_pretrained(pretrained, os.path.join(GOLDEN, "videomae_pretrain.pth"))
    assert report.layout == "videomae_pretrain"
    assert sorted(report.reinitialised) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert {"encoder_norm.weight", "encoder_to_decoder.weight", "mask_token", "decoder.head.weight"} <= set(
        report.unexpected)
    finetuned = VideoVisionTransformer(**KWARGS)
    load_pretrained(finetuned, os.path.join(GOLDEN, "videomae_finetune.pth"))
    x = paddle.to_tensor(CLIPS)
    for m in (pretrained, finetuned):
        m.eval()
    with paddle.no_grad():
        np.testing.assert_allclose(pretrained.forward_features(x).numpy(), finetuned.forward_features(x).numpy(),
                                   atol=1e-6, rtol=0)


def test_a_missing_backbone_key_is_an_error_never_a_new_parameter(tmp_path):
    tensors = dict(read_checkpoint(os.path.join(GOLDEN, "videomae_finetune.pth")).tensors)
    del tensors["blocks.1.attn.v_bias"]
    path = str(tmp_path / "partial.pdparams")
    model = VideoVisionTransformer(**KWARGS)
    paddle_layout = {k: (v.T if k.endswith(".weight") and v.ndim == 2 else v) for k, v in tensors.items()}
    save_state({k: paddle.to_tensor(np.ascontiguousarray(v)) for k, v in paddle_layout.items()}, path)
    with pytest.raises(CheckpointError, match=r"lacks 1 tensors of VideoVisionTransformer \(blocks.1.attn.v_bias\)"):
        load_pretrained(model, path)


def adaptformer_video():
    model = VideoVisionTransformer(**KWARGS, head_norm=True)
    apply_method(model, MethodConfig(name="adaptformer", adaptformer=AdaptFormerConfig(
        bottleneck=8, scale=0.1, learnable_scale=False, dropout=0.0)))
    return model


def test_logits_equal_adaptformers_video_model_with_its_adapters_and_batchnorm_head():
    model = adaptformer_video()
    report = load_pretrained(model, os.path.join(GOLDEN, "adaptformer_video.pth"))
    assert report.layout == "adaptformer_official" and not report.reinitialised
    np.testing.assert_allclose(logits(model), REF["adaptformer_logits"], atol=ATOL, rtol=0)


def test_the_factories_have_videomaes_tensors_and_parameter_counts():
    official = json.loads(str(REF["factories_json"]))
    for size, ref in official.items():
        with paddle.LazyGuard():
            model = create_model(f"videomae_vit_{size}_patch16_224", num_classes=174, num_frames=16)
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        expected = {k: list(s) for k, s in ref["names_shapes"]}
        assert set(shapes) == set(expected)
        # Paddle stores Linear weights [in, out], PyTorch [out, in]
        assert all(shapes[k] == (expected[k][::-1] if len(expected[k]) == 2 else expected[k]) for k in expected)
        assert sum(int(np.prod(s)) for s in shapes.values()) == ref["params"]


def test_adaptformer_64_on_videomae_base_trains_1_19_m_parameters_beside_the_head():
    with paddle.LazyGuard():
        model = create_model("videomae_vit_base_patch16_224", num_classes=174, num_frames=16)
    report = apply_method(model, MethodConfig(name="adaptformer", adaptformer=AdaptFormerConfig(
        bottleneck=64, learnable_scale=False), trainable=["fc_norm"]))
    assert report.per_method["adaptformer"] == 1_189_632  # 12 x (768*64 + 64 + 64*768 + 768), the paper's 1.19 M
    assert report.per_method["head"] == 768 * 174 + 174


@pytest.mark.parametrize("name, sections", [
    ("adaptformer", {"adaptformer": AdaptFormerConfig(bottleneck=4)}),
    ("adapter", {}),
    ("lora", {"lora": LoRAConfig(rank=2, targets=["q", "v"])}),
    ("bitfit", {}),
    ("vpt", {"vpt": VPTConfig(num_tokens=3)}),
])
def test_each_method_attaches_to_the_video_vit_as_to_the_image_vit(name, sections):
    """A fresh method leaves the logits as they were (VPT: changes them, its prompts are new tokens),
    only its own parameters and the head train, and a step moves them."""
    paddle.seed(0)
    model = VideoVisionTransformer(**KWARGS)
    load_pretrained(model, os.path.join(GOLDEN, "videomae_finetune.pth"))
    before = logits(model)
    apply_method(model, MethodConfig(name=name, **sections))
    after = logits(model)
    if name == "vpt":
        assert after.shape == before.shape and np.abs(after - before).max() > 1e-4
    else:
        np.testing.assert_allclose(after, before, atol=1e-6, rtol=0)
    trainable = [n for n, p in model.named_parameters() if not p.stop_gradient]
    assert any(n.startswith("head.") for n in trainable)
    frozen_backbone = [n for n, p in model.named_parameters() if p.stop_gradient]
    assert "blocks.0.attn.qkv.weight" in frozen_backbone and "patch_embed.proj.weight" in frozen_backbone
    if name == "bitfit":  # VideoMAE's q and v biases are biases
        assert {"blocks.0.attn.q_bias", "blocks.0.attn.v_bias", "blocks.0.mlp.fc1.bias"} <= set(trainable)
    model.train()
    freeze.set_train_mode(model)
    opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=[p for p in model.parameters() if not p.stop_gradient])
    frozen_before = model.blocks[1].attn.qkv.weight.numpy().copy()
    loss = paddle.nn.functional.cross_entropy(model(paddle.to_tensor(CLIPS)), paddle.to_tensor([1, 3]))
    loss.backward()
    opt.step()
    assert np.array_equal(model.blocks[1].attn.qkv.weight.numpy(), frozen_before)


def test_clips_of_another_length_or_size_are_refused_in_one_line():
    model = VideoVisionTransformer(**KWARGS)
    with pytest.raises(ValueError, match="clips are 6 frames of 16x16 pixels but the model takes 4 frames of 16x16"):
        model(paddle.zeros([1, 3, 6, 16, 16]))
    with pytest.raises(ValueError, match=r"expected clips \[batch, channels, frames, height, width\]"):
        model(paddle.zeros([1, 3, 16, 16]))
    assert model.input_shape(16, 2) == [2, 3, 4, 16, 16]


# ---- tuned folders and a TaskBank of video tasks on one VideoMAE backbone ------------------------

FINETUNE = os.path.join(GOLDEN, "videomae_finetune.pth")
VIDEO_METHODS = {
    "adaptformer": {"name": "adaptformer", "adaptformer": {"bottleneck": 4, "dropout": 0.0}},
    "lora": {"name": "lora", "lora": {"rank": 2, "targets": ["q", "v"]}},
    "bitfit": {"name": "bitfit"},  # q_bias / v_bias among what it tunes
    "vpt": {"name": "vpt", "vpt": {"num_tokens": 2}},
}


def tuned_video_run(tmp_path, name, classes):
    """The reduced VideoMAE model from its fine-tune file, `name` trained two steps, saved as a tuned
    folder: (its logits on CLIPS, the folder)."""
    from adaptformer.config import from_dict
    from adaptformer.serve.tuned import save_tuned

    kwargs = {k: v for k, v in KWARGS.items() if k != "num_classes"}
    cfg = from_dict({"model": {"name": "videomae_vit_small_patch16_224", "num_classes": classes, "kwargs": kwargs,
                               "pretrained": FINETUNE},
                     "method": VIDEO_METHODS[name],
                     "data": {"dataset": "video", "img_size": R["img_size"],
                              "video": {"num_classes": classes, "num_frames": R["all_frames"]}}}, name)
    paddle.seed(3)
    model = create_model(cfg.model.name, num_classes=classes, **kwargs)
    load_pretrained(model, FINETUNE)
    model.reset_classifier(classes)
    apply_method(model, cfg.method)
    model.train()
    freeze.set_train_mode(model)
    opt = paddle.optimizer.SGD(learning_rate=0.5, parameters=[p for p in model.parameters() if not p.stop_gradient])
    for _ in range(2):
        loss = paddle.nn.functional.cross_entropy(model(paddle.to_tensor(CLIPS)), paddle.to_tensor([1, 0]))
        loss.backward()
        opt.step()
        opt.clear_grad()
    folder = save_tuned(model, str(tmp_path / name), cfg, [f"{name}_{i}" for i in range(classes)])
    return logits(model), folder


def test_video_tasks_round_trip_and_share_one_backbone_in_a_taskbank(tmp_path):
    from adaptformer.serve.tasks import TaskBank
    from adaptformer.serve.tuned import build_tuned_model

    runs = {name: tuned_video_run(tmp_path, name, classes) for name, classes in
            [("adaptformer", 3), ("lora", 4), ("bitfit", 5), ("vpt", 2)]}
    for name, (expected, folder) in runs.items():
        model, meta = build_tuned_model(folder, log=lambda *a: None)
        assert isinstance(model, VideoVisionTransformer) and meta["method"]["name"] == name
        np.testing.assert_allclose(logits(model), expected, atol=1e-6, rtol=0)
    backbone = VideoVisionTransformer(**{**KWARGS, "num_classes": 0})
    load_pretrained(backbone, FINETUNE)
    bank = TaskBank(backbone, log=lambda *a: None)
    for name, (_, folder) in runs.items():
        bank.add(name, folder)
    for name, (expected, _) in runs.items():
        bank.activate(name)
        with paddle.no_grad():
            np.testing.assert_allclose(bank(paddle.to_tensor(CLIPS)).numpy(), expected, atol=1e-6, rtol=0)


def test_one_bank_serves_an_image_task_and_a_video_task_each_on_its_backbone(tmp_path):
    from adaptformer.errors import CheckpointError
    from adaptformer.serve.tasks import TaskBank
    from test_tasks import X, plain_backbone, tuned_task

    image_logits, image_folder = tuned_task(tmp_path, "adaptformer")
    video_logits, video_folder = tuned_video_run(tmp_path, "lora", 4)
    image_backbone = plain_backbone()
    video_backbone = VideoVisionTransformer(**{**KWARGS, "num_classes": 0})
    load_pretrained(video_backbone, FINETUNE)
    bank = TaskBank({"vit": image_backbone, "videomae": video_backbone}, log=lambda *a: None)
    with pytest.raises(ValueError, match="backbones vit, videomae: say which one"):
        bank.add("cifar", image_folder)
    with pytest.raises(KeyError, match="no backbone 'vid'"):
        bank.add("cifar", image_folder, backbone="vid")
    with pytest.raises(CheckpointError, match="has 'cls_token', which the backbone lacks"):  # an image task on the video backbone
        bank.add("cifar", image_folder, backbone="videomae")
    assert bank.names == []
    bank.add("cifar", image_folder, backbone="vit")
    bank.add("ssv2", video_folder, backbone="videomae")
    first = bank(X).numpy()
    np.testing.assert_allclose(first, image_logits, atol=1e-6, rtol=0)
    bank.activate("ssv2")
    np.testing.assert_allclose(bank(CLIPS).numpy(), video_logits, atol=1e-6, rtol=0)
    bank.activate("cifar")
    np.testing.assert_array_equal(bank(X).numpy(), first)
    for task, backbone in [("cifar", image_backbone), ("ssv2", video_backbone)]:
        state, own = bank.model(task).state_dict(), backbone.state_dict()
        assert bank.shared_names(task) and all(state[n] is own[n] for n in bank.shared_names(task)), task
    assert bank.backbone("videomae") is video_backbone


# ---- an image ViT inflated to a video ViT (weights/inflate.py) --------------------------------------


def test_an_inflated_image_vit_embeds_a_still_clip_as_the_image_and_attends_alike(tmp_path):
    """tools/convert_weights.py --inflate-frames on an image ViT (qkv with a bias): the video ViT
    loads every tensor; a clip of one image repeated embeds as the image's patches, position by
    position; dropping k's bias leaves a block's attention output as it was."""
    import subprocess
    import sys

    from conftest import ROOT

    paddle.seed(4)
    image = create_model("vit_tiny_patch4_32", num_classes=5, depth=2, embed_dim=32, num_heads=2, qkv_bias=True)
    for p in image.parameters():  # biases and norms away from their zero / one init
        p.set_value(p + 0.1 * paddle.randn(p.shape))
    src, dst = str(tmp_path / "image.pdparams"), str(tmp_path / "video.pdparams")
    save_state(image.state_dict(), src)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_weights.py"), src, dst,
                        "--inflate-frames", "4"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    video = create_model("videomae_vit_small_patch16_224", num_classes=5, img_size=32, patch_size=4, num_frames=4,
                         embed_dim=32, depth=2, num_heads=2, learnable_pos=True, time_embed=True)
    report = load_pretrained(video, dst)
    assert sorted(report.reinitialised) == ["head.bias", "head.weight"] and not report.unexpected
    image.eval()
    video.eval()
    x = paddle.randn([1, 3, 32, 32])
    still = paddle.stack([x] * 4, axis=2)  # [1, 3, 4, 32, 32]
    with paddle.no_grad():
        patches = image.patch_embed(x) + image.pos_embed[:, 1:]
        tokens = video.patch_embed(still) + video.pos_embed
        np.testing.assert_allclose(tokens.numpy(), paddle.concat([patches] * 2, axis=1).numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(video.blocks[0].attn(tokens[:, :64]).numpy(),
                                   image.blocks[0].attn(patches).numpy(), atol=1e-5, rtol=0)
    assert not video.time_embed.numpy().any()  # starts at zero: the still clip above embeds as the image


def test_a_frozen_inflated_backbone_sees_frame_order_only_through_its_time_embedding():
    """An inflated video ViT repeats its position rows over time: with time_embed at its inflated zero,
    a clip and its reverse give the same logits (any frozen-backbone method is blind to motion
    direction); a trained (non-zero) time_embed tells them apart. The rows go to tokens in time-major
    order: moving a tubelet step's row moves the difference."""
    paddle.seed(5)
    video = create_model("videomae_vit_small_patch16_224", num_classes=4, img_size=16, patch_size=4, num_frames=4,
                         embed_dim=32, depth=2, num_heads=2, learnable_pos=True, time_embed=True)
    grid = video.pos_embed[:, :16]
    video.pos_embed.set_value(paddle.concat([grid, grid], axis=1))  # as weights/inflate.py writes them:
    kernel = video.patch_embed.proj.weight  # [D, C, t, p, p], alike over the tubelet's frames
    kernel.set_value(paddle.concat([kernel[:, :, :1]] * 2, axis=2))
    video.head.weight.set_value(paddle.randn(video.head.weight.shape))  # logits of order 1
    video.eval()
    clip = paddle.randn([2, 3, 4, 16, 16])
    reverse = clip[:, :, ::-1]
    with paddle.no_grad():
        np.testing.assert_allclose(video(reverse).numpy(), video(clip).numpy(), atol=1e-5, rtol=0)
        video.time_embed.set_value(paddle.randn(video.time_embed.shape))
        assert np.abs(video(reverse).numpy() - video(clip).numpy()).max() > 1e-3  # 100x the tolerance above
        # the first step's row goes to the first 16 tokens (the first two frames), as if added to their positions
        row = paddle.randn([1, 1, 32])
        video.time_embed.set_value(paddle.concat([row, paddle.zeros([1, 1, 32])], axis=1))
        moved = video(clip).numpy()
        video.time_embed.set_value(paddle.zeros([1, 2, 32]))
        video.pos_embed.set_value(video.pos_embed + paddle.concat([row.expand([1, 16, 32]),
                                                                   paddle.zeros([1, 16, 32])], axis=1))
        np.testing.assert_allclose(video(clip).numpy(), moved, atol=1e-5, rtol=0)


def test_the_size_estimate_counts_a_clips_frames():
    """Clips of 16 frames in tubelets of 2 are 8x an image's tokens: a batch that fits as images
    is refused as clips, before anything is built, with the tokens in its one line."""
    from adaptformer.config import ConfigError
    from adaptformer.models.budget import check_model_size

    kwargs = {"embed_dim": 768, "depth": 12, "num_heads": 12}
    image = check_model_size(kwargs, 224, 174, batch_size=64, memory=24 * 2**30)
    with pytest.raises(ConfigError, match=r"1568 tokens\); training at batch 64 would take about"):
        check_model_size({**kwargs, "num_frames": 16}, 224, 174, batch_size=64, memory=24 * 2**30, video=True)
    clip8 = check_model_size({**kwargs, "num_frames": 8}, 224, 174, batch_size=2, memory=24 * 2**30, video=True)
    assert clip8["bytes"] > check_model_size(kwargs, 224, 174, batch_size=2, memory=24 * 2**30)["bytes"]
    assert image["bytes"] < 24 * 2**30
