import pytest
import yaml

from adaptformer.config import ConfigError, load_config, load_study, parse_override, save_config


def write(path, data):
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def test_base_inheritance_and_typed_overrides(tmp_path):
    write(tmp_path / "base.yaml", {"optimizer": {"lr": 0.01, "momentum": 0.8}, "train": {"epochs": 3}})
    child = write(tmp_path / "child.yaml", {"_base_": "base.yaml", "optimizer": {"lr": 0.02}})
    cfg = load_config(child, ["train.epochs=7", "data.classes=[1, 2]", "model.num_classes=2",
                              "method.adaptformer.learnable_scale=false", "optimizer.weight_decay=5e-4"])
    assert cfg.optimizer.lr == 0.02 and cfg.optimizer.momentum == 0.8  # child wins, base fills in
    assert cfg.train.epochs == 7 and cfg.data.classes == [1, 2]
    assert cfg.method.adaptformer.learnable_scale is False
    assert cfg.optimizer.weight_decay == pytest.approx(5e-4)  # YAML 1.1 reads 5e-4 as a string


def test_unknown_key_names_the_file_and_key(tmp_path):
    write(tmp_path / "base.yaml", {"optimizer": {"lrr": 0.1}})
    child = write(tmp_path / "child.yaml", {"_base_": "base.yaml"})
    with pytest.raises(ConfigError, match=r"base\.yaml: unknown key 'optimizer\.lrr'"):
        load_config(child)
    with pytest.raises(ConfigError, match=r"-o: unknown key 'train\.epoch'"):
        load_config(write(tmp_path / "ok.yaml", {}), ["train.epoch=3"])
    with pytest.raises(ConfigError, match=r"unknown key 'trian'"):
        load_config(write(tmp_path / "bad.yaml", {"trian": {"epochs": 1}}))


def test_wrong_types_and_choices(tmp_path):
    path = write(tmp_path / "c.yaml", {"train": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match=r"c\.yaml: train\.epochs must be an integer, got 'ten'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"-o: optimizer\.name must be one of momentum, sgd, adamw, adam, got 'lamb'"):
        load_config(write(tmp_path / "d.yaml", {}), ["optimizer.name=lamb"])
    with pytest.raises(ConfigError, match="must be true or false"):
        load_config(write(tmp_path / "e.yaml", {"method": {"adaptformer": {"learnable_scale": "yes please"}}}))


def test_consistency_checks(tmp_path):
    with pytest.raises(ConfigError, match="method.adaptformer.bottleneck is a setting of method 'adaptformer'; method.name is 'full'"):
        load_config(write(tmp_path / "a.yaml", {"method": {"name": "full", "adaptformer": {"bottleneck": 8}}}))
    bad_methods = {
        "full+lora": "'full' cannot be combined",
        "adaptformer+adapter": "both put a module in each block's adapter slot",
        "adaptformer+prefix": "unknown method 'prefix'",
        "vpt+vpt": "names a method twice",
    }
    for name, message in bad_methods.items():
        with pytest.raises(ConfigError, match=message):
            load_config(write(tmp_path / "m.yaml", {"method": {"name": name}}))
    with pytest.raises(ConfigError, match=r"method.lora.targets must be distinct names from .*got \['q', 'qkv'\]"):
        load_config(write(tmp_path / "l.yaml", {"method": {"name": "lora", "lora": {"targets": ["q", "qkv"]}}}))
    with pytest.raises(ConfigError, match="method.vpt.num_tokens must be >= 1, got 0"):
        load_config(write(tmp_path / "v.yaml", {"method": {"name": "adaptformer+vpt", "vpt": {"num_tokens": 0}}}))
    with pytest.raises(ConfigError, match="model.num_classes is 10 but data.classes keeps 2"):
        load_config(write(tmp_path / "b.yaml", {"data": {"classes": [0, 1]}}))


def test_bad_files_and_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path / "broken.yaml", "train: [1, 2"))
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("train.epochs")
    loop = write(tmp_path / "loop.yaml", {"_base_": "loop.yaml"})
    with pytest.raises(ConfigError, match="loops back"):
        load_config(loop)


@pytest.mark.parametrize("method", ["adaptformer", "full", "linear"])
def test_saved_config_reloads_identically(tmp_path, method):
    cfg = load_config(write(tmp_path / "c.yaml", {"train": {"epochs": 4}, "method": {"name": method}}),
                      ["optimizer.lr=0.3"])
    save_config(cfg, str(tmp_path / "out" / "config.yaml"))
    assert load_config(str(tmp_path / "out" / "config.yaml")) == cfg


def test_study_requires_stage_fields_and_earlier_sources(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'study.stages\\[0\\].config'"):
        load_study(write(tmp_path / "s.yaml", {"study": {"name": "x", "output_dir": "o", "stages": [{"name": "a"}]}}))
    with pytest.raises(ConfigError, match="not an earlier stage"):
        load_study(write(tmp_path / "t.yaml", {"study": {"name": "x", "output_dir": "o", "stages": [
            {"name": "a", "config": "a.yaml", "pretrained_from": "b"}, {"name": "b", "config": "b.yaml"}]}}))


def test_shipped_configs_load():
    import glob
    import os

    from adaptformer.config import is_study, is_suite, load_suite

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [p for p in glob.glob(os.path.join(root, "configs", "**", "*.yaml"), recursive=True)
             if "_base_" not in os.path.basename(p) and "/_base_/" not in p]
    assert len(paths) >= 8
    for p in paths:
        if is_study(p):
            study = load_study(p)
            for stage in study.stages:
                load_config(os.path.join(os.path.dirname(p), stage.config))
        elif is_suite(p):
            suite = load_suite(p)
            for method in suite.methods:
                load_config(os.path.join(os.path.dirname(p), method.config))
        else:
            load_config(p)
