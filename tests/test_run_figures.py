"""train.figures: a run's learning curves and its grid of predicted test images."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from adaptformer.config import DataConfig, load_config
from adaptformer.data.transforms import build_transforms
from adaptformer.engine.runner import train
from adaptformer.viz.run_figures import CURVES, TEST_GRID, displayable, grid_captions, shown_items


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
