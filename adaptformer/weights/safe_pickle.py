"""The restricted readers live in `adaptformer.safe_pickle` (shared with run checkpoints and CIFAR data)."""
from ..safe_pickle import CheckpointReadError, UnsafePickleError, read_numpy_pickle, read_torch_zip  # noqa: F401
