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
This package does not import Paddle.

Modules: describe (values from a file in messages), budget (the byte budget, read_exactly), standins (the allow-listed
NumPy / torch globals), unpickler (the opcode-level restricted unpickler), structure (limits on
the loaded object), zipped (zip members, torch.save archives, .npy members), readers (the above).
"""
from adaptformer.errors import CheckpointError, CheckpointReadError, UnsafePickleError
from adaptformer.files.safe_pickle.budget import ALLOWANCE, GROWTH, MAX_DIMS, ByteBudget, read_exactly
from adaptformer.files.safe_pickle.readers import naming, read_data_pickle, read_npz, read_numpy_pickle, read_torch_zip
from adaptformer.files.safe_pickle.structure import MAX_NESTING, check_structure
from adaptformer.files.safe_pickle.unpickler import MAX_MARK_DEPTH

__all__ = ["ALLOWANCE", "GROWTH", "MAX_DIMS", "MAX_MARK_DEPTH", "MAX_NESTING", "ByteBudget", "CheckpointError",
           "CheckpointReadError", "UnsafePickleError", "check_structure", "naming", "read_data_pickle", "read_exactly",
           "read_npz", "read_numpy_pickle", "read_torch_zip"]
