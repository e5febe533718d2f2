"""Paddle DataLoaders that end a run with one line when loading fails, never a hang.

An exception inside Paddle's loader hangs it (num_workers 0: the batch is fetched in a thread
the main thread then waits on) or ends it with a traceback from every worker. So nothing may
raise there:
- the batch order of an epoch is drawn in the main process (PlannedBatchSampler.set_epoch);
- each sample is loaded through GuardedSamples, which turns any exception into a blank sample
  marked by its label (FAILED - index); an unreadable image of a dataset of image files comes
  marked by that dataset itself (data/image_files.py: -1 - its index), as data.on_bad_image may skip it;
- SampleGuard, around the loader in the main process, loads a marked sample again there for its
  message and stops with one DataError line (or, for images under on_bad_image: skip, leaves it out).
"""
from __future__ import annotations

from typing import List

import numpy as np
import paddle
from paddle.io import DataLoader, Dataset, DistributedBatchSampler

from adaptformer.errors import DataError, short_reason
from adaptformer.data.image_files import ImageFiles
from adaptformer.data.kinds import sample_shape
from adaptformer.data.workers import worker_init_fn

FAILED = -(2**40)  # labels at or below it mark a sample whose loading raised (FAILED - index)


class GuardedSamples(Dataset):
    """`dataset`, with any exception in loading a sample returned as a marked blank sample of
    `shape` (an image [3, H, W]; a clip [3, T, H, W]), so that its batch still stacks."""

    def __init__(self, dataset, shape):
        self.dataset, self.shape = dataset, tuple(shape)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except Exception:  # noqa: BLE001  (reported from the main process by SampleGuard)
            return np.zeros(self.shape, np.float32), np.array(FAILED - index, np.int64)


class PlannedBatchSampler(DistributedBatchSampler):
    """DistributedBatchSampler whose epoch's batches are drawn by set_epoch, in the calling thread."""

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self._planned = list(super().__iter__())

    def __iter__(self):
        planned = getattr(self, "_planned", None)
        return iter(planned) if planned is not None else super().__iter__()


def _image_files_of(dataset):
    while not isinstance(dataset, ImageFiles) and hasattr(dataset, "dataset"):
        dataset = dataset.dataset  # through paddle.io.Subset (a shard, the validation hold-out)
    return dataset if isinstance(dataset, ImageFiles) else None


class SampleGuard:
    """The DataLoader as the trainer iterates it, handling the marked samples (module docstring)."""

    def __init__(self, loader: DataLoader, samples: GuardedSamples, on_bad_image: str, log=print):
        self.loader, self.samples, self.on_bad_image, self.log = loader, samples, on_bad_image, log
        self.files = _image_files_of(samples.dataset)
        self.skipped: List[str] = []

    def __getattr__(self, name: str):  # batch_sampler, dataset, ... of the wrapped loader
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for images, labels in self.loader:
            flat = labels.numpy().reshape([-1])
            bad = flat < 0
            if not bad.any():
                yield images, labels
                continue
            for label in flat[bad]:
                self._handle(int(label))
            keep = np.flatnonzero(~bad)
            if keep.size == 0:  # an empty batch would upset gradient accumulation's grouping
                raise DataError(f"all {flat.size} {self.files.noun}s of a batch are unreadable, so none is left to skip to "
                                f"(first: {self.files.reason_of(self._image_path(int(flat[0])))})")
            index = paddle.to_tensor(keep)
            yield paddle.index_select(images, index), paddle.index_select(labels, index)

    def _failure(self, index: int) -> str:
        try:  # again, here in the main process, for the message the loader could not send
            self.samples.dataset[index]
        except DataError as e:
            return str(e)
        except Exception as e:  # noqa: BLE001
            return f"sample {index} could not be loaded ({short_reason(e)})"
        return f"sample {index} could not be loaded, then could (is its file being written?)"

    def _image_path(self, label: int) -> str:
        return self.files.path_of_bad(label)

    def _handle(self, label: int) -> None:
        if label <= FAILED or self.files is None:
            raise DataError(self._failure(FAILED - label))
        path = self._image_path(label)
        if self.on_bad_image == "error":
            raise DataError(f"{self.files.reason_of(path)} (or set data.on_bad_image: skip to leave such files out)")
        if path not in self.skipped:
            self.skipped.append(path)
            self.log(f"data.on_bad_image skip: leaving out {self.files.reason_of(path)} "
                     f"[{len(self.skipped)} unreadable {self.files.noun}(s) so far]")


def uses_shared_memory(data_cfg) -> bool:
    """data.shared_memory, with auto decided by the device in use (docs/data_loader.md): on a GPU,
    shared memory (a pipe pickles every batch, 77 MB at 224 px and batch 128, and the main process
    copies it again: too slow to feed thousands of images/s); on the CPU, a pipe (Paddle 3.3's
    shared-memory path failed intermittently here, "Tensor's dimension is out of bound", then a hang
    or a segfault: docs/reliability.md)."""
    choice = getattr(data_cfg, "shared_memory", "auto")
    if choice == "auto":
        return paddle.device.get_device().startswith("gpu")
    return bool(choice)


def guarded_loader(dataset, data_cfg, batch_size: int, shuffle: bool, log=print) -> SampleGuard:
    """A DataLoader over `dataset` by the rules above: shuffled, through a PlannedBatchSampler."""
    samples = GuardedSamples(dataset, getattr(_image_files_of(dataset), "shape", None) or sample_shape(data_cfg))
    sampler = PlannedBatchSampler(samples, batch_size=batch_size, shuffle=True, drop_last=False) if shuffle else None
    kwargs = {"batch_sampler": sampler} if sampler is not None else {"batch_size": batch_size, "shuffle": False}
    loader = DataLoader(samples, num_workers=data_cfg.num_workers, use_shared_memory=uses_shared_memory(data_cfg),
                        worker_init_fn=worker_init_fn(), **kwargs)
    return SampleGuard(loader, samples, data_cfg.on_bad_image, log)
