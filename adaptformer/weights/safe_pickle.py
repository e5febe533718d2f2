"""Read pickled checkpoints without running code from them.

`pickle.load` calls whatever the file names, so a downloaded checkpoint can run anything.
These readers resolve only an explicit allow-list of globals, each to a harmless local
stand-in; any other global fails the load before it is called.

    read_torch_zip(path)     a PyTorch >= 1.6 zip checkpoint (torch.save) -> numpy arrays
    read_numpy_pickle(path)  a Paddle .pdparams (pickled dict of numpy arrays)
"""
import collections
import contextlib
import io
import operator
import os
import pickle
import types
import zipfile
import zlib
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray


class UnsafePickleError(ValueError):
    """The file names a global outside the allow-list; nothing from it was executed."""


class CheckpointReadError(ValueError):
    """The file is missing, damaged, or not the kind of checkpoint expected."""


# torch < 1.6 files start with a pickled magic number instead of the zip signature.
_LEGACY_TORCH_HEAD = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]
_PADDLE_NAME_TABLE = "StructuredToParameterName@@"
_PADDLE_SPLIT_TABLE = "UnpackBigParamInfor@@"

# Tensor element types, by the names torch gives its dtypes.
_DTYPES = {"float32", "float64", "float16", "bfloat16", "complex64", "complex128", "bool",
           "int8", "uint8", "int16", "int32", "int64", "uint16", "uint32", "uint64"}
_STORAGES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "ComplexFloatStorage": "complex64",
             "ComplexDoubleStorage": "complex128", "BoolStorage": "bool", "CharStorage": "int8",
             "ByteStorage": "uint8", "ShortStorage": "int16", "IntStorage": "int32", "LongStorage": "int64"}


# --- numpy -----------------------------------------------------------------------------------

def _reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"refuses to build a {subtype!r:.60} as an array (only numpy.ndarray is allowed)")
    return _multiarray._reconstruct(np.ndarray, shape, dtype)


def _frombuffer(buffer, dtype, shape, order):
    """How numpy pickles arrays with protocol 5."""
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)
    return array if array.flags.writeable else array.copy(order="K")


def _latin1_encode(text, encoding="latin1"):
    # Protocol 2 spells bytes as _codecs.encode(str, 'latin1'); other codecs stay out.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refuses _codecs.encode with encoding {encoding!r:.40} (only latin1 is allowed)")
    return text.encode("latin1")


_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    # Protocol 2 spells empty bytes (an empty array's data) as bytes(); py2 names it __builtin__.
    ("builtins", "bytes"): bytes,
    ("__builtin__", "bytes"): bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
}
for _core in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x spellings
    _NUMPY_GLOBALS[_core + ".multiarray", "_reconstruct"] = _reconstruct
    _NUMPY_GLOBALS[_core + ".multiarray", "scalar"] = _multiarray.scalar
    _NUMPY_GLOBALS[_core + ".numeric", "_frombuffer"] = _frombuffer


# --- torch -----------------------------------------------------------------------------------

class _Storage(NamedTuple):
    data: bytes
    dtype: str  # "uint8" for torch 2.x untyped (byte) storages


def _decode(data, dtype):
    """A storage's bytes as a flat array; bfloat16 widens exactly to float32."""
    if dtype not in _DTYPES:
        raise CheckpointReadError(f"unsupported tensor dtype {dtype!r:.40}")
    if dtype == "bfloat16":
        # bfloat16 is the upper half of a float32's bits.
        return (np.frombuffer(data, "<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(data, np.dtype(dtype).newbyteorder("<"))


def _itemsize(dtype):
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _strided_copy(flat, offset, size, stride):
    offset = operator.index(offset)
    size = tuple(map(operator.index, size))
    stride = tuple(map(operator.index, stride))
    if len(size) != len(stride) or offset < 0 or min(size + stride, default=0) < 0:
        raise CheckpointReadError(f"invalid tensor layout (offset {offset}, size {size}, stride {stride})")
    if 0 in size:
        return np.zeros(size, flat.dtype)
    # as_strided does no bounds checking: the last element must lie inside the storage.
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise CheckpointReadError(
            f"tensor layout (offset {offset}, size {size}, stride {stride}) overruns its "
            f"{flat.size}-element storage")
    view = as_strided(flat[offset:], size, tuple(s * flat.itemsize for s in stride))
    return view.copy()


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _strided_copy(_decode(storage.data, storage.dtype), offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
    """torch 2.x: a byte storage plus the dtype (used for dtypes without a typed storage, e.g. uint16)."""
    return _strided_copy(_decode(storage.data, dtype), offset, size, stride)


def _rebuild_parameter(data, requires_grad=True, hooks=None):
    return data


_TORCH_GLOBALS = {
    **_NUMPY_GLOBALS,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "UntypedStorage"): "uint8",
    # Training checkpoints (MAE, DeiT) keep their argparse arguments; same attributes, no argparse.
    ("argparse", "Namespace"): types.SimpleNamespace,
    **{("torch", name): dtype for name, dtype in _STORAGES.items()},
    **{("torch", dtype): dtype for dtype in _DTYPES},  # torch.float32 etc. load as their names
}


# --- unpicklers ------------------------------------------------------------------------------

class _RestrictedUnpickler(pickle.Unpickler):
    allowed = {}
    allowed_kinds = ""

    def find_class(self, module, name):
        try:
            return self.allowed[module, name]
        except KeyError:
            raise UnsafePickleError(
                f"refuses to load global {module + '.' + name!r} (only {self.allowed_kinds} are allowed)"
            ) from None


class _NumpyUnpickler(_RestrictedUnpickler):
    allowed = _NUMPY_GLOBALS
    allowed_kinds = "numpy arrays, containers and numbers"


class _TorchUnpickler(_RestrictedUnpickler):
    allowed = _TORCH_GLOBALS
    allowed_kinds = "tensors, containers and numbers"

    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._storages = {}  # by key: tensors that share a storage read its record once

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointReadError(f"unexpected persistent id {pid!r:.80} (expected a ('storage', ...) record)")
        _, dtype, key, _location, numel = pid
        if key not in self._storages:
            name = f"{self._prefix}/data/{key}"
            try:
                data = self._archive.read(name)
            except KeyError:
                raise CheckpointReadError(f"missing storage record {name!r}") from None
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                raise CheckpointReadError(f"damaged storage record {name!r} ({e})") from None
            if dtype not in _DTYPES:
                raise CheckpointReadError(f"unsupported storage type {dtype!r:.40}")
            if len(data) != numel * _itemsize(dtype):
                raise CheckpointReadError(
                    f"storage record {name!r} holds {len(data)} bytes, expected {numel} x {dtype}")
            self._storages[key] = _Storage(data, dtype)
        return self._storages[key]


def _unpickle(unpickler):
    try:
        return unpickler.load()
    except (UnsafePickleError, CheckpointReadError):
        raise
    except Exception as e:  # a malformed pickle fails in many ways; all mean the same to the caller
        raise CheckpointReadError(f"corrupt pickle data ({type(e).__name__}: {e})") from e


@contextlib.contextmanager
def _naming(path):
    """Start every error message with the file's path and keep it on one line."""
    try:
        yield
    except (UnsafePickleError, CheckpointReadError) as e:
        message = " ".join(str(e).split())
        raise type(e)(f"{os.fspath(path)}: {message}") from e.__cause__
    except OSError as e:
        raise CheckpointReadError(f"{os.fspath(path)}: cannot read ({e.strerror or e})") from e


def _check_file(path, expected):
    if os.path.isdir(path):
        raise CheckpointReadError(f"is a directory, expected {expected} file")
    if not os.path.isfile(path):
        raise CheckpointReadError(f"no such file, expected {expected} file")


# --- public ----------------------------------------------------------------------------------

def read_torch_zip(path):
    """Load a `torch.save` zip checkpoint (PyTorch >= 1.6); tensors come back as numpy arrays.

    bfloat16 tensors become float32 (exactly); `nn.Parameter`s become plain arrays;
    `argparse.Namespace` becomes `types.SimpleNamespace`; torch dtypes become their names.
    """
    with _naming(path):
        _check_file(path, "a PyTorch (torch.save) checkpoint")
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as f:
                head = f.read(len(_LEGACY_TORCH_HEAD))
            if head == _LEGACY_TORCH_HEAD:
                raise CheckpointReadError(
                    "legacy PyTorch (< 1.6) checkpoint; re-save it with torch >= 1.6 "
                    "(torch.save(torch.load(f), f)) or convert it")
            if head.startswith(b"PK"):
                raise CheckpointReadError("truncated or damaged zip archive, expected a torch.save checkpoint")
            raise CheckpointReadError("not a zip archive, expected a torch.save checkpoint (PyTorch >= 1.6)")
        try:
            with zipfile.ZipFile(path) as archive:
                return _read_archive(archive)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise CheckpointReadError(f"damaged zip archive ({e})") from None


def _read_archive(archive):
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
    if f"{prefix}/byteorder" in names and archive.read(f"{prefix}/byteorder") != b"little":
        raise CheckpointReadError("big-endian checkpoint; only little-endian torch.save files are supported")
    return _unpickle(_TorchUnpickler(io.BytesIO(archive.read(pickles[0])), archive, prefix))


def read_numpy_pickle(path):
    """Load a Paddle `.pdparams` (a pickled dict of numpy arrays) as {name: numpy array}.

    paddle.save's name table entry is dropped, as paddle.load does.
    """
    with _naming(path):
        expected = "a Paddle .pdparams (pickled dict of numpy arrays)"
        _check_file(path, expected)
        if zipfile.is_zipfile(path):
            raise CheckpointReadError(f"is a zip archive (a PyTorch checkpoint? use read_torch_zip), expected {expected}")
        with open(path, "rb") as f:
            # latin1 as paddle.load: Python 2 pickles hold array bytes in str.
            obj = _unpickle(_NumpyUnpickler(f, encoding="latin1"))
        if not isinstance(obj, dict):
            raise CheckpointReadError(f"holds a {type(obj).__name__}, expected {expected}")
        if _PADDLE_SPLIT_TABLE in obj:
            raise CheckpointReadError(
                "holds arrays paddle.save split into slices (protocol < 4, over 1 GB); re-save with protocol=4")
        obj.pop(_PADDLE_NAME_TABLE, None)
        return obj
