"""Write a miniature VTAB-1k from data on this machine, in VTAB-1k's own layout, so that the
vtab reader and the suite command run it as they run the real one:

    python tools/make_mini_vtab.py data/mini-vtab --cifar ../shared/data/cifar10-subset/cifar-10-python.tar.gz

Tasks (each: train800.txt, val200.txt, train800val200.txt, test.txt and images/<list>/NNNNNN.png):
  cifar10_5to9   natural: CIFAR-10 classes 5-9 (relabelled 0-4) of the archive; the training
                 lists from its training batches, test.txt every test image of those classes
  digits         far from the backbone: scikit-learn's 1,797 handwritten 8x8 digits (shipped
                 inside scikit-learn, an optional extra: pip install -e ".[mini]"), 10 classes
  dsprites_loc   structured: dSprites-style sprites drawn as that dataset defines them (shape:
  dsprites_ori   square, ellipse or heart; scale 0.5-1 in 6 steps; orientation 0-2pi in 40 steps;
                 x and y in 32 steps), 64x64; the label is x (loc) or the orientation (ori) in 16 bins
--tasks picks some; --seed draws the images of each list. Nothing is written into a task folder
that exists already.
"""
import argparse
import math
import os

import _cli

TASKS = ("cifar10_5to9", "digits", "dsprites_loc", "dsprites_ori")
SIZES = {"train800": 800, "val200": 200}
SPRITE_TEST = 500


def write_task(root, name, splits):
    """splits: {list name: [(uint8 HxW(x3) array, label), ...]}; writes NOAH's layout."""
    from adaptformer.files.atomic import staged_folder

    with staged_folder(os.path.join(root, name)) as folder:  # an interrupted run leaves no half-written task
        return _write_lists(folder, splits)


def _write_lists(folder, splits):
    import numpy as np
    from PIL import Image

    from adaptformer.files.atomic import atomic_write_text

    lists = {}
    for split, items in splits.items():
        os.makedirs(os.path.join(folder, "images", split))
        rows = []
        for i, (pixels, label) in enumerate(items):
            rel = f"images/{split}/{i:06d}.png"
            Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("RGB").save(os.path.join(folder, rel))
            rows.append(f"{rel} {int(label)}")
        lists[split] = rows
    lists["train800val200"] = lists["train800"] + lists["val200"]
    for split, rows in lists.items():
        atomic_write_text(os.path.join(folder, f"{split}.txt"), "\n".join(rows) + "\n")
    return {split: len(rows) for split, rows in lists.items()}


def draw(items, rng):
    """items [(pixels, label)] -> {train800, val200, test} drawn without replacement (test: the rest)."""
    order = rng.permutation(len(items))
    train, val = order[:SIZES["train800"]], order[SIZES["train800"]:SIZES["train800"] + SIZES["val200"]]
    return [items[i] for i in train], [items[i] for i in val], [items[i] for i in order[len(train) + len(val):]]


def cifar_task(archive, rng):
    from adaptformer.config import DataConfig
    from adaptformer.data.kinds.cifar import archive_dataset, load_cifar

    data = DataConfig(dataset=archive_dataset(archive), data_file=archive, classes=[5, 6, 7, 8, 9], download=False)
    train = load_cifar(data, "train")
    items = list(zip(train.images, train.labels))
    if len(items) < 1000:
        from adaptformer.errors import DataError

        raise DataError(f"{archive}: {len(items)} training images of classes 5-9; the task needs 1,000")
    train800, val200, _ = draw(items, rng)
    test = load_cifar(data, "eval")
    return {"train800": train800, "val200": val200, "test": list(zip(test.images, test.labels))}


def digits_task(rng):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        from adaptformer.errors import UserError

        raise UserError('the digits task needs scikit-learn: pip install -e ".[mini]" '
                        "(or leave it out: --tasks cifar10_5to9,dsprites_loc,dsprites_ori)") from None
    import numpy as np

    digits = load_digits()
    # 0..16 intensities, 8x8; dark strokes on light paper as ink would be, upscaled 4x (nearest)
    pixels = [np.kron(255 - img * 15, np.ones((4, 4))).clip(0, 255) for img in digits.images]
    train800, val200, test = draw(list(zip(pixels, digits.target)), rng)
    return {"train800": train800, "val200": val200, "test": test}


def heart(t):
    return 16 * math.sin(t) ** 3, 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)


def sprite(shape, scale, angle, x, y, size=64):
    """One dSprites-style image: a white shape on black, centred at (x, y) in [0, 1]."""
    import numpy as np
    from PIL import Image, ImageDraw

    if shape == 0:  # square
        outline = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    elif shape == 1:  # ellipse
        outline = [(math.cos(t) * 1.0, math.sin(t) * 0.5) for t in np.linspace(0, 2 * math.pi, 40, endpoint=False)]
    else:  # heart
        outline = [(hx / 16.0, -hy / 16.0) for hx, hy in map(heart, np.linspace(0, 2 * math.pi, 60, endpoint=False))]
    radius = 0.16 * size * scale
    margin = 0.15 * size
    cx, cy = margin + x * (size - 2 * margin), margin + y * (size - 2 * margin)
    c, s = math.cos(angle), math.sin(angle)
    points = [(cx + radius * (px * c - py * s), cy + radius * (px * s + py * c)) for px, py in outline]
    image = Image.new("L", (size, size), 0)
    ImageDraw.Draw(image).polygon(points, fill=255)
    return np.asarray(image)


def sprite_task(factor, rng, count):
    """dSprites' factors drawn uniformly; the label is the x position or the orientation in 16 bins."""
    items = []
    for _ in range(count):
        shape, scale, angle, x, y = (int(rng.integers(3)), int(rng.integers(6)), int(rng.integers(40)),
                                     int(rng.integers(32)), int(rng.integers(32)))
        pixels = sprite(shape, 0.5 + 0.1 * scale, 2 * math.pi * angle / 40, x / 31, y / 31)
        label = x * 16 // 32 if factor == "loc" else angle * 16 // 40
        items.append((pixels, label))
    return {"train800": items[:800], "val200": items[800:1000], "test": items[1000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the miniature's root: one folder per task is written under it")
    parser.add_argument("--cifar", help="cifar-10-python.tar.gz (needed for cifar10_5to9)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--seed", type=int, default=0, help="draws each task's lists (default 0)")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        parser.error(f"--tasks: unknown {', '.join(unknown) or '(none given)'}; expected some of {', '.join(TASKS)}")
    if "cifar10_5to9" in tasks and not args.cifar:
        parser.error("cifar10_5to9 needs --cifar ARCHIVE (or leave it out with --tasks)")
    existing = [t for t in tasks if os.path.lexists(os.path.join(args.out, t))]
    if existing:
        parser.error(f"{os.path.join(args.out, existing[0])} exists; the tool writes only new task folders")
    if args.cifar and not os.path.isfile(args.cifar):
        parser.error(f"--cifar {args.cifar}: no such file")

    import numpy as np

    for i, task in enumerate(tasks):
        rng = np.random.default_rng([args.seed, TASKS.index(task)])
        if task == "cifar10_5to9":
            splits = cifar_task(args.cifar, rng)
        elif task == "digits":
            splits = digits_task(rng)
        else:
            splits = sprite_task(task.split("_")[1], rng, 1000 + SPRITE_TEST)
        counts = write_task(args.out, task, splits)
        print(f"wrote {os.path.join(args.out, task)}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    _cli.run(main)
