"""Write images of a CIFAR archive as PNG files, one folder per class name, to try
tools/predict.py on (predict reads the true label from the folder name).

    python tools/cifar_images.py ../shared/data/cifar10-subset/cifar-10-python.tar.gz images/ --classes 5 6 7 8 9 --per-class 4
"""
import argparse
import os

import _cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", help="cifar-10-python.tar.gz or cifar-100-python.tar.gz")
    parser.add_argument("out", help="folder to write <class name>/<index>.png into")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--classes", type=int, nargs="+", help="class indices to keep (default: all)")
    parser.add_argument("--per-class", type=int, default=4, help="images per class (default 4)")
    args = parser.parse_args()
    if args.per_class < 1:
        parser.error(f"--per-class must be >= 1, got {args.per_class}")

    from PIL import Image

    from adaptformer.config import DataConfig
    from adaptformer.data import class_names
    from adaptformer.data.kinds.cifar import archive_dataset, load_cifar
    from adaptformer.files.atomic import atomic_write, require_writable_dir

    dataset = archive_dataset(args.archive)
    data = DataConfig(dataset=dataset, data_file=args.archive, classes=args.classes, download=False)
    names = class_names(data)
    images = load_cifar(data, "eval" if args.split == "test" else "train")
    os.makedirs(args.out, exist_ok=True)
    require_writable_dir(args.out)
    written = {}
    for index, label in enumerate(images.labels):
        name = names[int(label)]
        if written.get(name, 0) >= args.per_class:
            continue
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        image = Image.fromarray(images.images[index])
        atomic_write(os.path.join(folder, f"{index:05d}.png"), lambda tmp, im=image: im.save(tmp, format="PNG"))
        written[name] = written.get(name, 0) + 1
    print(f"wrote {sum(written.values())} images of {len(written)} classes to {args.out}")


if __name__ == "__main__":
    _cli.run(main)
