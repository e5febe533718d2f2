"""The opcode-level restricted unpickler: each opcode that calls, allocates or hashes is checked first."""
import collections
import math
import pickle
import struct
import types
from typing import Callable, NamedTuple, Optional

import numpy as np

from adaptformer.files.safe_pickle.budget import ByteBudget, _BoundedFile, _indices, _is_index
from adaptformer.errors import CheckpointReadError, UnsafePickleError
from adaptformer.files.safe_pickle.describe import describe
from adaptformer.files.safe_pickle.standins import _NUMPY_GLOBALS, _PADDLE_GLOBALS, _TORCH_GLOBALS, _Bound, _checked_dtype, _Global

MAX_MARK_DEPTH = 64  # nested MARKs: tuples/lists/dicts under construction at once


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
            raise UnsafePickleError(f"refuses to call {describe(func)} (only allow-listed globals are called)")

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
                f"refuses to construct {describe(cls)} (only argparse.Namespace without arguments)")
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
            raise UnsafePickleError(f"refuses to set items on {describe(target)} (only on dicts)")
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
            raise UnsafePickleError(f"refuses to append to {describe(target)} (only to lists)")

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
            raise UnsafePickleError(f"refuses to set the state of {describe(inst)}")
        self.stack.pop()
    dispatch[pickle.BUILD[0]] = load_build

    def _build_array(self, array, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CheckpointReadError(
                f"array state is {describe(state)}, expected numpy's (shape, dtype, order, data)")
        shape, dtype, fortran, data = state[-4:]
        shape = _indices(shape, "array shape")
        _checked_dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if not isinstance(data, (bytes, bytearray, str)) or len(data) != nbytes or min(shape, default=0) < 0:
            raise CheckpointReadError(
                f"array of shape {list(shape)} and dtype {dtype} holds {describe(data)}, expected {nbytes} bytes")
        self._budget.spend(nbytes, f"an array of shape {list(shape)}")
        array.__setstate__(state)

    def _build_dtype(self, dtype, state):
        if not isinstance(state, tuple) or len(state) != 8 or any(x is not None for x in state[2:5]):
            raise UnsafePickleError(f"refuses dtype state {describe(state)} (only numeric dtypes are allowed)")
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
            raise CheckpointReadError(f"array of shape {list(shape)} and dtype {dtype} holds {describe(buffer)}")
        if order not in ("C", "F"):
            raise CheckpointReadError(f"invalid array order {describe(order)}")
        array = np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)
        if array.flags.writeable:
            return array
        self._budget.spend(array.nbytes, f"an array of shape {list(shape)}")
        return array.copy(order="K")

    def _paddle_tensor(self, pair):
        if not (type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str and isinstance(pair[1], np.ndarray)):
            raise UnsafePickleError(f"refuses builtins.tuple of {describe(pair)} (paddle.save writes (name, array))")
        return self._make_tensor(*pair) if self._make_tensor else pair[1]
