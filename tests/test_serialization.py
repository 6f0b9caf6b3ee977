"""kiln.save / kiln.load: safetensors files, exact round trips, clear errors for bad files, no pickle."""
from __future__ import annotations

import io
import json
import os
import struct
from collections import Counter, OrderedDict

import numpy as np
import pytest

import kiln
import kiln.nn as nn
from kiln.frontend.serialization import CheckpointNotFoundError, SerializationError


def _equal(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, kiln.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _equal(x, y)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def _sample():
    return {
        "fc1.weight": kiln.randn(4, 3),
        "fc1.bias": kiln.zeros(4, dtype=kiln.float64),
        "scalar": kiln.tensor(2.5),
        "ints": kiln.arange(6, dtype=kiln.int32).reshape(2, 3),
        "mask": kiln.tensor([True, False]),
        "empty": kiln.zeros(0, 5),
        "half": kiln.ones(3, dtype=kiln.float16),
        "param": kiln.randn(2, requires_grad=True),
        "nested": {"list": [1, -2, 3.5, float("inf"), float("nan"), None, "txt", True], "tuple": (1, (2, "x"))},
        7: {0: kiln.ones(1)},
        (1, "a"): "tuple key",
        "big_int": 2 ** 70,
        "np": np.arange(4, dtype=np.int64),
        "dtype": kiln.float64,
        "device": kiln.device("cpu"),
        "ordered": OrderedDict(b=1, a=2),
        "counter": Counter([3, 3, 5]),
    }


def test_round_trip_path_is_identical(tmp_path):
    obj = _sample()
    path = tmp_path / "x.kiln"
    kiln.save(obj, path)
    _equal(obj, kiln.load(path))
    _equal(obj, kiln.load(str(path)))


def test_round_trip_file_objects():
    obj = _sample()
    buf = io.BytesIO()
    kiln.save(obj, buf)
    buf.seek(0)
    _equal(obj, kiln.load(buf))


def test_single_tensor_and_transposed_view(tmp_path):
    t = kiln.randn(3, 4).t()
    kiln.save(t, tmp_path / "t")
    _equal(t.contiguous(), kiln.load(tmp_path / "t"))


def test_shared_tensors_stay_shared(tmp_path):
    t = kiln.randn(3)
    kiln.save({"a": t, "b": [t]}, tmp_path / "s")
    out = kiln.load(tmp_path / "s")
    assert out["a"] is out["b"][0]
    assert out["a"] is not t  # a fresh, writable copy
    out["a"].add_(1)


def test_file_is_plain_safetensors_without_pickle(tmp_path):
    from safetensors.numpy import load_file
    path = tmp_path / "m.safetensors"
    kiln.save({"w": kiln.ones(2, 2)}, path)
    arrays = load_file(str(path))
    assert list(arrays) == ["t0"] and arrays["t0"].shape == (2, 2)
    assert b"pickle" not in path.read_bytes() and b"\x80\x04" not in path.read_bytes()[:2]


def test_foreign_safetensors_loads_as_flat_dict(tmp_path):
    from safetensors.numpy import save_file
    save_file({"layer.weight": np.ones((2, 3), np.float32), "layer.bias": np.zeros(3, np.float32)},
              str(tmp_path / "f.safetensors"))
    out = kiln.load(tmp_path / "f.safetensors")
    assert set(out) == {"layer.weight", "layer.bias"} and out["layer.weight"].shape == (2, 3)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "ckpt"
    kiln.save({"a": kiln.ones(2)}, path)
    kiln.save({"a": kiln.zeros(2)}, path)  # overwrite
    assert os.listdir(tmp_path) == ["ckpt"]
    with pytest.raises(TypeError):
        kiln.save({"bad": object()}, path)
    assert os.listdir(tmp_path) == ["ckpt"]  # the failed save did not touch the old file
    assert kiln.load(path)["a"].tolist() == [0.0, 0.0]


def test_unsupported_objects_are_type_errors(tmp_path):
    class Model:
        def state_dict(self):
            return {}

    with pytest.raises(TypeError, match="state_dict"):
        kiln.save(Model(), tmp_path / "m")
    with pytest.raises(TypeError):
        kiln.save({object(): 1}, tmp_path / "m")
    with pytest.raises(SerializationError, match="does not exist"):
        kiln.save({}, tmp_path / "nope" / "m")


def test_model_style_state_dict_round_trip_restores_outputs(tmp_path):
    w, b = kiln.randn(5, 3, requires_grad=True), kiln.randn(3, requires_grad=True)
    x = kiln.randn(4, 5)
    sd = {"fc.weight": w.detach(), "fc.bias": b.detach()}
    kiln.save(sd, tmp_path / "model.kiln")
    loaded = kiln.load(tmp_path / "model.kiln", map_location="cpu", weights_only=True)
    out1 = x @ w + b
    out2 = x @ loaded["fc.weight"] + loaded["fc.bias"]
    assert kiln.equal(out1.detach(), out2)


# -- malformed files --------------------------------------------------------------------------------
def _write(tmp_path, data: bytes):
    p = tmp_path / "bad.kiln"
    p.write_bytes(data)
    return p


def test_missing_file(tmp_path):
    p = tmp_path / "missing.kiln"
    with pytest.raises(CheckpointNotFoundError, match="missing.kiln"):
        kiln.load(p)
    with pytest.raises(FileNotFoundError):
        kiln.load(p)
    with pytest.raises(SerializationError, match="directory"):
        kiln.load(tmp_path)


@pytest.mark.parametrize("cut", [0, 3, 8, 20, -1, -7])
def test_truncated_file(tmp_path, cut):
    good = tmp_path / "good"
    kiln.save({"w": kiln.randn(10, 10), "meta": {"epoch": 3}}, good)
    data = good.read_bytes()
    p = _write(tmp_path, data[:cut] if cut >= 0 else data[:len(data) + cut])
    with pytest.raises(SerializationError, match="bad.kiln") as e:
        kiln.load(p)
    assert isinstance(e.value, RuntimeError)


@pytest.mark.parametrize("cut", [5, 20, -3])
def test_truncated_file_object(tmp_path, cut):
    buf = io.BytesIO()
    kiln.save({"w": kiln.randn(4, 4)}, buf)
    data = buf.getvalue()
    damaged = io.BytesIO(data[:cut] if cut >= 0 else data[:cut])
    damaged.name = "in-memory.kiln"
    with pytest.raises(SerializationError, match="in-memory.kiln"):
        kiln.load(damaged)


def test_foreign_files(tmp_path):
    rng = np.random.default_rng(0)
    for data in [rng.bytes(1000), b"hello world, not a checkpoint", b"\x00" * 64]:
        with pytest.raises(SerializationError, match="bad.kiln"):
            kiln.load(_write(tmp_path, data))
    import pickle
    with pytest.raises(SerializationError, match="pickle"):
        kiln.load(_write(tmp_path, pickle.dumps({"a": 1})))
    np.save(tmp_path / "arr.npy", np.ones(3))
    with pytest.raises(SerializationError, match="numpy"):
        kiln.load(tmp_path / "arr.npy")


def test_pytorch_checkpoint_is_refused_without_unpickling(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, p)
    with pytest.raises(SerializationError, match="PyTorch"):
        kiln.load(p)


def test_corrupt_header_and_structure(tmp_path):
    good = tmp_path / "good"
    kiln.save({"w": kiln.ones(2)}, good)
    data = good.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])

    def rebuild(h):
        hb = json.dumps(h).encode()
        return struct.pack("<Q", len(hb)) + hb + data[8 + n:]

    # header bytes that are not JSON
    with pytest.raises(SerializationError, match="JSON"):
        kiln.load(_write(tmp_path, data[:8] + b"{" + b"\xff" * (n - 1) + data[8 + n:]))
    # structure that refers to a tensor that is not there
    h = json.loads(json.dumps(header))
    h["__metadata__"]["kiln.structure"] = json.dumps({"type": "dict", "keys": [{"type": "value", "value": "w"}],
                                                      "values": [{"type": "tensor", "key": "t9"}]})
    with pytest.raises(SerializationError, match="missing tensor"):
        kiln.load(_write(tmp_path, rebuild(h)))
    # an unknown entry type (never evaluated as code)
    h["__metadata__"]["kiln.structure"] = json.dumps({"type": "__import__('os').system('false')"})
    with pytest.raises(SerializationError, match="unknown entry type"):
        kiln.load(_write(tmp_path, rebuild(h)))
    # structure not JSON
    h["__metadata__"]["kiln.structure"] = "{not json"
    with pytest.raises(SerializationError, match="structure"):
        kiln.load(_write(tmp_path, rebuild(h)))
    # a different format version
    h["__metadata__"]["kiln.format"] = "kiln-save-v99"
    with pytest.raises(SerializationError, match="format"):
        kiln.load(_write(tmp_path, rebuild(h)))
    # tensor offsets past the end of the data
    h = json.loads(json.dumps(header))
    h["t0"]["data_offsets"] = [0, 10 ** 6]
    with pytest.raises(SerializationError, match="truncated"):
        kiln.load(_write(tmp_path, rebuild(h)))


def test_text_mode_file_object_is_rejected(tmp_path):
    p = tmp_path / "f"
    kiln.save({"a": kiln.ones(1)}, p)
    with open(p, "r", encoding="latin-1") as fh, pytest.raises(TypeError, match="binary"):
        kiln.load(fh)


def test_nn_module_state_dict_round_trip(tmp_path):
    kiln.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 3))
    model(kiln.randn(2, 3, 5, 5))  # update BatchNorm running stats
    model.eval()
    path = tmp_path / "model.kiln"
    kiln.save(model.state_dict(), path)
    other = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 3))
    other.load_state_dict(kiln.load(path))
    other.eval()
    x = kiln.randn(2, 3, 5, 5)
    with kiln.no_grad():
        assert kiln.equal(model(x), other(x))
    assert list(kiln.load(path)) == list(model.state_dict())


def test_deeply_nested_structure_is_a_clear_error(tmp_path):
    good = tmp_path / "good"
    kiln.save({"w": kiln.ones(2)}, good)
    data = good.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["kiln.structure"] = "[" * 100_000 + "]" * 100_000
    hb = json.dumps(header).encode()
    p = tmp_path / "deep.kiln"
    p.write_bytes(struct.pack("<Q", len(hb)) + hb + data[8 + n:])
    with pytest.raises(SerializationError, match="deep.kiln"):
        kiln.load(p)
