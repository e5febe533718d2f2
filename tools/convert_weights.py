"""Convert a pretrained ViT checkpoint (any supported format) to a Paddle .pdparams.

    python tools/convert_weights.py SRC DST.pdparams
    python tools/convert_weights.py mae_pretrain_vit_base.pth vit_b16_mae.pdparams --model vit_base_patch16_224

SRC: PaddleClas .pdparams, timm/Hugging Face .safetensors, Google ViT or
big_vision .npz, or a PyTorch .pth/.pt zip (timm, DeiT, MAE, official
AdaptFormer) -- read without PyTorch; pickled code is refused, never run.
With --model the weights are loaded into that model first: every backbone
tensor must be present and fit, the position embedding is resized to the
model's grid, and DST holds exactly the tensors that were loaded.

With --inflate-frames T an image ViT becomes a video ViT's starting point
(adaptformer/weights/inflate.py states the rule), for
videomae_vit_* with kwargs num_frames T, tubelet_size (--tubelet, 2) and learnable_pos: true:

    python tools/convert_weights.py pretrained/cpu_vit6x192_cifar10_first5.pdparams video.pdparams --inflate-frames 8
"""
import argparse
import os

import _cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="checkpoint to read")
    parser.add_argument("dst", help="the .pdparams file to write")
    parser.add_argument("--model", help="check against (and fit to) this model, e.g. vit_base_patch16_224")
    parser.add_argument("--img-size", type=int, help="the model's input size (resizes the position embedding)")
    parser.add_argument("--num-classes", type=int, default=0, help="keep a head of this many classes (default: none)")
    parser.add_argument("--allow-missing", action="append", default=[], metavar="PATTERN",
                        help="model tensors the checkpoint may lack (name pattern; repeatable)")
    parser.add_argument("--inflate-frames", type=int, metavar="T",
                        help="write an image ViT's weights inflated to a video ViT taking clips of T frames")
    parser.add_argument("--tubelet", type=int, default=2, help="with --inflate-frames: frames per tubelet (2)")
    args = parser.parse_args()

    from adaptformer.weights.checkpoint import CheckpointError, save_state
    from adaptformer.models import create_model
    from adaptformer.files import check_outputs
    from adaptformer.files.atomic import require_writable_dir
    from adaptformer.weights import load_pretrained, read_checkpoint, to_model_names

    if args.inflate_frames is not None and args.model:
        parser.error("--inflate-frames reads the image checkpoint as it is: leave out --model")
    if args.inflate_frames is not None and not (1 <= args.tubelet <= args.inflate_frames <= 512):
        parser.error(f"--inflate-frames {args.inflate_frames} with --tubelet {args.tubelet}: need 1 <= tubelet <= frames <= 512")
    if not args.dst.endswith(".pdparams"):
        raise CheckpointError(f"{args.dst}: the output must be a .pdparams file")
    side = os.path.join(os.path.dirname(args.src), "config.json")  # read beside a .safetensors
    check_outputs({"DST": args.dst}, [args.src, side])
    require_writable_dir(os.path.dirname(os.path.abspath(args.dst)))
    if args.model:
        kwargs = {"img_size": args.img_size} if args.img_size else {}
        try:
            model = create_model(args.model, num_classes=args.num_classes, **kwargs)
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"--model {args.model}: {e}") from None
        report = load_pretrained(model, args.src, allow_missing=args.allow_missing)
        print(report)
        state = model.state_dict()
        tensors = {k: state[k].numpy() for k in report.loaded}
        normalization = report.normalization
    else:
        ckpt = read_checkpoint(args.src)
        tensors, layout = to_model_names(ckpt)
        normalization = ckpt.normalization
        print(f"read {len(tensors)} tensors from {args.src} ({ckpt.format}, {layout} layout)")
        if args.inflate_frames is not None:
            from adaptformer.weights.inflate import inflate_image_vit

            try:
                tensors = inflate_image_vit(tensors, args.inflate_frames, args.tubelet)
            except ValueError as e:
                raise CheckpointError(f"--inflate-frames: {e}") from None
            print(f"inflated to a video ViT for clips of {args.inflate_frames} frames in tubelets of {args.tubelet} "
                  "(model kwargs: num_frames, tubelet_size, learnable_pos: true, time_embed: true)")
    save_state(tensors, args.dst)
    print(f"wrote {args.dst} ({len(tensors)} tensors)")
    if normalization:
        mean, std = normalization
        print(f"train on inputs normalised with data.mean: {list(mean)}, data.std: {list(std)}")


if __name__ == "__main__":
    _cli.run(main)
