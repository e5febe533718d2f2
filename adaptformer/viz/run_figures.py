"""A run's own figures (train.figures: true), the two the iFormer notebook drew for its run:
learning curves (training and evaluation loss and top-1, by epoch) and a grid of test images
with the predicted and the true class."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from adaptformer.viz.figures import image_grid, pyplot, save

CURVES = "curves.png"
TEST_GRID = "test_predictions.png"
GRID_IMAGES = 24


def plot_learning_curves(records: List[Dict], split: str, path: str) -> None:
    """Loss and top-1 on the training batches (averaged over each epoch, augmented) and on `split`.
    One run of one method: the two colours tell the splits apart and are no method's colour."""
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = pyplot().subplots(1, 2, figsize=(11, 4))
    epochs = [r["epoch"] for r in records]
    for ax, key, name in ((ax_loss, "loss", "loss"), (ax_acc, "top1", "top-1")):
        for prefix, label, colour in (("train_", "training batches", "black"), ("eval_", split, "tab:cyan")):
            points = [(e, r[prefix + key]) for e, r in zip(epochs, records) if r.get(prefix + key) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, color=colour, label=label)
        ax.set(xlabel="epoch", ylabel=name, title=f"Learning curve: {name}")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.legend(fontsize=8)
    ax_loss.set_ylim(0, None)
    ax_acc.set_ylim(0, 1)
    save(fig, path)


def displayable(image, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised CHW image tensor back to HxWx3 in [0, 1], as it entered the model."""
    x = np.asarray(image, dtype=np.float32).transpose(1, 2, 0)
    return np.clip(x * np.asarray(std, np.float32) + np.asarray(mean, np.float32), 0.0, 1.0)


def grid_captions(labels: Sequence[int], predicted: Sequence[int], names: Sequence[str]):
    """'predicted: X / true: Y' for each image, green when right and red when wrong."""
    captions, colours = [], []
    for label, guess in zip(labels, predicted):
        captions.append(f"predicted: {names[int(guess)]}\ntrue: {names[int(label)]}")
        colours.append("green" if int(guess) == int(label) else "red")
    return captions, colours


def shown_items(dataset, predicted: Sequence[int], shown: int = GRID_IMAGES) -> List[Tuple]:
    """(image, true label, predicted label) of the first `shown` readable items of `dataset`, in order.
    `predicted` holds one entry per readable item: an image folder's unreadable files (label < 0,
    left out under data.on_bad_image: skip) got no prediction, so they are passed over here too."""
    items = []
    for index in range(len(dataset)):
        if len(items) >= min(shown, len(predicted)):
            break
        image, label = dataset[index]
        if int(label) >= 0:
            items.append((image, int(label), int(predicted[len(items)])))
    return items


def plot_test_grid(dataset, predicted: Sequence[int], names: Sequence[str], mean: Sequence[float],
                   std: Sequence[float], path: str, shown: int = GRID_IMAGES) -> None:
    """The first `shown` readable images of `dataset` (items: (normalised CHW image, label)) captioned
    with their predicted and true class."""
    items = shown_items(dataset, predicted, shown)
    captions, colours = grid_captions([label for _, label, _ in items], [guess for _, _, guess in items], names)
    right = colours.count("green")
    image_grid([displayable(image, mean, std) for image, _, _ in items], captions, colours, path,
               title=f"first {len(items)} test images: {right} right")
