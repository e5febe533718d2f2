"""Pretrained ViT weights from the files users actually have, without PyTorch.

    from adaptformer.models import create_model, load_pretrained
    model = create_model("vit_base_patch16_224", num_classes=100)
    print(load_pretrained(model, "mae_pretrain_vit_base.pth"))

The pipeline, one module per step:
  formats.read_checkpoint   file -> flat {name: numpy array} + what the file is
                            (.pdparams, .safetensors, Google/big_vision .npz,
                            PyTorch zip .pth read by a restricted unpickler)
  layouts.to_model_names    any known key layout -> this package's names and
                            Paddle orientation (Linear weights [in, out])
  resize.resize_pos_embed   a position embedding onto another patch grid
  load.load_pretrained      into a model: head re-initialised when its class
                            count differs, every other missing key an error
"""
from adaptformer.weights.formats import Checkpoint, read_checkpoint
from adaptformer.weights.layouts import to_model_names
from adaptformer.weights.load import LoadReport, load_pretrained
from adaptformer.weights.resize import resize_pos_embed

__all__ = ["Checkpoint", "LoadReport", "load_pretrained", "read_checkpoint", "resize_pos_embed", "to_model_names"]
