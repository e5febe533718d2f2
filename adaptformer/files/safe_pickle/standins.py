"""The allow-listed NumPy and torch globals, each resolved to a harmless local stand-in."""
import collections
import types
from typing import NamedTuple

import numpy as np

from adaptformer.errors import CheckpointReadError, UnsafePickleError
from adaptformer.files.safe_pickle.describe import describe

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray

# Tensor element types, by the names torch gives its dtypes.
_DTYPES = {"float32", "float64", "float16", "bfloat16", "complex64", "complex128", "bool",
           "int8", "uint8", "int16", "int32", "int64", "uint16", "uint32", "uint64"}
_STORAGES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "ComplexFloatStorage": "complex64",
             "ComplexDoubleStorage": "complex128", "BoolStorage": "bool", "CharStorage": "int8",
             "ByteStorage": "uint8", "ShortStorage": "int16", "IntStorage": "int32", "LongStorage": "int64"}
_ARRAY_KINDS = "biufc"  # bool, integers, floats, complex: no objects, strings, records or subarrays


# --- numpy -----------------------------------------------------------------------------------

class _Global(NamedTuple):
    """An allowed global that is not called directly: a class the stand-ins recognise."""
    name: str


class _Bound(NamedTuple):
    """An allowed global that needs the reader (its byte budget, archive): the unpickler's method."""
    method: str


_NDARRAY = _Global("numpy.ndarray")


def _checked_dtype(value, what="dtype") -> np.dtype:
    if not isinstance(value, np.dtype) or value.kind not in _ARRAY_KINDS or value.fields or value.subdtype:
        raise UnsafePickleError(f"refuses {what} {describe(value)} (only numeric numpy dtypes are allowed)")
    return value


def _dtype(spec, align=False, copy=True):
    """numpy.dtype, for numeric types only; always a private copy, since pickles then set its state."""
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if not isinstance(spec, str) or len(spec) > 16:
        raise UnsafePickleError(f"refuses numpy dtype {describe(spec)} (only numeric dtypes are allowed)")
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise UnsafePickleError(f"refuses numpy dtype {describe(spec)} (only numeric dtypes are allowed)") from None
    return _checked_dtype(np.dtype(dtype, copy=True), f"numpy dtype {describe(spec)}:")


def _reconstruct(subtype, shape, dtype):
    """numpy's first step of unpickling an array; the real shape and data come with BUILD."""
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"refuses to build {describe(subtype)} as an array (only numpy.ndarray is allowed)")
    return np.empty((0,), np.uint8)


def _latin1_encode(text, encoding="latin1"):
    # Protocol 2 spells bytes as _codecs.encode(str, 'latin1'); other codecs stay out.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refuses _codecs.encode with encoding {describe(encoding)} (only latin1 is allowed)")
    return text.encode("latin1")


def _scalar(dtype, data):
    _checked_dtype(dtype)
    if not isinstance(data, (bytes, str)) or len(data) != dtype.itemsize:
        raise CheckpointReadError(f"numpy scalar of {dtype} holds {describe(data)}, expected {dtype.itemsize} bytes")
    return _multiarray.scalar(dtype, data)


def _ordered_dict(*args):
    if args:
        raise UnsafePickleError("refuses collections.OrderedDict with arguments (items come with SETITEMS)")
    return collections.OrderedDict()


_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_encode,
    # Protocol 2 spells empty bytes (an empty array's data) as bytes(); py2 names it __builtin__.
    ("builtins", "bytes"): _Bound("_bytes"),
    ("__builtin__", "bytes"): _Bound("_bytes"),
    ("collections", "OrderedDict"): _ordered_dict,
}
for _core in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x spellings
    _NUMPY_GLOBALS[_core + ".multiarray", "_reconstruct"] = _reconstruct
    _NUMPY_GLOBALS[_core + ".multiarray", "scalar"] = _scalar
    _NUMPY_GLOBALS[_core + ".numeric", "_frombuffer"] = _Bound("_frombuffer")

# paddle.save writes a tensor inside a nested structure as builtins.tuple(((name, ndarray),)).
_PADDLE_GLOBALS = {**_NUMPY_GLOBALS, ("builtins", "tuple"): _Bound("_paddle_tensor")}


# --- torch -----------------------------------------------------------------------------------

class _Storage(NamedTuple):
    data: bytearray
    dtype: str  # "uint8" for torch 2.x untyped (byte) storages


def _itemsize(dtype):
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


_TORCH_GLOBALS = {
    **_NUMPY_GLOBALS,
    ("torch._utils", "_rebuild_tensor_v2"): _Bound("_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"): _Bound("_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"): _Bound("_rebuild_parameter"),
    ("torch.storage", "UntypedStorage"): "uint8",
    # Training checkpoints (MAE, DeiT) keep their argparse arguments; same attributes, no argparse.
    ("argparse", "Namespace"): types.SimpleNamespace,
    **{("torch", name): dtype for name, dtype in _STORAGES.items()},
    **{("torch", dtype): dtype for dtype in _DTYPES},  # torch.float32 etc. load as their names
}
