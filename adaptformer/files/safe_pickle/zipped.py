"""Zip archives: members read within the budget, torch.save's storages, and .npz arrays."""
import io
import math
import zipfile
import zlib

import numpy as np
from numpy.lib.stride_tricks import as_strided

from adaptformer.files.safe_pickle.budget import ByteBudget, _indices, _is_index, read_exactly
from adaptformer.errors import CheckpointReadError
from adaptformer.files.safe_pickle.describe import describe
from adaptformer.files.safe_pickle.standins import _DTYPES, _checked_dtype, _itemsize, _Storage
from adaptformer.files.safe_pickle.structure import _unpickle
from adaptformer.files.safe_pickle.unpickler import _TORCH_POLICY, _RestrictedUnpickler


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: ByteBudget, what="zip member") -> bytearray:
    """A zip member, its declared size checked against the budget before anything is decompressed."""
    what = f"{what} {info.filename!r}"
    budget.spend(info.file_size, what)
    try:
        with archive.open(info) as member:
            return read_exactly(member, info.file_size, what)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise CheckpointReadError(f"damaged {what} ({e})") from None


class _TorchUnpickler(_RestrictedUnpickler):
    def __init__(self, file, size, budget, archive, prefix):
        super().__init__(file, size, budget, _TORCH_POLICY)
        self._archive = archive
        self._prefix = prefix
        self._storages = {}  # by key: tensors that share a storage read its record once

    def persistent_load(self, pid):
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointReadError(f"unexpected persistent id {describe(pid)} (expected a ('storage', ...) record)")
        _, dtype, key, _location, numel = pid
        if type(dtype) is not str or dtype not in _DTYPES:
            raise CheckpointReadError(f"unsupported storage type {describe(dtype)}")
        if type(key) is not str or not _is_index(numel) or numel < 0:
            raise CheckpointReadError(f"invalid storage record (key {describe(key)}, {describe(numel)} elements)")
        if key not in self._storages:
            name = f"{self._prefix}/data/{key}"
            try:
                info = self._archive.getinfo(name)
            except KeyError:
                raise CheckpointReadError(f"missing storage record {name!r}") from None
            nbytes = numel * _itemsize(dtype)
            if info.file_size != nbytes:
                raise CheckpointReadError(
                    f"storage record {name!r} holds {info.file_size} bytes, expected {numel} x {dtype}")
            data = _read_member(self._archive, info, self._budget, "storage record")
            self._storages[key] = _Storage(data, dtype)
        return self._storages[key]

    def _decode(self, storage, dtype):
        """A storage's bytes as a flat array; bfloat16 widens exactly to float32."""
        if type(dtype) is not str or dtype not in _DTYPES:
            raise CheckpointReadError(f"unsupported tensor dtype {describe(dtype)}")
        if not isinstance(storage, _Storage):
            raise CheckpointReadError(f"a tensor's storage is {describe(storage)}, expected a storage record")
        if dtype == "bfloat16":
            self._budget.spend(2 * len(storage.data), "a bfloat16 storage widened to float32")
            # bfloat16 is the upper half of a float32's bits.
            return (np.frombuffer(storage.data, "<u2").astype(np.uint32) << 16).view(np.float32)
        return np.frombuffer(storage.data, np.dtype(dtype).newbyteorder("<"))

    def _strided_copy(self, flat, offset, size, stride):
        size = _indices(size, "tensor size")
        stride = _indices(stride, "tensor stride")
        if len(size) != len(stride) or not _is_index(offset) or offset < 0 or min(size + stride, default=0) < 0:
            raise CheckpointReadError(
                f"invalid tensor layout (offset {describe(offset)}, size {list(size)}, stride {list(stride)})")
        if 0 in size:
            return np.zeros(size, flat.dtype)
        # as_strided does no bounds checking: the last element must lie inside the storage.
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= flat.size:
            raise CheckpointReadError(
                f"tensor layout (offset {offset}, size {list(size)}, stride {list(stride)}) overruns its "
                f"{flat.size}-element storage")
        # Zero or overlapping strides make more elements than the storage holds: that is what the budget counts.
        self._budget.spend(math.prod(size) * flat.itemsize, f"a tensor view of size {list(size)}")
        view = as_strided(flat[offset:], size, tuple(s * flat.itemsize for s in stride))
        return view.copy()

    def _rebuild_tensor_v2(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        dtype = storage.dtype if isinstance(storage, _Storage) else None
        return self._strided_copy(self._decode(storage, dtype), offset, size, stride)

    def _rebuild_tensor_v3(self, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
        """torch 2.x: a byte storage plus the dtype (used for dtypes without a typed storage, e.g. uint16)."""
        return self._strided_copy(self._decode(storage, dtype), offset, size, stride)

    def _rebuild_parameter(self, data, requires_grad=True, hooks=None):
        return data


def _read_archive(archive, budget):
    names = archive.namelist()
    # Records live under one top folder, named after the file by torch.save ("archive" for buffers).
    second_level = {n.split("/")[1] for n in names if "/" in n}
    if "constants.pkl" in second_level or "code" in second_level:
        raise CheckpointReadError(
            "a TorchScript archive (torch.jit.save), not a state dict; "
            "save model.state_dict() with torch.save instead")
    pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise CheckpointReadError(
            f"expected one '<folder>/data.pkl' record in the zip (a torch.save checkpoint), found {len(pickles)}")
    prefix = pickles[0][: -len("/data.pkl")]
    if f"{prefix}/byteorder" in names:
        info = archive.getinfo(f"{prefix}/byteorder")
        if info.file_size > 16 or _read_member(archive, info, budget) != b"little":
            raise CheckpointReadError("big-endian checkpoint; only little-endian torch.save files are supported")
    data = _read_member(archive, archive.getinfo(pickles[0]), budget)
    return _unpickle(_TorchUnpickler(io.BytesIO(data), len(data), budget, archive, prefix), budget.file_size)


def _npy(data: bytearray, name: str) -> np.ndarray:
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = header(stream)
    except (ValueError, SyntaxError) as e:
        raise CheckpointReadError(f"member {name!r} is not a .npy array ({e})") from None
    _checked_dtype(dtype, f"member {name!r} dtype")
    shape = _indices(shape, f"member {name!r} shape")
    offset = stream.tell()
    if len(data) - offset != math.prod(shape) * dtype.itemsize:
        raise CheckpointReadError(
            f"member {name!r} declares shape {list(shape)} of {dtype} but holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype, offset=offset).reshape(shape, order="F" if fortran else "C")
