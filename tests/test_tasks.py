"""TaskBank (adaptformer/serve/tasks.py): several tuned tasks on one backbone whose tensors exist once."""

import numpy as np
import paddle
import pytest

from adaptformer.config import from_dict
from adaptformer.errors import CheckpointError
from adaptformer.methods import apply_method
from adaptformer.models import create_model
from adaptformer.serve.tasks import TaskBank
from adaptformer.serve.tuned import save_tuned, tuned_state_names
from conftest import TINY_MODEL, train_steps

X = paddle.to_tensor(np.random.default_rng(2).standard_normal((3, 3, 32, 32)).astype("float32"))
TASKS = {  # name: (method section, classes)
    "adaptformer": ({"name": "adaptformer", "adaptformer": {"bottleneck": 4}}, 3),
    "lora": ({"name": "lora", "lora": {"rank": 2, "targets": ["q", "v", "fc1"]}}, 5),
    "bitfit": ({"name": "bitfit"}, 4),
    "vpt": ({"name": "vpt+adaptformer", "vpt": {"num_tokens": 2}, "adaptformer": {"bottleneck": 2}}, 6),
}


def plain_backbone(seed=0):
    paddle.seed(seed)
    return create_model(TINY_MODEL["name"], num_classes=3, **TINY_MODEL["kwargs"])


def tuned_task(tmp_path, name, backbone_seed=0):
    """Train `name` on a copy of the seeded backbone; (its logits on X, tuned folder)."""
    method, classes = TASKS[name]
    cfg = from_dict({"model": {**TINY_MODEL, "num_classes": classes}, "method": method}, name)
    model = plain_backbone(backbone_seed)
    model.reset_classifier(classes)
    apply_method(model, cfg.method)
    train_steps(model, steps=2)  # labels 0..2 fit every head here
    model.eval()
    folder = save_tuned(model, str(tmp_path / name), cfg, [f"{name}_{i}" for i in range(classes)])
    return model(X).numpy(), folder


def test_tasks_share_the_backbone_tensors_and_switching_changes_nothing(tmp_path):
    expected = {name: tuned_task(tmp_path, name) for name in TASKS}
    backbone = plain_backbone()
    backbone_state = backbone.state_dict()
    bank = TaskBank(backbone, log=lambda *a: None)
    bank.add("adaptformer", expected["adaptformer"][1])
    assert bank.active == "adaptformer"
    first = bank(X).numpy()
    np.testing.assert_allclose(first, expected["adaptformer"][0], atol=1e-6, rtol=0)
    for name in ["lora", "bitfit", "vpt"]:
        bank.add(name, expected[name][1])
    assert bank.names == list(TASKS) and bank.active == "adaptformer"
    for name in ["lora", "bitfit", "vpt"]:
        bank.activate(name)
        out = bank(X).numpy()
        assert out.shape == (3, TASKS[name][1])
        np.testing.assert_allclose(out, expected[name][0], atol=1e-6, rtol=0)
        assert bank.class_names(name)[0] == f"{name}_0"
    bank.activate("adaptformer")
    np.testing.assert_array_equal(bank(X).numpy(), first)  # bit for bit after the others were added and run

    # Every frozen tensor of every task is the backbone's own object; the tuned ones are the task's.
    for name in TASKS:
        state = bank.model(name).state_dict()
        tuned = set(tuned_state_names(bank.model(name)))
        frozen = [n for n in state if n not in tuned]
        assert frozen and bank.shared_names(name) == frozen
        assert all(state[n] is backbone_state[n] for n in frozen), name
        assert not any(state[n] is backbone_state.get(n) for n in tuned), name
    lora_qkv = bank.model("lora").blocks[0].attn.qkv
    assert lora_qkv.weight is backbone.blocks[0].attn.qkv.weight  # LoRA wraps the shared weight
    # A headless backbone serves as well: every head is a task's own.
    headless = TaskBank(create_model(TINY_MODEL["name"], num_classes=0, **TINY_MODEL["kwargs"]), log=lambda *a: None)
    headless.backbone().set_state_dict({k: v for k, v in backbone_state.items() if not k.startswith("head")})
    headless.add("lora", expected["lora"][1])
    np.testing.assert_allclose(headless(X).numpy(), expected["lora"][0], atol=1e-6, rtol=0)
    # bitfit trains the biases: the task holds its own, the backbone's stay as they were.
    assert bank.model("bitfit").blocks[0].mlp.fc1.bias is not backbone.blocks[0].mlp.fc1.bias
    np.testing.assert_array_equal(backbone.blocks[0].mlp.fc1.bias.numpy(), plain_backbone().blocks[0].mlp.fc1.bias.numpy())


def test_a_task_tuned_on_another_backbone_is_refused_unless_forced(tmp_path):
    _, folder = tuned_task(tmp_path, "adaptformer", backbone_seed=5)
    bank = TaskBank(plain_backbone(), log=lambda *a: None)
    with pytest.raises(CheckpointError, match="tuned on backbone sha256:.*force=True"):
        bank.add("other", folder)
    assert bank.names == []
    lines = []
    TaskBank(plain_backbone(), log=lines.append).add("other", folder, force=True)
    assert len(lines) == 1 and lines[0].startswith("warning:")


def test_bank_errors(tmp_path):
    _, folder = tuned_task(tmp_path, "bitfit")
    bank = TaskBank(plain_backbone(), log=lambda *a: None)
    with pytest.raises(KeyError, match="no task yet"):
        bank(X)
    bank.add("a", folder)
    with pytest.raises(ValueError, match="task 'a' is already in the bank"):
        bank.add("a", folder)
    with pytest.raises(KeyError, match="no task 'b' in the bank"):
        bank.activate("b")
    wide = create_model(TINY_MODEL["name"], num_classes=3, **{**TINY_MODEL["kwargs"], "embed_dim": 64})
    with pytest.raises(CheckpointError, match=r"'cls_token' is \[1, 1, 32\] .* in the task's model, \[1, 1, 64\]"):
        TaskBank(wide, log=lambda *a: None).add("a", folder)
    np.testing.assert_array_equal(bank(np.asarray(X.numpy())).numpy(), bank(X).numpy())  # arrays work too


def test_tasks_of_one_shape_share_a_model_and_keep_their_own_weights(tmp_path):
    method, classes = TASKS["adaptformer"]
    cfg = from_dict({"model": {**TINY_MODEL, "num_classes": classes}, "method": method}, "same")
    expected = {}
    for i, name in enumerate(["a", "b", "c"]):
        model = plain_backbone()
        model.reset_classifier(classes)
        apply_method(model, cfg.method)
        train_steps(model, steps=2)
        with paddle.no_grad():  # each task its own values
            for p in model.parameters():
                if not p.stop_gradient:
                    p.set_value(p + 0.05 * (i + 1) * paddle.randn(p.shape))
        model.eval()
        expected[name] = (model(X).numpy(), save_tuned(model, str(tmp_path / name), cfg, ["x", "y", "z"]))
    bank = TaskBank(plain_backbone(), log=lambda *a: None)
    for name in expected:
        bank.add(name, expected[name][1])
    assert bank.model("a") is bank.model("b") is bank.model("c")  # one model for the shape
    assert not np.allclose(expected["a"][0], expected["b"][0], atol=1e-4)  # the tasks differ
    for name in ["b", "a", "c", "a", "b"]:
        bank.activate(name)
        np.testing.assert_allclose(bank(X).numpy(), expected[name][0], atol=1e-6, rtol=0)
    # a task that fails to load leaves the others intact
    broken = tmp_path / "broken"
    import shutil
    shutil.copytree(expected["c"][1], broken)
    (broken / "tuned.pdparams").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        bank.add("broken", str(broken))
    assert "broken" not in bank.names
    for name in ["c", "a"]:
        bank.activate(name)
        np.testing.assert_allclose(bank(X).numpy(), expected[name][0], atol=1e-6, rtol=0)


def test_bank_predict_classifies_files_with_each_tasks_classes_and_model(tmp_path):
    from PIL import Image

    logits, folder = tuned_task(tmp_path, "adaptformer")
    bank = TaskBank(plain_backbone(), log=lambda *a: None)
    bank.add("adaptformer", folder)
    image = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    good, bad = bank.predict("adaptformer", [str(image), str(broken)], topk=2)
    assert bad.error and not good.error
    names = bank.class_names("adaptformer")
    top_name, top_score = good.top[0]
    assert top_name in names and len(good.top) == 2
    # the same image through the task's model directly: the top class and its probability agree
    from adaptformer.serve.predict import Predictor
    from adaptformer.serve.tuned import tuned_config

    data = tuned_config(bank.meta("adaptformer"), "adaptformer").data
    array = Predictor(bank.model("adaptformer"), names, data).preprocess(str(image))
    probs = paddle.nn.functional.softmax(bank.model("adaptformer")(paddle.to_tensor(array[None]))).numpy()[0]
    assert names[int(probs.argmax())] == top_name
    assert abs(float(probs.max()) - top_score) < 1e-6


def test_a_shape_fingerprints_the_shared_backbone_once_and_still_refuses_another(tmp_path, monkeypatch):
    import adaptformer.serve.tasks as tasks

    calls = []
    real = tasks.backbone_fingerprint
    monkeypatch.setattr(tasks, "backbone_fingerprint", lambda *a: calls.append(1) or real(*a))
    _, first = tuned_task(tmp_path / "a", "adaptformer")
    _, second = tuned_task(tmp_path / "b", "adaptformer")
    _, other = tuned_task(tmp_path / "c", "adaptformer", backbone_seed=5)
    bank = TaskBank(plain_backbone(), log=lambda *a: None)
    bank.add("first", first)
    bank.add("second", second)
    assert len(calls) == 1
    with pytest.raises(CheckpointError, match="tuned on backbone sha256:"):
        bank.add("other", other)
    assert bank.names == ["first", "second"]
