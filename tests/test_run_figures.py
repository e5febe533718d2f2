"""train.figures: a run's learning curves and its grid of predicted test images; a study's figures:
one colour per method, each stage named once, pretraining on axes of its own."""
import json
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from adaptformer.config import DataConfig, load_config
from adaptformer.data.transforms import build_transforms
from adaptformer.engine.runner import train
from adaptformer.study.report import COLUMNS, _csv
from adaptformer.viz.figures import METHOD_COLOURS, method_colour, pyplot, stage_label, stage_styles
from adaptformer.viz.run_figures import CURVES, TEST_GRID, displayable, grid_captions, shown_items
from adaptformer.viz.study_figures import (ACCURACY, Point, Series, StageCurves, chance_of, curves_of,
                                           draw_accuracy_vs_parameters, draw_study_curves, main, points_from_csv,
                                           points_of)


def test_displayable_undoes_the_eval_normalisation():
    data = DataConfig(dataset="cifar10", img_size=32, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    tensor = build_transforms(data, train=False)(Image.fromarray(pixels))
    shown = displayable(tensor, data.mean, data.std)
    assert shown.shape == (32, 32, 3)
    np.testing.assert_allclose(shown, pixels / 255.0, atol=1e-6)


def test_captions_name_both_classes_and_colour_by_correctness():
    captions, colours = grid_captions([0, 1, 2], [0, 2, 2], ["cat", "dog", "frog"])
    assert captions == ["predicted: cat\ntrue: cat", "predicted: frog\ntrue: dog", "predicted: frog\ntrue: frog"]
    assert colours == ["green", "red", "green"]


def test_the_grid_pairs_predictions_with_readable_images_only():
    # Items 1 and 3 stand for unreadable folder images (label < 0): they got no prediction.
    dataset = [("img0", np.int64(2)), ("bad1", np.int64(-2)), ("img2", np.int64(0)), ("bad3", np.int64(-4)),
               ("img4", np.int64(1)), ("img5", np.int64(1))]
    predicted = [2, 1, 1, 0]
    assert shown_items(dataset, predicted) == [("img0", 2, 2), ("img2", 0, 1), ("img4", 1, 1), ("img5", 1, 0)]
    assert shown_items(dataset, predicted, shown=2) == [("img0", 2, 2), ("img2", 0, 1)]


@pytest.mark.parametrize("figures", [True, False])
def test_a_run_draws_its_figures_only_when_asked(tiny_config, figures):
    cfg = load_config(tiny_config(train={"figures": figures}))
    train(cfg)
    out = cfg.train.output_dir
    drawn = [name for name in (CURVES, TEST_GRID) if os.path.exists(os.path.join(out, name))]
    assert drawn == ([CURVES, TEST_GRID] if figures else [])
    for name in drawn:
        with Image.open(os.path.join(out, name)) as img:
            assert img.format == "PNG" and img.width > 400
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        assert json.load(f)["test_top1"] is not None


# --------------------------------------------------------------------------- a study's figures (issue 25)

def _curves(order):
    """Stage curves as a study of the CPU transfer protocol has them: an 80-epoch pretraining that
    is the backbone of 16-epoch transfers, and training from scratch (method full, like pretraining)."""
    epochs = {"pretrain": 80}
    method = {"pretrain": "full", "scratch": "full", "adaptformer": "adaptformer", "linear": "linear", "full": "full"}
    stages = []
    for i, name in enumerate(order):
        n = epochs.get(name, 16)
        series = Series(list(range(1, n + 1)), np.linspace(0.3, 0.6 + 0.01 * i, n), np.linspace(0.2, 0.5, n),
                        np.linspace(0.4, 0.7, n))
        stages.append(StageCurves(name, method[name], name == "pretrain", "val", 1 if name == "pretrain" else 3,
                                  series, series))
    return stages


def _points(order):
    params = {"scratch": 2_689_157, "adaptformer": 39_083, "linear": 965, "full": 2_689_157}
    method = {"scratch": "full", "adaptformer": "adaptformer", "linear": "linear", "full": "full"}
    return [Point(name, method[name], params[name], 0.5 + 0.01 * i, 0.01, 3) for i, name in enumerate(order)]


def _drawn(fig):
    """{label: (colour as RGBA, axes index)} of every line and error bar of a figure; labels unique."""
    drawn = {}
    for k, ax in enumerate(fig.axes):
        artists = [(line.get_label(), line.get_color()) for line in ax.get_lines() if not line.get_label().startswith("_")]
        artists += [(c.get_label(), c.lines[0].get_color()) for c in ax.containers]
        for label, colour in artists:
            drawn.setdefault(label, []).append((to_rgba(colour), k))
    return drawn


def _legend_texts(fig):
    return [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes if ax.get_legend()]


def test_a_method_keeps_its_colour_in_every_figure_and_order():
    plt = pyplot()
    figures = [draw_study_curves(_curves(["pretrain", "scratch", "adaptformer", "linear", "full"])),
               draw_study_curves(_curves(["pretrain", "linear", "full", "adaptformer"])),
               draw_accuracy_vs_parameters(_points(["full", "linear", "adaptformer", "scratch"]), chance=0.2),
               draw_accuracy_vs_parameters(_points(["adaptformer", "scratch"]))]
    try:
        colours = {}
        for fig in figures:
            for label, places in _drawn(fig).items():
                stage = label.split(":")[0].split(" (")[0]
                for colour, _ in places:
                    colours.setdefault(stage, set()).add(colour)
        for stage, method in (("adaptformer", "adaptformer"), ("linear", "linear"), ("full", "full")):
            assert colours[stage] == {to_rgba(METHOD_COLOURS[method])}, stage
        # Stages of one method share its colour (and differ by line style and marker).
        assert colours["scratch"] == colours["pretrain"] == colours["full"]
        assert len({next(iter(colours[s])) for s in ("adaptformer", "linear", "full")}) == 3
    finally:
        for fig in figures:
            plt.close(fig)


def test_a_method_not_in_the_table_gets_one_colour_whatever_the_order():
    assert method_colour("lora+vpt") == method_colour("lora+vpt")
    assert method_colour("lora+vpt") not in METHOD_COLOURS.values()
    first = dict(zip(["a", "b"], stage_styles([("a", "lora+vpt"), ("b", "bitfit")])))
    second = dict(zip(["b", "a"], stage_styles([("b", "bitfit"), ("a", "lora+vpt")])))
    assert first["a"][0] == second["a"][0] and first["b"][0] == second["b"][0] == METHOD_COLOURS["bitfit"]


def test_legends_name_each_stage_once():
    assert stage_label("adaptformer", "adaptformer") == "adaptformer"
    assert stage_label("adaptformer16", "adaptformer") == "adaptformer16"
    assert stage_label("scratch", "full") == "scratch (full)"
    assert stage_label("adaptformer16+vpt10", "adaptformer+vpt") == "adaptformer16+vpt10 (adaptformer+vpt)"
    plt = pyplot()
    figures = [draw_study_curves(_curves(["pretrain", "scratch", "adaptformer", "linear", "full"])),
               draw_accuracy_vs_parameters(_points(["scratch", "adaptformer", "linear", "full"]), chance=0.2)]
    try:
        legends = [texts for fig in figures for texts in _legend_texts(fig)]
        assert len(legends) == 3  # one per row of curves, one for the accuracy figure
        for texts in legends:
            assert len(texts) == len(set(texts)), texts
            for text in texts:
                name = text.split(":")[0]
                assert not re.fullmatch(r"(\S+) \(\1\)", name), text
        assert legends[0] == ["scratch (full)", "adaptformer", "linear", "full"]
        assert legends[1] == ["pretrain (full)"]
        assert legends[2][:3] == ["chance (1/5)", "scratch (full): 0.500 ± 0.010", "adaptformer: 0.510 ± 0.010"]
    finally:
        for fig in figures:
            plt.close(fig)


def test_pretraining_is_drawn_on_axes_apart_from_the_transfers():
    plt = pyplot()
    fig = draw_study_curves(_curves(["pretrain", "scratch", "adaptformer", "linear", "full"]))
    try:
        drawn = _drawn(fig)
        pretrain_axes = {k for _, k in drawn["pretrain (full)"]}
        transfer_axes = {k for label, places in drawn.items() if label != "pretrain (full)" for _, k in places}
        assert len(pretrain_axes) == 2 and len(transfer_axes) == 2 and not pretrain_axes & transfer_axes
        for k in transfer_axes:  # the 16 transfer epochs fill their axis; the 80 pretraining ones are not on it
            assert fig.axes[k].get_xlim()[1] < 20
        for k in pretrain_axes:
            assert fig.axes[k].get_xlim()[1] >= 80
            assert "Pretraining (pretrain)" in fig.axes[k].get_title()
    finally:
        plt.close(fig)
    # Without a backbone stage there is one row, and nothing is called pretraining.
    fig = draw_study_curves([s for s in _curves(["scratch", "linear"])])
    try:
        assert len(fig.axes) == 2 and not any("Pretraining" in ax.get_title() for ax in fig.axes)
    finally:
        plt.close(fig)


def test_the_accuracy_figure_redraws_from_results_csv(tmp_path):
    rows = [{"stage": "pretrain", "method": "full", "trainable_params": 2_689_157, "runs": "committed", "test_top1": None},
            {"stage": "adaptformer", "method": "adaptformer", "trainable_params": 39_083, "runs": "3",
             "test_top1": (0.63125, 0.0)},
            {"stage": "linear", "method": "linear", "trainable_params": 965, "runs": "3",
             "test_top1": (0.5965277777777778, 0.0052429405800491135)}]
    (tmp_path / "results.csv").write_text(_csv(COLUMNS, rows))
    points = points_from_csv(str(tmp_path / "results.csv"))
    assert points == [Point("adaptformer", "adaptformer", 39_083, 0.63125, 0.0, 3),
                      Point("linear", "linear", 965, 0.5965277777777778, 0.0052429405800491135, 3)]
    main([str(tmp_path), "--classes", "5"])
    with Image.open(tmp_path / ACCURACY) as img:
        assert img.format == "PNG" and img.width > 400


def test_a_studys_results_mark_the_backbone_stage_and_leave_it_out_of_the_accuracy_figure():
    def result(name, method, pretrained_from=None, seeds=1, epochs=3):
        records = [{"epoch": e, "eval_top1": 0.1 * e, "train_loss": 1.0 / e} for e in range(1, epochs + 1)]
        runs = [{"summary": {"method": method, "selected_on": "val"}, "records": records,
                 "predictions": {"labels": [0, 1, 2, 3, 4], "best": [0, 1, 2, 3, 3]}} for _ in range(seeds)]
        return SimpleNamespace(stage=SimpleNamespace(name=name, pretrained_from=pretrained_from), runs=runs)

    results = [result("pre", "full", epochs=6), result("adaptformer", "adaptformer", "pre", seeds=2),
               result("linear", "linear", "pre", seeds=2)]
    curves = curves_of(results)
    assert [(c.stage, c.backbone, c.seeds) for c in curves] == [("pre", True, 1), ("adaptformer", False, 2),
                                                               ("linear", False, 2)]
    assert curves[0].top1.epochs == [1, 2, 3, 4, 5, 6] and curves[1].loss.mean.tolist() == [1.0, 0.5, 1 / 3]
    rows = [{"method": m, "trainable_params": p, "test_top1": t} for m, p, t in
            (("full", 100, None), ("adaptformer", 10, (0.6, 0.01)), ("linear", 1, (0.5, 0.02)))]
    assert [p.stage for p in points_of(results, rows)] == ["adaptformer", "linear"]
    assert chance_of(results) == pytest.approx(0.2)
