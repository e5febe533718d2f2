"""Write a miniature Something-Something: clips whose label is a motion, in the layout the video reader
reads (train.csv, val.csv, test.csv with `videos/<split>/NNNNNN.mp4 label` lines, H.264 .mp4 written
with PyAV), from the CIFAR-10 archive's images:

    python tools/make_moving_clips.py data/moving-clips --cifar ../shared/data/cifar10-subset/cifar-10-python.tar.gz --train 400

Each clip is --frames frames of one 32x32 image shifted --step pixels further each frame (wrapping
round), in one of four directions: 0 left, 1 right, 2 up, 3 down. As in SSv2's "moving something
left/right", no single frame tells the label: only the motion does. The image's own class plays no
part. Training and validation clips come from the archive's training batches, test clips from its
test batch; --train / --val / --test clips per split, the directions balanced. --seed draws the
images and directions. Nothing is written into a folder that exists already.
"""
import argparse
import os

import _cli

DIRECTIONS = ("left", "right", "up", "down")


def moving(image, direction: int, frames: int, step: int):
    """[frames, H, W, 3] uint8: `image` rolled by k * step pixels in `direction` at frame k."""
    import numpy as np

    axis, sign = ((1, -1), (1, 1), (0, -1), (0, 1))[direction]
    return np.stack([np.roll(image, sign * k * step, axis=axis) for k in range(frames)])


def write_clip(path: str, frames) -> None:
    import av

    height, width = frames.shape[1:3]
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=8, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the folder to write (must not exist)")
    parser.add_argument("--cifar", required=True, help="the CIFAR-10 python archive (cifar-10-python.tar.gz)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (8)")
    parser.add_argument("--step", type=int, default=2, help="pixels moved per frame (2)")
    parser.add_argument("--train", type=int, default=800)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np

    from adaptformer.config import DataConfig
    from adaptformer.data.kinds.cifar import archive_dataset, load_cifar
    from adaptformer.errors import DataError
    from adaptformer.data.video_files import _av
    from adaptformer.files.atomic import staged_folder

    _av()  # PyAV or a one-line error naming the extra
    if os.path.exists(args.out):
        raise DataError(f"{args.out} exists already; pass a new folder")
    for name in ("frames", "step", "train", "val", "test"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    rng = np.random.default_rng(args.seed)
    data = DataConfig(dataset=archive_dataset(args.cifar), data_file=args.cifar, download=False)
    train_images, test_images = load_cifar(data, "train").images, load_cifar(data, "eval").images
    if len(train_images) < args.train + args.val or len(test_images) < args.test:
        raise DataError(f"{args.cifar}: {len(train_images)} training and {len(test_images)} test images; "
                        f"--train + --val need {args.train + args.val}, --test {args.test}")
    order = rng.permutation(len(train_images))
    sources = {"train": train_images[order[:args.train]], "val": train_images[order[args.train:args.train + args.val]],
               "test": test_images[rng.permutation(len(test_images))[:args.test]]}
    with staged_folder(args.out) as staging:  # an interrupted run leaves no half-written data set
        write_splits(staging, sources, args, rng)


def write_splits(out: str, sources, args, rng) -> None:
    import numpy as np

    from adaptformer.files.atomic import atomic_write_text

    for split, images in sources.items():
        folder = os.path.join(out, "videos", split)
        os.makedirs(folder)
        directions = rng.permutation(np.arange(len(images)) % len(DIRECTIONS))
        rows = []
        for i, (image, direction) in enumerate(zip(images, directions)):
            rel = f"videos/{split}/{i:06d}.mp4"
            write_clip(os.path.join(out, rel), moving(image, int(direction), args.frames, args.step))
            rows.append(f"{rel} {int(direction)}")
        atomic_write_text(os.path.join(out, f"{split}.csv"), "\n".join(rows) + "\n")
        print(f"wrote {args.out}/{split}.csv: {len(rows)} clips of {args.frames} frames, "
              f"{', '.join(f'{d} {int(np.sum(directions == k))}' for k, d in enumerate(DIRECTIONS))}")


if __name__ == "__main__":
    _cli.run(main)
