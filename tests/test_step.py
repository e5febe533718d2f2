"""The training step's options: gradient accumulation, block recomputation, mixed precision."""
import numpy as np
import paddle
import pytest
from test_engine import records, weights

from adaptformer import freeze
from adaptformer.config import AmpConfig, ConfigError, load_config
from adaptformer.engine import train
from adaptformer.engine.step import TrainStep, group_sizes
from adaptformer.engine.trainer import LAST
from adaptformer.models import create_model


def test_group_sizes_cover_the_epoch_with_a_short_last_group():
    assert group_sizes(8, 1) == [1] * 8
    assert group_sizes(8, 4) == [4, 4]
    assert group_sizes(7, 3) == [3, 3, 1]
    assert group_sizes(2, 5) == [2]


def tiny_adapted(dropout=0.0, up_std=0.1):
    paddle.seed(0)
    model = create_model("vit_tiny_patch4_32", num_classes=4, depth=3, embed_dim=32, num_heads=2)
    model.add_adapters(bottleneck=4, dropout=dropout)
    for block in model.blocks:  # non-zero adapters, so their effect reaches every gradient
        paddle.assign(paddle.randn(block.adapter.up_proj.weight.shape) * up_std, block.adapter.up_proj.weight)
    freeze.only_train(model, ["blocks.*.adapter.*", "head.*"])
    return model


def test_two_accumulated_half_batches_equal_one_full_batch():
    x = paddle.randn([8, 3, 32, 32])
    y = paddle.randint(0, 4, [8])
    grads = []
    for halves in (1, 2):
        model = tiny_adapted()
        freeze.set_train_mode(model)
        opt = paddle.optimizer.SGD(0.1, parameters=freeze.trainable_parameters(model))
        step = TrainStep(model, opt, paddle.nn.CrossEntropyLoss(), AmpConfig())
        for xs, ys in zip(paddle.split(x, halves), paddle.split(y, halves)):
            step.forward_backward(xs, ys, 1.0 / halves)
        grads.append({n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None})
        step.update()
        assert all(p.grad is None or not np.any(p.grad.numpy()) for p in model.parameters())
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name in grads[0]:
        np.testing.assert_allclose(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5, err_msg=name)


def test_training_with_accumulation_matches_the_larger_batch(tiny_config):
    """batch 8 x 2 micro-batches and batch 16 see the same samples per update (the
    shuffle does not depend on the batch size), so the runs end with the same weights."""
    outs = []
    for name, batch, accumulate in (("big", 16, 1), ("micro", 8, 2)):
        cfg = load_config(tiny_config(name, data={"batch_size": batch}, train={"accumulate_steps": accumulate}))
        train(cfg)
        outs.append(cfg.train.output_dir)
    big, micro = (weights(f"{o}/{LAST}") for o in outs)
    assert [r["step"] for r in records(outs[0])] == [r["step"] for r in records(outs[1])] == [4, 8]
    for name in big:
        np.testing.assert_allclose(micro[name], big[name], atol=2e-5, err_msg=name)


def test_an_uneven_last_group_is_averaged_over_its_own_micro_batches(tiny_config):
    # 64 samples in batches of 16 with 3 per update: groups of 3 and 1 micro-batches.
    cfg = load_config(tiny_config(train={"accumulate_steps": 3, "epochs": 1}))
    train(cfg)
    assert [r["step"] for r in records(cfg.train.output_dir)] == [2]


@pytest.mark.parametrize("first_block_trains", [False, True])
def test_recomputed_blocks_give_the_same_gradients(first_block_trains):
    def gradients(recompute):
        model = tiny_adapted(dropout=0.5)  # recompute must replay the same dropout masks
        if first_block_trains:
            freeze.train_all(model)
        model.set_grad_checkpointing(recompute)
        freeze.set_train_mode(model)
        paddle.seed(1)
        model(paddle.randn([4, 3, 32, 32])).sum().backward()
        return {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}

    plain, recomputed = gradients(False), gradients(True)
    assert plain.keys() == recomputed.keys() and len(plain) > 0
    for name in plain:
        np.testing.assert_allclose(recomputed[name], plain[name], atol=1e-6, err_msg=name)


def test_recompute_is_off_outside_training():
    model = tiny_adapted()
    model.set_grad_checkpointing(True)
    x = paddle.randn([2, 3, 32, 32])
    with paddle.no_grad():
        assert not model._recompute(x.detach())
    hidden = paddle.randn([2, 65, 32])
    hidden.stop_gradient = False
    assert model._recompute(hidden)


AMP_CASES = [("float16", "O1"), ("bfloat16", "O2")]


def spy_on(monkeypatch, module, names):
    """Replace module.<name> by a wrapper recording each call's keyword arguments, then calling it."""
    calls = {name: [] for name in names}
    for name in names:
        def wrapper(*args, _real=getattr(module, name), _name=name, **kwargs):
            calls[_name].append({k: v for k, v in kwargs.items() if k not in ("models", "optimizers")})
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.mark.parametrize("dtype,level", AMP_CASES)
def test_amp_settings_reach_paddle_amp(tiny_config, dtype, level, monkeypatch, capsys):
    """What the CPU build can check: every forward runs under auto_cast with the configured dtype
    and level (the steps, the epoch's evaluation and the final test), the loss scaler is on for
    float16 only, and O2 decorates the model, leaving the layers that train whole in float32."""
    calls = spy_on(monkeypatch, paddle.amp, ["auto_cast", "GradScaler", "decorate"])
    amp = {"enabled": True, "dtype": dtype, "level": level, "init_loss_scaling": 1024}
    train(load_config(tiny_config(train={"epochs": 1, "amp": amp})))
    steps_eval_test = 4 + 1 + 1  # 64 samples in batches of 16, one evaluation, the final test (last and best)
    assert calls["auto_cast"] == [{"enable": True, "level": level, "dtype": dtype}] * steps_eval_test
    assert calls["GradScaler"] == [{"enable": dtype == "float16", "init_loss_scaling": 1024.0,
                                    "decr_every_n_nan_or_inf": 1}]
    if level == "O2":
        (decorated,) = calls["decorate"]
        kept = decorated.pop("excluded_layers")
        assert decorated == {"level": "O2", "dtype": dtype, "save_dtype": "float32"}
        assert sorted(type(layer).__name__ for layer in kept) == ["AdaptFormerAdapter"] * 2 + ["Linear"] * 5
    else:
        assert calls["decorate"] == []
    if not paddle.device.get_device().startswith("gpu"):
        assert "Paddle's AMP takes effect on a GPU only; on cpu the run computes in float32" in capsys.readouterr().out


@pytest.mark.skipif(not paddle.device.is_compiled_with_cuda(), reason="AMP computes in float32 on a CPU build")
@pytest.mark.parametrize("dtype,level", AMP_CASES)
def test_amp_runs_and_trains(tiny_config, dtype, level):
    amp = {"enabled": True, "dtype": dtype, "level": level}
    cfg = load_config(tiny_config(train={"epochs": 3, "recompute": True, "amp": amp}))
    summary = train(cfg)
    recs = records(cfg.train.output_dir)
    assert recs[-1]["train_loss"] < recs[0]["train_loss"]
    assert summary["best_top1"] > 0.5
    saved = weights(f"{cfg.train.output_dir}/{LAST}")
    assert {v.dtype for v in saved.values()} == {np.dtype("float32")}
    # The tuned folder is served on the float32 backbone (its fingerprint was taken before the cast).
    from adaptformer.engine.trainer import seed_everything
    from adaptformer.models.backbone import build_model
    from adaptformer.serve.tuned import load_tuned

    seed_everything(cfg.train.seed)
    load_tuned(build_model(cfg, log=lambda *a: None), f"{cfg.train.output_dir}/tuned")


def test_bad_training_options_are_one_line_errors(tiny_config):
    with pytest.raises(ConfigError, match=r"train.accumulate_steps must be >= 1, got 0"):
        load_config(tiny_config(train={"accumulate_steps": 0}))
    with pytest.raises(ConfigError, match=r"train.amp.dtype must be one of float16, bfloat16, got 'int8'"):
        load_config(tiny_config(train={"amp": {"dtype": "int8"}}))
