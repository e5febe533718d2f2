"""The public readers, one per kind of file; every error names the file, on one line."""
import contextlib
import io
import os
import pickle
import zipfile
import zlib
from typing import Callable, Optional

from adaptformer.errors import InputFileError
from adaptformer.files.opener import check_regular, open_regular
from adaptformer.files.safe_pickle.budget import ByteBudget
from adaptformer.errors import CheckpointReadError, UnsafePickleError
from adaptformer.files.safe_pickle.describe import describe
from adaptformer.files.safe_pickle.structure import _unpickle
from adaptformer.files.safe_pickle.unpickler import _DATA_POLICY, _NUMPY_POLICY, _RestrictedUnpickler
from adaptformer.files.safe_pickle.zipped import _npy, _read_archive, _read_member

# torch < 1.6 files start with a pickled magic number instead of the zip signature.
_LEGACY_TORCH_HEAD = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]
_PADDLE_NAME_TABLE = "StructuredToParameterName@@"
_PADDLE_SPLIT_TABLE = "UnpackBigParamInfor@@"


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
            raise CheckpointReadError(f"holds {describe(obj)}, expected {expected}")
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
