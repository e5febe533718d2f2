"""Small hostile files, written by the tests that need them (nothing is committed).

Each one attacked a reader before adaptformer/files/safe_pickle.py: it ran code, or made a
few hundred bytes allocate gigabytes, or made hashing take exponential time.
`READER_CASES` pairs each with the reader it targets and the refusal expected.
"""
from __future__ import annotations

import io
import os
import pickle
import shlex
import struct
import zipfile
import zlib
from typing import Callable, Dict, Tuple

import numpy as np


class Payload:
    """Pickles as func(arg): pickle.load calls it."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def system_pickle(marker) -> bytes:
    """os.system('touch MARKER')."""
    return pickle.dumps(Payload(os.system, f"touch {shlex.quote(str(marker))}"), protocol=4)


def torch_data_pkl(offset=0, size=(2, 2), stride=(2, 1), key="0", numel=4, storage="FloatStorage") -> bytes:
    """data.pkl of {'w': tensor}, opcode by opcode, shaped like torch.save's."""
    def tup(values):
        return b"(" + b"".join(b"I%d\n" % v for v in values) + b"t"

    return (b"\x80\x02}(Vw\nctorch._utils\n_rebuild_tensor_v2\n("
            + b"(Vstorage\nctorch\n" + storage.encode() + b"\nV" + key.encode() + b"\nVcpu\nI%d\ntQ" % numel
            + b"I%d\n" % offset + tup(size) + tup(stride)
            + b"I00\nccollections\nOrderedDict\n)RtRu.")


def write_zip(path, records: Dict[str, bytes], compression=zipfile.ZIP_STORED) -> str:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in records.items():
            z.writestr(name, data)
    return str(path)


def _long(value: int) -> bytes:
    """LONG1: a pickled int of any size."""
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def shared_tuples(levels: int, fan_out: int = 10) -> bytes:
    """Pushes a tuple of `fan_out` copies of a tuple of `fan_out` copies of ... (), `levels` deep,
    built through the memo: ~24 bytes a level, fan_out ** levels elements as a tree."""
    out = b")q\x000"
    for level in range(1, levels + 1):
        out += b"(" + (b"h" + bytes([level - 1])) * fan_out + b"tq" + bytes([level]) + b"0"
    return out + b"h" + bytes([levels])


def hash_bomb() -> bytes:
    """{shared_tuples(9): 1}: hashing the key (and str() of it) visits 10**9 tuples."""
    return b"\x80\x02}" + shared_tuples(9) + b"K\x01s."


def shared_values() -> bytes:
    """{'w': shared_tuples(9)}: harmless to load, exponential to walk, print or copy."""
    return b"\x80\x02}Vw\n" + shared_tuples(9) + b"s."


def deep_lists(depth: int = 10_000) -> bytes:
    """[[[...]]] `depth` deep, 6 bytes a level through the memo."""
    return b"\x80\x02]" + b"q\x000]h\x00a" * depth + b"."


def huge_frame() -> bytes:
    """A protocol-4 FRAME declaring 1 TiB."""
    return b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + b"."


def bytes_of_size(n: int = 1 << 31) -> bytes:
    return b"\x80\x02c__builtin__\nbytes\n" + _long(n) + b"\x85R."


def ndarray_of_size(n: int = 1 << 31) -> bytes:
    """numpy.ndarray((n,), 'u1'): 38 bytes that ask for n bytes."""
    return b"\x80\x02cnumpy\nndarray\n" + _long(n) + b"\x85Vu1\n\x86R."


def reconstruct_of_size(n: int = 1 << 31) -> bytes:
    """numpy's own spelling, _reconstruct(ndarray, (n,), 'b') + BUILD with a 1-byte buffer."""
    return (b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
            b"(K\x01" + _long(n) + b"\x85cnumpy\ndtype\nVu1\n\x89\x88\x87R\x89C\x01\x00tb.")


def stride0_pth(path) -> str:
    """A 4-byte storage viewed as 4096 x 4096 with strides (0, 0): 64 MiB from a ~360-byte file."""
    return write_zip(path, {"a/data.pkl": torch_data_pkl(size=(4096, 4096), stride=(0, 0), numel=1),
                            "a/data/0": b"\0" * 4})


def deflated_pth(path, size: int = 256 << 20) -> str:
    """data.pkl deflated from `size` zero bytes (a few hundred KiB on disk)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\0" * (1 << 20)
    body = b"".join(compressor.compress(chunk) for _ in range(size // len(chunk))) + compressor.flush()
    return _deflated_zip(path, "a/data.pkl", body, size, _zero_crc(size))


def _deflated_zip(path, name: str, body: bytes, size: int, crc: int) -> str:
    """A one-member zip whose member `name` holds the raw deflate stream `body` of `size` bytes
    (written by hand: zipfile would need the whole uncompressed member in memory)."""
    encoded = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(body), size, len(encoded), 0) + encoded
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(body), size,
                          len(encoded), 0, 0, 0, 0, 0, 0) + encoded
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(body), 0)
    with open(path, "wb") as f:
        f.write(local + body + central + end)
    return str(path)


def _zero_crc(size: int) -> int:
    crc, chunk = 0, b"\0" * (1 << 20)
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    return crc


def huge_npy_npz(path) -> str:
    """An .npz whose member's header declares 2**31 uint8 and holds none of them."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (1 << 31,)})
    return write_zip(path, {"a.npy": header.getvalue()})


def _file(data_fn: Callable[[], bytes]) -> Callable:
    def write(path):
        with open(path, "wb") as f:
            f.write(data_fn())
        return str(path)
    return write


# name -> (writer(path) -> path, reader name in adaptformer.files.safe_pickle, expected message)
READER_CASES: Dict[str, Tuple[Callable, str, str]] = {
    "stride0.pth": (stride0_pth, "read_torch_zip", "a tensor view of size [4096, 4096] declares 67108864 bytes"),
    "deflated.pth": (deflated_pth, "read_torch_zip", "zip member 'a/data.pkl' declares 268435456 bytes"),
    "bytes.pdparams": (_file(bytes_of_size), "read_numpy_pickle",
                       "builtins.bytes(2147483648) declares 2147483648 bytes"),
    "ndarray.pdparams": (_file(ndarray_of_size), "read_numpy_pickle", "refuses to call numpy.ndarray directly"),
    "reconstruct.pdparams": (_file(reconstruct_of_size), "read_numpy_pickle",
                             "array of shape [2147483648] and dtype uint8 holds"),
    "frame.pdckpt": (_file(huge_frame), "read_numpy_pickle", "a record declares 1099511627776 bytes"),
    "hash_bomb.pdparams": (_file(hash_bomb), "read_numpy_pickle", "refuses a dict key of type tuple"),
    "shared.pdparams": (_file(shared_values), "read_numpy_pickle", "elements once shared records are expanded"),
    "deep.pdparams": (_file(deep_lists), "read_numpy_pickle", "nests containers more than 64 deep"),
    "huge.npz": (huge_npy_npz, "read_npz", "member 'a.npy' declares shape [2147483648] of uint8 but holds 0 bytes"),
}
