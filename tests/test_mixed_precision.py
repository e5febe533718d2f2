"""The GPU paths of mixed precision, emulated where the CPU build can show them: bfloat16 logits
through evaluation, low-precision models reading float32 checkpoints, tuned folders of a cast
model, the loss scaler's state across --resume and its skipped updates, the attention call
FlashAttention needs, and the GPU branch of the memory probe behind a fake device."""
import json
import os

import numpy as np
import paddle
import conftest
import pytest
from test_engine import records

from adaptformer.config import load_config
from adaptformer.engine import memory, train
from adaptformer.engine.step import attention_kernels, float32_logits, trained_whole
from adaptformer.engine.trainer import LAST, Trainer, evaluate_model
from adaptformer.models import create_model
from adaptformer.models.adapter import AdaptFormerAdapter, scaled
from adaptformer.models.backbone import build_model
from adaptformer.serve.tuned import backbone_fingerprint, load_tuned, save_tuned, tuned_state_names
from adaptformer.weights.checkpoint import load_checkpoint, read_state, save_state

quiet = lambda *a, **k: None  # noqa: E731


class FixedLogits(paddle.nn.Layer):
    """Returns the rows of `logits` (in `dtype`) for the sample indices it is given."""

    def __init__(self, logits: np.ndarray, dtype: str):
        super().__init__()
        self.logits = paddle.to_tensor(logits).astype(dtype)

    def forward(self, index):
        return paddle.gather(self.logits, index.reshape([-1]))


def test_bfloat16_logits_are_ranked_by_value_not_by_bit_pattern():
    # Under O1/O2 the head's Linear returns bfloat16; .numpy() of that gives uint16 bit patterns,
    # in which a negative number ranks above every positive one.
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((40, 5)).astype("float32")
    labels = logits.argmax(1)
    labels[:10] = (labels[:10] + 1) % 5  # a quarter wrong, so top-1 is 0.75
    loader = [(paddle.to_tensor(np.arange(i, i + 8)), paddle.to_tensor(labels[i:i + 8])) for i in range(0, 40, 8)]
    results = {dt: evaluate_model(FixedLogits(logits, dt), loader, 5).result() for dt in ("float32", "bfloat16")}
    assert results["float32"]["top1"] == pytest.approx(0.75)
    assert results["bfloat16"]["top1"] == results["float32"]["top1"]
    # bfloat16 keeps 8 bits of mantissa: the loss agrees to about 1 % (tolerance 2 %)
    assert results["bfloat16"]["loss"] == pytest.approx(results["float32"]["loss"], rel=0.02)
    as_float = float32_logits(paddle.to_tensor([[0.5, -1.0, 2.0]]).astype("bfloat16"))
    assert as_float.dtype == paddle.float32 and as_float.numpy().tolist() == [[0.5, -1.0, 2.0]]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_low_precision_model_loads_its_float32_checkpoint(tmp_path, dtype):
    """AMP O2 holds the model in float16/bfloat16 and saves float32 (save_dtype): best.pdparams and
    last.pdckpt must load back into it (the final test and --resume)."""
    paddle.seed(0)
    model = create_model("vit_tiny_patch4_32", num_classes=4, depth=2, embed_dim=32, num_heads=2)
    saved = {k: v.numpy() for k, v in model.state_dict().items()}
    save_state(model.state_dict(), str(tmp_path / "best.pdparams"))
    paddle.seed(1)
    cast = create_model("vit_tiny_patch4_32", num_classes=4, depth=2, embed_dim=32, num_heads=2)
    cast.to(dtype=dtype)
    load_checkpoint(cast, str(tmp_path / "best.pdparams"))
    held = cast.state_dict()
    for k, v in saved.items():
        assert str(held[k].dtype) == f"paddle.{dtype}", k
        # each tensor is the checkpoint's, rounded once to the model's dtype
        expected = paddle.to_tensor(v).astype(dtype).astype("float32").numpy()
        np.testing.assert_array_equal(held[k].astype("float32").numpy(), expected, err_msg=k)


def test_o2_keeps_the_layers_that_train_whole_in_float32(tiny_config):
    model = build_model(load_config(tiny_config()), log=quiet)
    kept = trained_whole(model)
    names = {n for n, layer in model.named_sublayers() if layer in kept}
    assert names == {"head"} | {f"blocks.{i}.adapter{p}" for i in range(2) for p in ("", ".down_proj", ".up_proj")}
    full = build_model(load_config(tiny_config(method={"name": "full"})), log=quiet)
    assert trained_whole(full) == []  # every layer trains: O2 casts them all, as without a method


def test_the_adapter_scale_gets_a_float32_gradient_from_low_precision_activations():
    # 1000 tokens x 64 channels of 2.0: the scale's gradient is 128,000, beyond float16's 65,504
    # and not representable in bfloat16 (which rounds it to 128,000 +- 512).
    up = paddle.full([1, 1000, 64], 2.0, dtype="bfloat16")
    scale = paddle.create_parameter([1], "float32", default_initializer=paddle.nn.initializer.Constant(0.1))
    out = scaled(up, scale)
    assert out.dtype == paddle.bfloat16
    out.astype("float32").sum().backward()
    assert scale.grad.dtype == paddle.float32 and scale.grad.numpy().tolist() == [128000.0]
    adapter = AdaptFormerAdapter(8, bottleneck=2)
    x = paddle.randn([2, 3, 8])
    np.testing.assert_allclose(adapter(x).numpy(), (adapter.up_proj(adapter.act(adapter.down_proj(x))) * 0.1).numpy(),
                               rtol=1e-6, atol=1e-7)


def test_tuned_weights_of_a_cast_model_name_the_float32_backbone(tmp_path, tiny_config):
    """The tuned folder of an O2 run is served on the float32 backbone: its fingerprint is the one
    taken before the cast (the runner passes it), not that of the cast model."""
    cfg = load_config(tiny_config())
    paddle.seed(3)
    model = build_model(cfg, log=quiet)
    tuned = tuned_state_names(model)
    before_cast = backbone_fingerprint(model, tuned)
    kept = trained_whole(model)
    model.to(dtype="float16")  # what O2 does to the frozen layers...
    for layer in kept:  # ...while those trained whole stay float32
        layer.to(dtype="float32")
    assert backbone_fingerprint(model, tuned) != before_cast
    folder = save_tuned(model, str(tmp_path / "tuned"), cfg, ["a", "b", "c", "d"], before_cast)
    paddle.seed(3)
    served = build_model(cfg, log=quiet)  # the same float32 backbone, rebuilt
    load_tuned(served, folder)  # refused if the fingerprint were the cast model's
    saved = read_state(os.path.join(folder, "tuned.pdparams"))
    assert {str(v.dtype) for v in saved.values()} == {"float32"}
    for name in tuned:
        np.testing.assert_array_equal(served.state_dict()[name].numpy(), saved[name], err_msg=name)


def test_a_run_records_the_fingerprint_taken_before_training(tiny_config):
    cfg = load_config(tiny_config(train={"epochs": 1}))
    train(cfg)
    out = cfg.train.output_dir
    meta = json.loads(open(os.path.join(out, "tuned", "tuned.json")).read())
    assert read_state(os.path.join(out, LAST))["backbone_fingerprint"] == meta["backbone_fingerprint"]


class FakeScaler:
    """paddle.amp.GradScaler as it behaves on a GPU, for the CPU: enabled, a state to save and
    restore, and an overflow (skipped update, halved scale) at the steps in `overflow_at`."""

    made = []
    overflow_at = set()

    def __init__(self, enable=True, init_loss_scaling=1024.0, decr_every_n_nan_or_inf=2, **kwargs):
        assert decr_every_n_nan_or_inf == 1  # a skipped update is one after which the scale went down
        self.loss_scale, self.steps, self.skipped, self.loaded = float(init_loss_scaling), 0, False, None
        FakeScaler.made.append(self)

    def is_enable(self):
        return True

    def scale(self, loss):
        return loss

    def step(self, optimizer):
        self.steps += 1
        self.skipped = self.steps in FakeScaler.overflow_at
        if not self.skipped:
            optimizer.step()

    def update(self):
        if self.skipped:
            self.loss_scale /= 2

    def get_loss_scaling(self):
        return paddle.to_tensor(self.loss_scale)

    def state_dict(self):
        return {"scale": self.loss_scale, "steps": self.steps}

    def load_state_dict(self, state):
        self.loaded = dict(state)
        self.loss_scale, self.steps = state["scale"], state["steps"]


@pytest.fixture
def fake_scaler(monkeypatch):
    FakeScaler.made, FakeScaler.overflow_at = [], set()
    monkeypatch.setattr(paddle.amp, "GradScaler", FakeScaler)
    return FakeScaler


def test_resume_restores_the_loss_scaler(tiny_config, fake_scaler, monkeypatch):
    fake_scaler.overflow_at = {2}
    amp = {"enabled": True, "dtype": "float16", "init_loss_scaling": 1024}
    cfg = load_config(tiny_config(train={"epochs": 2, "amp": amp}))
    original = conftest.crash_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    saved = read_state(os.path.join(cfg.train.output_dir, LAST))["loss_scaler"]
    assert saved == {"scale": 512.0, "steps": 4}  # one overflow in epoch 1's four updates
    train(cfg, resume=True)
    assert fake_scaler.made[-1].loaded == saved


def test_an_update_the_scaler_skips_leaves_the_schedule_where_it_was(tiny_config, fake_scaler, monkeypatch):
    import adaptformer.engine.trainer as trainer_module

    amp = {"enabled": True, "dtype": "float16"}
    schedules = []
    real_build = trainer_module.build_scheduler
    monkeypatch.setattr(trainer_module, "build_scheduler", lambda *a: schedules.append(real_build(*a)) or schedules[-1])
    runs = {}
    for name, overflow in (("clean", set()), ("overflows", {2, 3})):
        fake_scaler.overflow_at = overflow
        cfg = load_config(tiny_config(name, train={"epochs": 1, "amp": amp}))
        train(cfg)
        runs[name] = (schedules[-1].last_epoch, records(cfg.train.output_dir)[0])
    assert runs["clean"][0] - runs["overflows"][0] == 2  # 4 updates, 2 skipped: the schedule moved twice
    assert runs["overflows"][1]["train_skipped_steps"] == 2 and runs["clean"][1]["train_skipped_steps"] == 0
    assert runs["overflows"][1]["lr"] > runs["clean"][1]["lr"]  # the cosine schedule is two steps behind


TINY = {"vit_tiny_patch4_32": dict(depth=2, embed_dim=32, num_heads=2),
        "iformer_small": dict(img_size=32, depths=[2, 1, 1, 1], embed_dims=[16, 16, 24, 32], num_heads=[4, 4, 3, 4],
                              attention_heads=[1, 2, 2, 1, 3], mlp_ratio=2.0)}


@pytest.mark.parametrize("name", list(TINY))
def test_attention_leaves_the_scale_to_its_default(name, monkeypatch):
    """An explicit scale, even the default's value, rules FlashAttention out (Paddle's sdpa.py)."""
    calls = []
    real = paddle.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(paddle.nn.functional, "scaled_dot_product_attention", spy)
    create_model(name, num_classes=3, **TINY[name])(paddle.randn([1, 3, 32, 32]))
    assert calls and all(k.get("scale") is None for k in calls)


def test_the_attention_kernel_paddle_chooses_is_caught_and_logged(tiny_config, capsys):
    model = create_model("vit_tiny_patch4_32", num_classes=3, depth=2, embed_dim=32, num_heads=2)
    import logging

    sdpa_logger = logging.getLogger("paddle.nn.functional.sdpa")
    before = (sdpa_logger.level, list(sdpa_logger.handlers))
    with attention_kernels() as kernels:
        model(paddle.randn([1, 3, 32, 32]))
    assert kernels == ["math", "math"]  # one call per block; the CPU has only the math kernel
    assert (sdpa_logger.level, list(sdpa_logger.handlers)) == before
    assert "Selected backend" not in capsys.readouterr().err  # Paddle's own handler stayed quiet
    train(load_config(tiny_config(train={"epochs": 1})))
    out = capsys.readouterr().out
    assert out.count("attention: Paddle's scaled_dot_product_attention runs math (cpu)") == 1


def test_gpu_memory_is_read_from_paddle_when_the_run_is_on_a_gpu(monkeypatch):
    calls = []
    cuda = paddle.device.cuda
    monkeypatch.setattr(paddle.device, "get_device", lambda: "gpu:0")
    monkeypatch.setattr(cuda, "max_memory_allocated", lambda *a: 3 * 2**20)
    monkeypatch.setattr(cuda, "max_memory_reserved", lambda *a: 5 * 2**20)
    monkeypatch.setattr(cuda, "memory_allocated", lambda *a: 2 * 2**20)
    monkeypatch.setattr(cuda, "reset_max_memory_allocated", lambda *a: calls.append("allocated"))
    monkeypatch.setattr(cuda, "reset_max_memory_reserved", lambda *a: calls.append("reserved"))
    assert memory.on_gpu()
    memory.reset_peak()
    assert calls == ["allocated", "reserved"]
    assert (memory.peak_mb(), memory.peak_reserved_mb(), memory.current_mb()) == (3.0, 5.0, 2.0)
    monkeypatch.setattr(paddle.device, "get_device", lambda: "cpu")
    assert not memory.on_gpu() and memory.peak_reserved_mb() is None and memory.peak_mb() > 0
