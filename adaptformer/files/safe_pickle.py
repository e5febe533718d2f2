"""Read pickles and zips from untrusted files without running code and within a byte budget.

Every file the package takes from a user is read here: pretrained checkpoints (.pth zip,
.pdparams, .npz), the run's own checkpoints (best.pdparams, last.pdckpt) and CIFAR batches.

- Code: `pickle.load` calls whatever the file names. This unpickler resolves only an
  allow-list of globals, each to a harmless local stand-in, and refuses any other.
- Memory: every size the file declares (a pickle record, a zip member, an array's shape,
  a storage, bytes(N), a strided view) is checked before anything is allocated: each
  must lie inside the file, and all that is materialised together must fit a budget of
  `GROWTH` times the file's size plus `ALLOWANCE`.
- Time: dict keys must be plain str / int / bytes (hashing nested tuples that share
  children is exponential), sets are refused, and the loaded object may nest at most
  `MAX_NESTING` deep and count at most `element_limit` elements when expanded as a tree.

    read_torch_zip(path)           a PyTorch >= 1.6 zip checkpoint (torch.save) -> numpy arrays
    read_numpy_pickle(path)        a Paddle .pdparams / .pdckpt (paddle.save) -> numpy arrays
    read_npz(path)                 a NumPy .npz (no pickled members)
    read_data_pickle(data, what)   one pickled record held in memory (a CIFAR batch)

All errors are `UnsafePickleError` or `CheckpointReadError`: one line, starting with the file.
This module does not import Paddle.
"""
import collections
import contextlib
import io
import math
import operator
import os
import pickle
import struct
import types
import zipfile
import zlib
from typing import Callable, NamedTuple, Optional

import numpy as np
from numpy.lib.stride_tricks import as_strided

from adaptformer.errors import CheckpointError, InputFileError
from adaptformer.files.opener import check_regular, open_regular

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray


class UnsafePickleError(CheckpointError):
    """The file names a global outside the allow-list; nothing from it was executed."""


class CheckpointReadError(CheckpointError):
    """The file is missing, damaged, too large for what it declares, or not the kind expected."""


GROWTH = 4  # bytes a file may materialise per byte it holds (bfloat16 widens 2x, tied views share storage)
ALLOWANCE = 1 << 20
MAX_MARK_DEPTH = 64  # nested MARKs: tuples/lists/dicts under construction at once
MAX_NESTING = 64  # containers inside containers in the loaded object
MAX_DIMS = 32
_CHUNK = 1 << 20

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
_ARRAY_KINDS = "biufc"  # bool, integers, floats, complex: no objects, strings, records or subarrays


def _describe(obj) -> str:
    """A short, safe description of a value from the file (never its repr: that can take exponential time)."""
    if isinstance(obj, (str, bytes)):
        return repr(obj[:40]) + ("..." if len(obj) > 40 else "")
    if isinstance(obj, (bool, int, float, type(None))):
        return repr(obj) if not isinstance(obj, int) or obj.bit_length() < 64 else "a huge int"
    return f"a {type(obj).__name__}"


def _is_index(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _indices(values, what):
    if not isinstance(values, (tuple, list)) or len(values) > MAX_DIMS or not all(map(_is_index, values)):
        raise CheckpointReadError(f"invalid {what} ({_describe(values)}, expected at most {MAX_DIMS} integers)")
    return tuple(map(operator.index, values))


# --- the byte budget -------------------------------------------------------------------------

class ByteBudget:
    """What one file may make the reader allocate: GROWTH x its size + ALLOWANCE, in total."""

    def __init__(self, file_size: int):
        self.file_size = file_size
        self.limit = GROWTH * file_size + ALLOWANCE
        self.spent = 0

    def spend(self, nbytes: int, what: str) -> None:
        if nbytes > self.limit - self.spent:
            raise CheckpointReadError(
                f"{what} declares {nbytes} bytes, more than a {self.file_size}-byte file can hold "
                f"(limit {GROWTH} x file size + {ALLOWANCE // 1024} KiB)")
        self.spent += nbytes


class _BoundedFile:
    """A file that refuses reads longer than what is left of it (the unpickler reads declared lengths)."""

    def __init__(self, file, size: int):
        self._file = file
        self._left = size

    def _take(self, n: int) -> None:
        if n > self._left:
            raise CheckpointReadError(
                f"truncated or damaged pickle: a record declares {n} bytes, but only {self._left} remain")

    def read(self, n: int) -> bytes:
        self._take(n)
        data = self._file.read(n)
        self._left -= len(data)
        return data

    def readinto(self, buffer) -> int:
        self._take(len(buffer))
        n = self._file.readinto(buffer)
        self._left -= n
        return n

    def readline(self) -> bytes:
        line = self._file.readline()
        self._left -= len(line)
        return line


def read_exactly(stream, size: int, what: str) -> bytearray:
    """`size` bytes from a (decompressing) stream, in bounded chunks; fewer is an error."""
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(min(_CHUNK, size - len(data)))
        if not chunk:
            raise CheckpointReadError(f"{what} is truncated ({len(data)} of {size} bytes)")
        data += chunk
    return data


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
        raise UnsafePickleError(f"refuses {what} {_describe(value)} (only numeric numpy dtypes are allowed)")
    return value


def _dtype(spec, align=False, copy=True):
    """numpy.dtype, for numeric types only; always a private copy, since pickles then set its state."""
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if not isinstance(spec, str) or len(spec) > 16:
        raise UnsafePickleError(f"refuses numpy dtype {_describe(spec)} (only numeric dtypes are allowed)")
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise UnsafePickleError(f"refuses numpy dtype {_describe(spec)} (only numeric dtypes are allowed)") from None
    return _checked_dtype(np.dtype(dtype, copy=True), f"numpy dtype {_describe(spec)}:")


def _reconstruct(subtype, shape, dtype):
    """numpy's first step of unpickling an array; the real shape and data come with BUILD."""
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"refuses to build {_describe(subtype)} as an array (only numpy.ndarray is allowed)")
    return np.empty((0,), np.uint8)


def _latin1_encode(text, encoding="latin1"):
    # Protocol 2 spells bytes as _codecs.encode(str, 'latin1'); other codecs stay out.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refuses _codecs.encode with encoding {_describe(encoding)} (only latin1 is allowed)")
    return text.encode("latin1")


def _scalar(dtype, data):
    _checked_dtype(dtype)
    if not isinstance(data, (bytes, str)) or len(data) != dtype.itemsize:
        raise CheckpointReadError(f"numpy scalar of {dtype} holds {_describe(data)}, expected {dtype.itemsize} bytes")
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


# --- the unpickler ---------------------------------------------------------------------------

class _Policy(NamedTuple):
    allowed: dict  # (module, name) -> stand-in
    kinds: str  # what the allow-list admits, for messages
    key_types: tuple  # types dict keys may have
    encoding: str  # for Python 2 str records


_NUMPY_POLICY = _Policy(_PADDLE_GLOBALS, "numpy arrays, containers and numbers", (str, int), "latin1")
_TORCH_POLICY = _Policy(_TORCH_GLOBALS, "tensors, containers and numbers", (str, int), "ASCII")
# CIFAR batches were pickled by Python 2: their keys are bytes (b'data', b'labels').
_DATA_POLICY = _Policy(_NUMPY_GLOBALS, "numpy arrays, containers and numbers", (bytes, str), "bytes")

_op = pickle._Unpickler.dispatch  # the pure-Python unpickler: each opcode can be checked before it runs


class _RestrictedUnpickler(pickle._Unpickler):
    dispatch = dict(_op)

    def __init__(self, file, size: int, budget: ByteBudget, policy: _Policy, make_tensor: Optional[Callable] = None):
        super().__init__(_BoundedFile(file, size), encoding=policy.encoding)
        self._budget = budget
        self._policy = policy
        self._make_tensor = make_tensor
        self._resolved = {}  # (module, name) -> stand-in; REDUCE calls only these

    def find_class(self, module, name):
        if (module, name) not in self._resolved:
            try:
                value = self._policy.allowed[module, name]
            except KeyError:
                raise UnsafePickleError(
                    f"refuses to load global {module + '.' + name!r} (only {self._policy.kinds} are allowed)"
                ) from None
            self._resolved[module, name] = getattr(self, value.method) if isinstance(value, _Bound) else value
        return self._resolved[module, name]

    def _callable(self, func) -> None:
        if isinstance(func, _Global):
            raise UnsafePickleError(
                f"refuses to call {func.name} directly (arrays are rebuilt only as numpy pickles them)")
        if not callable(func) or not any(func is f for f in self._resolved.values()):
            raise UnsafePickleError(f"refuses to call {_describe(func)} (only allow-listed globals are called)")

    # -- opcodes that call, allocate or hash -------------------------------------------------

    def load_reduce(self):
        self._callable(self.stack[-2])
        _op[pickle.REDUCE[0]](self)
    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self):
        # Protocol 2 pickles argparse.Namespace as NEWOBJ(cls, ()) + BUILD(__dict__).
        cls, args = self.stack[-2:]
        if cls is not types.SimpleNamespace or args != ():
            raise UnsafePickleError(
                f"refuses to construct {_describe(cls)} (only argparse.Namespace without arguments)")
        _op[pickle.NEWOBJ[0]](self)
    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def _refuse(self):
        raise UnsafePickleError("refuses INST / OBJ / NEWOBJ_EX records (no supported format uses them)")
    for _code in (pickle.INST, pickle.OBJ, pickle.NEWOBJ_EX):
        dispatch[_code[0]] = _refuse

    def _refuse_sets(self):
        raise UnsafePickleError("refuses sets and frozensets (no supported format uses them)")
    for _code in (pickle.EMPTY_SET, pickle.ADDITEMS, pickle.FROZENSET):
        dispatch[_code[0]] = _refuse_sets
    del _code

    def load_mark(self):
        if len(self.metastack) >= MAX_MARK_DEPTH:
            raise CheckpointReadError(f"nests more than {MAX_MARK_DEPTH} records under construction")
        _op[pickle.MARK[0]](self)
    dispatch[pickle.MARK[0]] = load_mark

    def load_bytearray8(self):
        # The pure-Python unpickler allocates the bytearray before reading it: check its length first.
        (size,) = struct.unpack("<Q", self.read(8))
        self._budget.spend(size, "a BYTEARRAY8 record")
        buffer = bytearray(size)
        self.readinto(buffer)
        self.append(buffer)
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

    def _check_keys(self, keys) -> None:
        for key in keys:
            if type(key) not in self._policy.key_types:
                allowed = " / ".join(t.__name__ for t in self._policy.key_types)
                raise UnsafePickleError(
                    f"refuses a dict key of type {type(key).__name__} (only {allowed} keys are allowed)")

    def _target_dict(self, target) -> dict:
        if not isinstance(target, dict):
            raise UnsafePickleError(f"refuses to set items on {_describe(target)} (only on dicts)")
        return target

    def load_setitem(self):
        self._check_keys(self.stack[-2:-1])
        self._target_dict(self.stack[-3])
        _op[pickle.SETITEM[0]](self)
    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self):
        self._check_keys(self.stack[::2])
        self._target_dict(self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None)
        _op[pickle.SETITEMS[0]](self)
    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_dict(self):
        self._check_keys(self.stack[::2])
        _op[pickle.DICT[0]](self)
    dispatch[pickle.DICT[0]] = load_dict

    def _target_list(self, target):
        if type(target) is not list:
            raise UnsafePickleError(f"refuses to append to {_describe(target)} (only to lists)")

    def load_append(self):
        self._target_list(self.stack[-2] if len(self.stack) > 1 else None)
        _op[pickle.APPEND[0]](self)
    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self):
        self._target_list(self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None)
        _op[pickle.APPENDS[0]](self)
    dispatch[pickle.APPENDS[0]] = load_appends

    def load_build(self):
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.ndarray):
            self._build_array(inst, state)
        elif isinstance(inst, np.dtype):
            self._build_dtype(inst, state)
        elif isinstance(inst, (types.SimpleNamespace, collections.OrderedDict)) and type(state) is dict:
            # The attributes of an argparse.Namespace; torch's state-dict OrderedDict keeps `_metadata`.
            if not all(type(k) is str for k in state):
                raise UnsafePickleError("refuses attribute names that are not str")
            vars(inst).update(state)
        else:
            raise UnsafePickleError(f"refuses to set the state of {_describe(inst)}")
        self.stack.pop()
    dispatch[pickle.BUILD[0]] = load_build

    def _build_array(self, array, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CheckpointReadError(
                f"array state is {_describe(state)}, expected numpy's (shape, dtype, order, data)")
        shape, dtype, fortran, data = state[-4:]
        shape = _indices(shape, "array shape")
        _checked_dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if not isinstance(data, (bytes, bytearray, str)) or len(data) != nbytes or min(shape, default=0) < 0:
            raise CheckpointReadError(
                f"array of shape {list(shape)} and dtype {dtype} holds {_describe(data)}, expected {nbytes} bytes")
        self._budget.spend(nbytes, f"an array of shape {list(shape)}")
        array.__setstate__(state)

    def _build_dtype(self, dtype, state):
        if not isinstance(state, tuple) or len(state) != 8 or any(x is not None for x in state[2:5]):
            raise UnsafePickleError(f"refuses dtype state {_describe(state)} (only numeric dtypes are allowed)")
        before = dtype.itemsize
        try:
            dtype.__setstate__(state)
        except (TypeError, ValueError) as e:
            raise CheckpointReadError(f"invalid dtype state ({e})") from None
        if dtype.itemsize != before:
            raise UnsafePickleError("refuses a dtype state that changes the item size")
        _checked_dtype(dtype)

    # -- stand-ins that need the budget ------------------------------------------------------

    def _bytes(self, *args):
        if len(args) == 1 and _is_index(args[0]):
            self._budget.spend(int(args[0]), f"builtins.bytes({int(args[0])})")
            return bytes(int(args[0]))
        if args:
            raise UnsafePickleError("refuses builtins.bytes with arguments other than a size")
        return b""

    def _frombuffer(self, buffer, dtype, shape, order):
        """How numpy pickles arrays with protocol 5."""
        _checked_dtype(dtype)
        shape = _indices(shape, "array shape")
        if not isinstance(buffer, (bytes, bytearray)) or len(buffer) != math.prod(shape) * dtype.itemsize:
            raise CheckpointReadError(f"array of shape {list(shape)} and dtype {dtype} holds {_describe(buffer)}")
        if order not in ("C", "F"):
            raise CheckpointReadError(f"invalid array order {_describe(order)}")
        array = np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)
        if array.flags.writeable:
            return array
        self._budget.spend(array.nbytes, f"an array of shape {list(shape)}")
        return array.copy(order="K")

    def _paddle_tensor(self, pair):
        if not (type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str and isinstance(pair[1], np.ndarray)):
            raise UnsafePickleError(f"refuses builtins.tuple of {_describe(pair)} (paddle.save writes (name, array))")
        return self._make_tensor(*pair) if self._make_tensor else pair[1]


class _TorchUnpickler(_RestrictedUnpickler):
    def __init__(self, file, size, budget, archive, prefix):
        super().__init__(file, size, budget, _TORCH_POLICY)
        self._archive = archive
        self._prefix = prefix
        self._storages = {}  # by key: tensors that share a storage read its record once

    def persistent_load(self, pid):
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointReadError(f"unexpected persistent id {_describe(pid)} (expected a ('storage', ...) record)")
        _, dtype, key, _location, numel = pid
        if type(dtype) is not str or dtype not in _DTYPES:
            raise CheckpointReadError(f"unsupported storage type {_describe(dtype)}")
        if type(key) is not str or not _is_index(numel) or numel < 0:
            raise CheckpointReadError(f"invalid storage record (key {_describe(key)}, {_describe(numel)} elements)")
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
            raise CheckpointReadError(f"unsupported tensor dtype {_describe(dtype)}")
        if not isinstance(storage, _Storage):
            raise CheckpointReadError(f"a tensor's storage is {_describe(storage)}, expected a storage record")
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
                f"invalid tensor layout (offset {_describe(offset)}, size {list(size)}, stride {list(stride)})")
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


# --- the loaded object -----------------------------------------------------------------------

def _children(obj):
    if isinstance(obj, (list, tuple)):
        return obj
    if isinstance(obj, dict):  # keys are plain str / int / bytes: leaves
        return [*obj.values(), *vars(obj).values()] if hasattr(obj, "__dict__") else obj.values()
    if isinstance(obj, types.SimpleNamespace):
        return vars(obj).values()
    return ()


def check_structure(obj, element_limit: int) -> None:
    """Refuse cycles, nesting deeper than MAX_NESTING, and shared children that expand beyond
    `element_limit` elements: whoever walks the result as a tree (repr, a recursive copy) stays cheap.
    Each container is visited once, so this check itself is linear in the file."""
    sizes, depths, on_path = {}, {}, set()
    todo = [(obj, False)]
    while todo:
        node, finished = todo.pop()
        children = _children(node)
        if not children and not isinstance(node, (list, tuple, dict, types.SimpleNamespace)):
            continue
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes.get(id(c), 1) for c in children)
            depths[key] = 1 + max((depths.get(id(c), 0) for c in children), default=0)
            if sizes[key] > element_limit:
                raise CheckpointReadError(f"holds more than {element_limit} elements once shared records are expanded")
            if depths[key] > MAX_NESTING:
                raise CheckpointReadError(f"nests containers more than {MAX_NESTING} deep")
        elif key in on_path:
            raise CheckpointReadError("holds a container that contains itself")
        elif key not in sizes:
            on_path.add(key)
            todo.append((node, True))
            todo.extend((c, False) for c in children)


def _element_limit(file_size: int) -> int:
    return file_size + 100_000


def _unpickle(unpickler, file_size):
    try:
        obj = unpickler.load()
    except CheckpointError:
        raise
    except KeyError as e:  # the dispatch table has no such opcode
        raise CheckpointReadError(f"corrupt pickle data (unknown opcode {e})") from None
    except Exception as e:  # a malformed pickle fails in many ways; all mean the same to the caller
        raise CheckpointReadError(f"corrupt pickle data ({type(e).__name__}: {e})") from e
    check_structure(obj, _element_limit(file_size))
    return obj


@contextlib.contextmanager
def naming(what):
    """Start every error message with the file (or record) and keep it on one line."""
    try:
        yield
    except (UnsafePickleError, CheckpointReadError) as e:
        message = " ".join(str(e).split())
        raise type(e)(f"{os.fspath(what)}: {message}") from e.__cause__
    except OSError as e:
        raise CheckpointReadError(f"{os.fspath(what)}: cannot read ({e.strerror or e})") from e
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise CheckpointReadError(f"{os.fspath(what)}: damaged zip archive ({e})") from None


def _check_file(path, expected):
    if os.path.isdir(path):
        raise CheckpointReadError(f"is a directory, expected {expected} file")
    try:
        check_regular(path, "weights")
    except InputFileError as e:
        raise CheckpointReadError(f"{e.reason}, expected {expected} file") from None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: ByteBudget, what="zip member") -> bytearray:
    """A zip member, its declared size checked against the budget before anything is decompressed."""
    what = f"{what} {info.filename!r}"
    budget.spend(info.file_size, what)
    try:
        with archive.open(info) as member:
            return read_exactly(member, info.file_size, what)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise CheckpointReadError(f"damaged {what} ({e})") from None


# --- public ----------------------------------------------------------------------------------

def read_torch_zip(path):
    """Load a `torch.save` zip checkpoint (PyTorch >= 1.6); tensors come back as numpy arrays.

    bfloat16 tensors become float32 (exactly); `nn.Parameter`s become plain arrays;
    `argparse.Namespace` becomes `types.SimpleNamespace`; torch dtypes become their names.
    """
    with naming(path):
        _check_file(path, "a PyTorch (torch.save) checkpoint")
        if not zipfile.is_zipfile(path):
            with open_regular(path, "weights") as f:
                head = f.read(len(_LEGACY_TORCH_HEAD))
            if head == _LEGACY_TORCH_HEAD:
                raise CheckpointReadError(
                    "legacy PyTorch (< 1.6) checkpoint; re-save it with torch >= 1.6 "
                    "(torch.save(torch.load(f), f)) or convert it")
            if head.startswith(b"PK"):
                raise CheckpointReadError("truncated or damaged zip archive, expected a torch.save checkpoint")
            raise CheckpointReadError("not a zip archive, expected a torch.save checkpoint (PyTorch >= 1.6)")
        with zipfile.ZipFile(path) as archive:
            return _read_archive(archive, ByteBudget(os.path.getsize(path)))


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


def read_numpy_pickle(path, make_tensor: Optional[Callable] = None):
    """Load what paddle.save wrote (a .pdparams, or a nested .pdckpt) as a dict of numpy arrays.

    paddle.save's name table entry is dropped, as paddle.load does. Inside nested
    structures paddle.save records tensors as (name, array): those become
    `make_tensor(name, array)`, or the array without it.
    """
    with naming(path):
        expected = "a Paddle .pdparams (pickled dict of numpy arrays)"
        _check_file(path, expected)
        if zipfile.is_zipfile(path):
            raise CheckpointReadError(f"is a zip archive (a PyTorch checkpoint? use read_torch_zip), expected {expected}")
        size = os.path.getsize(path)
        with open_regular(path, "weights") as f:
            obj = _unpickle(_RestrictedUnpickler(f, size, ByteBudget(size), _NUMPY_POLICY, make_tensor), size)
        if not isinstance(obj, dict):
            raise CheckpointReadError(f"holds {_describe(obj)}, expected {expected}")
        if _PADDLE_SPLIT_TABLE in obj:
            raise CheckpointReadError(
                "holds arrays paddle.save split into slices (protocol < 4, over 1 GB); re-save with protocol=4")
        obj.pop(_PADDLE_NAME_TABLE, None)
        return obj


def read_data_pickle(data, what: str):
    """One pickled record already in memory (a CIFAR batch: a dict with bytes keys)."""
    with naming(what):
        budget = ByteBudget(len(data))
        return _unpickle(_RestrictedUnpickler(io.BytesIO(data), len(data), budget, _DATA_POLICY), len(data))


def read_npz(path):
    """A NumPy .npz of plain arrays (np.savez), each member's declared shape checked before it is built."""
    with naming(path):
        _check_file(path, "a NumPy .npz")
        budget = ByteBudget(os.path.getsize(path))
        with zipfile.ZipFile(path) as archive:
            return {info.filename[: -len(".npy")]: _npy(_read_member(archive, info, budget), info.filename)
                    for info in archive.infolist() if info.filename.endswith(".npy")}


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
