"""The byte budget: what one file may make the reader allocate, and the sizes it may declare."""
import operator

import numpy as np

from adaptformer.errors import CheckpointReadError
from adaptformer.files.safe_pickle.describe import describe

GROWTH = 4  # bytes a file may materialise per byte it holds (bfloat16 widens 2x, tied views share storage)
ALLOWANCE = 1 << 20
MAX_DIMS = 32
_CHUNK = 1 << 20


def _is_index(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _indices(values, what):
    if not isinstance(values, (tuple, list)) or len(values) > MAX_DIMS or not all(map(_is_index, values)):
        raise CheckpointReadError(f"invalid {what} ({describe(values)}, expected at most {MAX_DIMS} integers)")
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
