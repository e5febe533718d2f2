"""The restricted checkpoint readers: exact against files real torch / paddle wrote, and inert
against pickles that try to run code. Fixtures: tests/fixtures/make_torch_zip_fixtures.py."""
import collections
import os
import pickle
import re
import struct
import types
import zipfile

import numpy as np
import pytest

from adaptformer.files.safe_pickle import CheckpointReadError, UnsafePickleError, read_numpy_pickle, read_torch_zip
from untrusted_payloads import Payload, system_pickle, torch_data_pkl, write_zip

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "torch_zip")


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURES, "expected.npz")) as z:
        return {k: z[k] for k in z.files}


def flatten(obj, prefix, out):
    """Arrays in nested containers by key path, as the fixture script names them."""
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, f"{prefix}.{k}", out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, f"{prefix}.{i}", out)
    return out


def assert_same_arrays(got, want):
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def zip_folder(path):
    with zipfile.ZipFile(path) as z:
        return z.namelist()[0].split("/")[0]


# --- real torch.save files -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["state_dict.pth", "state_dict_p4.pth"])
def test_state_dict_matches_torch(name, expected):
    path = os.path.join(FIXTURES, name)
    assert zip_folder(path) != "archive"  # the reader must find the folder, not assume it
    got = flatten(read_torch_zip(path), "state_dict", {})
    want = {k: v for k, v in expected.items() if k.startswith("state_dict.")}
    assert_same_arrays(got, want)
    assert want["state_dict.bfloat16"].dtype == np.float32 and want["state_dict.uint16"].dtype == np.uint16


def test_views_of_one_storage_come_back_as_independent_copies(expected):
    sd = read_torch_zip(os.path.join(FIXTURES, "state_dict.pth"))
    views = ["base", "transposed", "sliced", "column", "expanded"]
    for key in views:
        assert sd[key].flags.writeable and sd[key].flags.c_contiguous, key
    sd["base"][:] = -1
    for key in views[1:]:
        np.testing.assert_array_equal(sd[key], expected["state_dict." + key])


def test_training_checkpoint(expected):
    path = os.path.join(FIXTURES, "checkpoint.pth")
    assert zip_folder(path) == "archive"
    ckpt = read_torch_zip(path)
    assert_same_arrays(flatten(ckpt, "checkpoint", {}), {k: v for k, v in expected.items() if k.startswith("checkpoint.")})
    assert isinstance(ckpt["model"], collections.OrderedDict)
    assert list(ckpt["model"]) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert ckpt["epoch"] == 3
    assert isinstance(ckpt["args"], types.SimpleNamespace)
    assert vars(ckpt["args"]) == dict(lr=0.1, batch_size=8, model="vit_base_patch16", drop_path=0.0,
                                      resume="", color_jitter=None, dist_eval=True, input_size=224)
    group = ckpt["optimizer"]["param_groups"][0]
    assert group["betas"] == (0.9, 0.95) and group["params"] == [0, 1, 2, 3] and group["foreach"] is None
    assert type(ckpt["max_accuracy"]) is np.float64 and ckpt["max_accuracy"] == 81.25
    assert type(ckpt["seen"]) is np.int64 and ckpt["seen"] == 12
    assert ckpt["dtype"] == np.dtype("float32")


# --- hand-written torch pickles: layouts the reader must honour or refuse --------------------

def torch_zip(path, data_pkl, storage=np.arange(4, dtype="<f4").tobytes(), folder="weird.name"):
    return write_zip(path, {f"{folder}/data.pkl": data_pkl, f"{folder}/data/0": storage})


@pytest.mark.parametrize("offset, size, stride, want", [
    (0, (2, 2), (2, 1), [[0, 1], [2, 3]]),
    (0, (2, 2), (1, 2), [[0, 2], [1, 3]]),
    (1, (3,), (1,), [1, 2, 3]),
    (2, (2, 2), (0, 1), [[2, 3], [2, 3]]),
    (3, (), (), 3),
    (0, (0, 9), (1, 1), np.zeros((0, 9))),  # empty: reads nothing, whatever the strides say
])
def test_handwritten_layouts(tmp_path, offset, size, stride, want):
    path = torch_zip(tmp_path / "w.pth", torch_data_pkl(offset, size, stride))
    got = read_torch_zip(path)["w"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array(want, dtype=np.float32))


@pytest.mark.parametrize("pkl, message", [
    (torch_data_pkl(size=(2, 2), stride=(3, 1)), "overruns its 4-element storage"),
    (torch_data_pkl(offset=4, size=(1,), stride=(1,)), "overruns"),
    (torch_data_pkl(offset=-1, size=(1,), stride=(1,)), "invalid tensor layout"),
    (torch_data_pkl(size=(2,), stride=(-1,)), "invalid tensor layout"),
    (torch_data_pkl(numel=5), "holds 16 bytes, expected 5 x float32"),
    (torch_data_pkl(key="7"), "missing storage record 'weird.name/data/7'"),
])
def test_bad_tensor_records(tmp_path, pkl, message):
    path = torch_zip(tmp_path / "bad.pth", pkl)
    with pytest.raises(CheckpointReadError, match=message) as err:
        read_torch_zip(path)
    assert str(err.value).startswith(path + ": ")


# --- malicious pickles -----------------------------------------------------------------------

def payload(kind, marker):
    if kind == "os.system":
        return system_pickle(marker)
    return pickle.dumps(Payload(eval, f"open({str(marker)!r}, 'w').close()"), protocol=4)


GLOBAL_NAMES = {"os.system": "posix.system", "eval": "builtins.eval"}


@pytest.mark.parametrize("kind", GLOBAL_NAMES)
def test_payloads_are_live(tmp_path, kind):
    """Control: the crafted payloads do run under plain pickle, so the tests below mean something."""
    marker = tmp_path / "ran"
    pickle.loads(payload(kind, marker))
    assert marker.exists()


@pytest.mark.parametrize("container", ["pdparams", "zip"])
@pytest.mark.parametrize("kind", GLOBAL_NAMES)
def test_malicious_pickle_runs_nothing(tmp_path, kind, container):
    marker = tmp_path / "ran"
    data = payload(kind, marker)
    if container == "pdparams":
        path = tmp_path / "evil.pdparams"
        path.write_bytes(data)
        read = read_numpy_pickle
    else:
        path = write_zip(tmp_path / "evil.pth", {"archive/data.pkl": data})
        read = read_torch_zip
    with pytest.raises(UnsafePickleError) as err:
        read(path)
    message = str(err.value)
    assert message.startswith(f"{path}: refuses to load global '{GLOBAL_NAMES[kind]}'")
    assert "\n" not in message
    assert not marker.exists()


def global_pickle(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n."


@pytest.mark.parametrize("module, name", [
    ("os", "system"), ("builtins", "eval"), ("__builtin__", "exec"), ("subprocess", "Popen"),
    ("functools", "partial"), ("builtins", "getattr"), ("numpy", "load"), ("numpy.testing", "_private"),
    ("torch", "load"), ("torch._tensor", "_rebuild_from_type_v2"), ("torch", "Tensor"), ("pickle", "loads"),
])
def test_unlisted_globals_are_refused_by_both_readers(tmp_path, module, name):
    pdparams = tmp_path / "g.pdparams"
    pdparams.write_bytes(global_pickle(module, name))
    pth = write_zip(tmp_path / "g.pth", {"archive/data.pkl": global_pickle(module, name)})
    for read, path in ((read_numpy_pickle, pdparams), (read_torch_zip, pth)):
        with pytest.raises(UnsafePickleError, match=f"refuses to load global '{module}.{name}'"):
            read(path)


@pytest.mark.parametrize("module, name", [
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torch", "FloatStorage"), ("argparse", "Namespace"),
])
def test_pdparams_reader_refuses_torch_globals(tmp_path, module, name):
    path = tmp_path / "g.pdparams"
    path.write_bytes(global_pickle(module, name))
    with pytest.raises(UnsafePickleError, match=f"'{module}.{name}' \\(only numpy arrays"):
        read_numpy_pickle(path)


def test_allowed_globals_cannot_be_misused(tmp_path):
    # _codecs.encode with a codec other than latin1 (codecs can be arbitrary lookups).
    path = tmp_path / "codec.pdparams"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nVx\nVzlib_codec\n\x86R.")
    with pytest.raises(UnsafePickleError, match="encoding 'zlib_codec'"):
        read_numpy_pickle(path)
    # numpy's _reconstruct asked for a class other than ndarray.
    path.write_bytes(b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nccollections\nOrderedDict\n"
                     b"I0\n\x85Vb\n\x87R.")
    with pytest.raises(UnsafePickleError, match="only numpy.ndarray is allowed"):
        read_numpy_pickle(path)


# --- files that are not what the caller expects ----------------------------------------------

def damage_first_record(path):
    """A copy of state_dict.pth whose first storage record has one flipped byte (bad CRC)."""
    source = os.path.join(FIXTURES, "state_dict.pth")
    data = bytearray(open(source, "rb").read())
    with zipfile.ZipFile(source) as z:
        offset = z.getinfo("state_dict/data/0").header_offset
    # Contents start after the 30-byte local header, the name and the (alignment) extra field.
    name_len, extra_len = struct.unpack("<HH", data[offset + 26 : offset + 30])
    data[offset + 30 + name_len + extra_len] ^= 0xFF
    path.write_bytes(bytes(data))


def make_case(case, tmp_path):
    if case == "missing":
        return tmp_path / "nope.pth"
    if case == "directory":
        return tmp_path
    if case in ("legacy.pth", "scripted.pt"):
        return os.path.join(FIXTURES, case)
    path = tmp_path / f"{case}.pth"
    if case == "truncated":
        data = open(os.path.join(FIXTURES, "state_dict.pth"), "rb").read()
        path.write_bytes(data[: len(data) // 2])
    elif case == "damaged_record":
        damage_first_record(path)
    elif case == "not_a_zip":
        path.write_bytes(pickle.dumps({"w": 1}, protocol=2))
    elif case == "no_data_pkl":
        write_zip(path, {"archive/version": b"3\n", "archive/data/0": b"\0" * 4})
    elif case == "torchscript_like":
        write_zip(path, {"m/data.pkl": pickle.dumps({}), "m/constants.pkl": pickle.dumps(()),
                         "m/code/__torch__/m.py": b"class M: pass\n"})
    elif case == "big_endian":
        torch_zip(path, torch_data_pkl(), folder="archive")
        with zipfile.ZipFile(path, "a") as z:
            z.writestr("archive/byteorder", b"big")
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file, expected a PyTorch"),
    ("directory", "is a directory, expected a PyTorch"),
    ("truncated", "truncated or damaged zip"),
    ("damaged_record", "damaged storage record 'state_dict/data/0'"),
    ("legacy.pth", r"legacy PyTorch \(< 1.6\) checkpoint; re-save it with torch >= 1.6"),
    ("not_a_zip", "not a zip archive, expected a torch.save checkpoint"),
    ("no_data_pkl", "expected one '<folder>/data.pkl' record in the zip"),
    ("scripted.pt", "a TorchScript archive"),
    ("torchscript_like", "a TorchScript archive"),
    ("big_endian", "big-endian checkpoint"),
])
def test_unreadable_torch_files(tmp_path, case, message):
    path = make_case(case, tmp_path)
    with pytest.raises(CheckpointReadError, match=message) as err:
        read_torch_zip(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


# --- .pdparams -------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [2, 4])
def test_paddle_save_round_trip(tmp_path, protocol):
    import paddle

    paddle.seed(0)
    state = paddle.nn.Linear(3, 4).state_dict()
    state["half"] = paddle.to_tensor([[1.5, -2.0]], dtype="float16")
    state["steps"] = paddle.to_tensor([3, -(2**40)], dtype="int64")
    state["mask"] = paddle.to_tensor([True, False])
    path = str(tmp_path / "linear.pdparams")
    paddle.save(state, path, protocol=protocol)
    want = {k: v.numpy() for k, v in state.items()}

    got = read_numpy_pickle(path)
    assert_same_arrays(got, want)  # also: paddle's name-table entry is gone
    assert_same_arrays(got, paddle.load(path, return_numpy=True))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickled_numpy_dict(tmp_path, protocol):
    rng = np.random.default_rng(0)
    want = {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((2, 3))),
        "transposed": np.arange(6, dtype=np.int16).reshape(2, 3).T,
        "scalar": np.array(2.5, dtype=np.float16),
        "empty": np.zeros((0, 2), np.uint8),
        "readonly": np.arange(3.0),
    }
    want["readonly"].flags.writeable = False  # protocol 5 then writes bytes, not a bytearray
    path = tmp_path / "plain.pdparams"
    path.write_bytes(pickle.dumps({**want, "n": np.int64(4), "nested": [{"b": np.ones(2, bool)}]}, protocol=protocol))
    got = read_numpy_pickle(path)
    assert_same_arrays({k: got[k] for k in want}, want)
    assert type(got["n"]) is np.int64 and got["n"] == 4
    np.testing.assert_array_equal(got["nested"][0]["b"], [True, True])
    assert all(got[k].flags.writeable for k in want)


def test_numpy_1x_spelling(tmp_path):
    """Files written with numpy 1.x name numpy.core, not numpy._core."""
    data = pickle.dumps({"w": np.arange(3.0), "s": np.float32(1.5)}, protocol=2)
    assert b"numpy._core.multiarray" in data
    path = tmp_path / "old.pdparams"
    path.write_bytes(data.replace(b"numpy._core.", b"numpy.core."))
    got = read_numpy_pickle(path)
    np.testing.assert_array_equal(got["w"], [0.0, 1.0, 2.0])
    assert got["s"] == np.float32(1.5)


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file, expected a Paddle .pdparams"),
    ("directory", "is a directory, expected a Paddle .pdparams"),
    ("torch_zip", "is a zip archive \\(a PyTorch checkpoint\\? use read_torch_zip\\)"),
    ("list", "holds a list, expected a Paddle .pdparams"),
    ("truncated", "truncated or damaged pickle: a record declares"),
    ("split", "split into slices"),
])
def test_unreadable_pdparams(tmp_path, case, message):
    path = tmp_path / "x.pdparams"
    if case == "missing":
        path = tmp_path / "nope.pdparams"
    elif case == "directory":
        path = tmp_path
    elif case == "torch_zip":
        path = os.path.join(FIXTURES, "state_dict.pth")
    elif case == "list":
        path.write_bytes(pickle.dumps([np.zeros(2)]))
    elif case == "truncated":
        data = pickle.dumps({"w": np.zeros(100)}, protocol=4)
        path.write_bytes(data[: len(data) // 2])
    elif case == "split":
        path.write_bytes(pickle.dumps({"w@@.0": np.zeros(2), "UnpackBigParamInfor@@": {}}))
    with pytest.raises(CheckpointReadError, match=message) as err:
        read_numpy_pickle(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("data, message", [
    (b"\x80\x04\x8f.", "refuses sets and frozensets"),
    (b"\x80\x02ccollections\nOrderedDict\n)\x81.", "refuses to construct a function"),
    (b"\x80\x02c_codecs\nencode\n}b.", "refuses to set the state of a function"),
    (b"\x80\x02}K\x01a.", "refuses to append to a dict"),
    (b"\x80\x02]K\x01K\x02s.", "refuses to set items on a list"),
    (b"\x80\x02}(K\x01K\x02\x86K\x03u.", "refuses a dict key of type tuple"),
    (b"\x80\x02cnumpy\ndtype\nVO8\n\x85R.", "refuses numpy dtype 'O8'"),
    (b"\x80\x02VX\n)R.", "refuses to call 'X'"),
    (b"\x80\x02" + b"(" * 100, "nests more than 64 records under construction"),
    (b"\x80\x02]q\x00h\x00a.", "holds a container that contains itself"),
])
def test_opcodes_that_could_misuse_allowed_objects(tmp_path, data, message):
    path = tmp_path / "x.pdparams"
    path.write_bytes(data)
    with pytest.raises((UnsafePickleError, CheckpointReadError), match=re.escape(message)):
        read_numpy_pickle(path)
