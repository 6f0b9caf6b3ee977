"""`kiln.save` / `kiln.load`: tensors and nested containers of them, stored with safetensors.

File format: a standard safetensors file. Every tensor (and numpy array) in the saved
object is one safetensors entry (`t0`, `t1`, ...); the object's structure — dicts,
lists, tuples, numbers, strings, None and references to those entries — is JSON in
the safetensors metadata under `kiln.structure`. Nothing is pickled, so loading a file
cannot run code. A plain safetensors file without kiln metadata loads as a flat
`{name: tensor}` dict (e.g. weights written by other tools).
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from collections import Counter, OrderedDict
from typing import Any, BinaryIO, Union

import numpy as np

from ..ir import dtypes as dt
from .tensor import Tensor, _check_device, device, to_device_value

__all__ = ["save", "load", "SerializationError", "CheckpointNotFoundError"]

FORMAT = "kiln-save-v1"
_MAX_DEPTH = 200
PathOrFile = Union[str, os.PathLike, BinaryIO]


class SerializationError(RuntimeError):
    """A file could not be saved or loaded by kiln.save / kiln.load (the message names the file)."""


class CheckpointNotFoundError(SerializationError, FileNotFoundError):
    """kiln.load was given a path that does not exist."""


# ======================================================================================
# save
# ======================================================================================

class _Encoder:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self._ids: dict[int, str] = {}
        self._keep: list[Any] = []  # keep objects alive so ids stay unique while encoding

    def tensor_ref(self, obj: Any, kind: str) -> str:
        key = self._ids.get(id(obj))
        if key is None:
            if kind == "tensor":
                if obj.is_tracer:
                    raise TypeError("kiln.save: cannot save a tensor inside a kiln.compile trace (it has no value "
                                    "yet); save it after calling the compiled function")
                arr = obj._concrete("kiln.save")  # a CUDA tensor is saved as its host copy
            else:
                arr = obj
                dt.from_numpy_dtype(arr.dtype)  # raises TypeError for unsupported dtypes
            key = f"t{len(self.arrays)}"
            self.arrays[key] = arr if arr.flags.c_contiguous else np.array(arr, order="C")  # keeps 0-d shape
            self._ids[id(obj)] = key
            self._keep.append(obj)
        return key

    def encode(self, obj: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("kiln.save: the object is nested too deeply (or contains itself)")
        if isinstance(obj, Tensor):
            out = {"type": "tensor", "key": self.tensor_ref(obj, "tensor")}
            if obj.is_cuda:
                out["device"] = str(obj.device)
            if obj.requires_grad:
                out["requires_grad"] = True
            return out
        if isinstance(obj, np.ndarray):
            return {"type": "ndarray", "key": self.tensor_ref(obj, "ndarray")}
        if obj is None or isinstance(obj, (bool, str)):
            return {"type": "value", "value": obj}
        if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
            return {"type": "int", "value": str(int(obj))}
        if isinstance(obj, np.bool_):
            return {"type": "value", "value": bool(obj)}
        if isinstance(obj, (float, np.floating)):
            return {"type": "float", "value": repr(float(obj))}
        if isinstance(obj, dt.DType):
            return {"type": "dtype", "value": obj.name}
        if isinstance(obj, device):
            return {"type": "device", "value": str(obj)}
        if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
            return {"type": "tuple", "items": [self.encode(v, depth + 1) for v in obj]}
        if isinstance(obj, list):
            return {"type": "list", "items": [self.encode(v, depth + 1) for v in obj]}
        if isinstance(obj, dict):
            kind = "counter" if isinstance(obj, Counter) else "ordered_dict" if isinstance(obj, OrderedDict) \
                else "dict"
            keys = []
            for k in obj:
                if not (k is None or isinstance(k, (str, int, float, bool, tuple, np.integer))):
                    raise TypeError(f"kiln.save: dict keys must be str, numbers, None or tuples, got "
                                    f"{type(k).__name__}")
                keys.append(self.encode(k, depth + 1))
            return {"type": kind, "keys": keys, "values": [self.encode(v, depth + 1) for v in obj.values()]}
        hint = " (save model.state_dict() / optimizer.state_dict() instead)" if hasattr(obj, "state_dict") else ""
        raise TypeError(f"kiln.save stores tensors, numpy arrays, numbers, strings, None and dicts/lists/tuples of "
                        f"them; got an object of type {type(obj).__name__}{hint}")


def _serialize(obj: Any) -> bytes:
    import safetensors.numpy as stnp  # function-local: safetensors is loaded only when a file is read or written
    enc = _Encoder()
    structure = enc.encode(obj)
    meta = {"kiln.format": FORMAT, "kiln.structure": json.dumps(structure, separators=(",", ":"))}
    return stnp.save(enc.arrays, metadata=meta)


def _file_name(f: Any) -> str:
    if isinstance(f, (str, os.PathLike)):
        return os.fspath(f)
    return str(getattr(f, "name", "<file object>"))


def save(obj: Any, f: PathOrFile, pickle_module: Any = None, pickle_protocol: Any = None,
         _use_new_zipfile_serialization: Any = None) -> None:
    """Save `obj` (tensors, and dicts/lists/tuples of tensors, numbers, strings, None) to `f`.

    `f` is a path (written atomically: a temporary file in the same folder, then a
    rename) or a binary file object. The pickle-related arguments exist for PyTorch
    compatibility and are ignored: kiln never pickles.
    """
    data = _serialize(obj)
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise SerializationError(f"kiln.save: cannot write {path!r}: folder {folder!r} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=".kiln-save-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    elif hasattr(f, "write"):
        f.write(data)
    else:
        raise TypeError(f"kiln.save: f must be a path or a binary file object, got {type(f).__name__}")


# ======================================================================================
# load
# ======================================================================================

def _fail(name: str, what: str) -> SerializationError:
    return SerializationError(f"kiln.load: {name!r} {what}")


def _read_head(f: Any, name: str) -> tuple[bytes, int, Any]:
    """(the leading bytes that hold the safetensors header, total size, source for safetensors).

    Paths read only the header here (safetensors then reads the tensors itself, without a
    second whole-file copy); file objects are read whole.
    """
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        if not os.path.exists(path):
            raise CheckpointNotFoundError(f"kiln.load: no such file {path!r}")
        if os.path.isdir(path):
            raise _fail(path, "is a directory, not a kiln checkpoint file")
        try:
            total = os.path.getsize(path)
            with open(path, "rb") as fh:
                head = fh.read(8)
                if len(head) == 8 and head[:4] != b"PK\x03\x04":
                    (n,) = struct.unpack("<Q", head)
                    if n <= total - 8:
                        head += fh.read(n)
                    else:
                        head += fh.read(64)
        except OSError as e:
            raise _fail(path, f"could not be read: {e}") from e
        return head, total, path
    if hasattr(f, "read"):
        data = f.read()
        if isinstance(data, str):
            raise TypeError("kiln.load: the file object must be opened in binary mode ('rb')")
        data = bytes(data)
        return data, len(data), data
    raise TypeError(f"kiln.load: f must be a path or a binary file object, got {type(f).__name__}")


def _foreign_kind(data: bytes) -> str | None:
    if data[:4] == b"PK\x03\x04":
        return ("is a zip archive — most likely a PyTorch torch.save checkpoint. kiln does not load pickled "
                "checkpoints (unpickling can run arbitrary code); convert it to safetensors "
                "(e.g. safetensors.torch.save_file(state_dict, path)) and load that")
    if data[:1] == b"\x80" and len(data) > 1 and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "is a Python pickle, which kiln never loads (unpickling can run arbitrary code)"
    if data[:6] == b"\x93NUMPY":
        return "is a numpy .npy file, not a kiln checkpoint (load it with numpy.load and kiln.from_numpy)"
    return None


_ST_DTYPES = {"F16", "F32", "F64", "I32", "I64", "BOOL", "BF16", "I8", "I16", "U8", "U16", "U32", "U64", "F8_E4M3",
              "F8_E5M2"}


def _parse_header(data: bytes, total: int, name: str) -> dict:
    """Check the safetensors framing ourselves so damage gives a precise message.

    `data` starts at the beginning of the file and holds at least the header when the file
    is intact; `total` is the file's size in bytes.
    """
    foreign = _foreign_kind(data)
    if foreign:
        raise _fail(name, foreign)
    if total < 8:
        raise _fail(name, f"is not a kiln checkpoint: it is only {total} bytes long (empty or truncated)")
    (n,) = struct.unpack("<Q", data[:8])
    if n == 0 or data[8:9] != b"{":
        raise _fail(name, "is not a kiln checkpoint (kiln writes safetensors files; this one has no safetensors "
                          "header)")
    if 8 + n > total or 8 + n > len(data):
        raise _fail(name, f"is truncated or corrupt: its safetensors header claims {n} bytes but only "
                          f"{total - 8} follow")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _fail(name, "is corrupt or not a kiln checkpoint: its safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _fail(name, "is corrupt: its safetensors header is not a JSON object")
    body = total - 8 - n
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if (not isinstance(info, dict) or info.get("dtype") not in _ST_DTYPES
                or not isinstance(info.get("data_offsets"), list) or len(info["data_offsets"]) != 2):
            raise _fail(name, f"is corrupt: bad safetensors entry for tensor {key!r}")
        end = max(end, int(info["data_offsets"][1]))
    if end > body:
        raise _fail(name, f"is truncated: its tensors need {end} bytes of data but only {body} are present")
    return header


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], name: str, map_location: Any = None):
        self.arrays = arrays
        self.name = name
        self.map_location = map_location
        self._tensors: dict[str, Tensor] = {}

    def place(self, saved: str) -> device:
        """Where a tensor saved on device `saved` loads, under `map_location`."""
        return _placement(self.map_location, saved, self.name)

    def bad(self, what: str) -> SerializationError:
        return _fail(self.name, f"is corrupt: {what}")

    def array(self, node: dict) -> np.ndarray:
        key = node.get("key")
        if not isinstance(key, str) or key not in self.arrays:
            raise self.bad(f"its structure refers to a missing tensor {key!r}")
        return self.arrays[key]

    def decode(self, node: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise self.bad("its structure is nested too deeply")
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            raise self.bad("its structure description is malformed")
        kind = node["type"]
        try:
            if kind == "tensor":
                key = node["key"]
                t = self._tensors.get(key)
                if t is None:
                    arr = self.array(node)
                    dt.from_numpy_dtype(arr.dtype)
                    t = Tensor._make(np.array(arr, copy=True))
                    where = self.place(node.get("device", "cpu"))
                    if where.type != "cpu":
                        t._cell.value = to_device_value(t._cell.value, where)
                    if node.get("requires_grad") is True:
                        t.requires_grad_(True)
                    self._tensors[key] = t
                return t
            if kind == "ndarray":
                return np.array(self.array(node), copy=True)
            if kind == "value":
                v = node["value"]
                if not (v is None or isinstance(v, (bool, str))):
                    raise self.bad("a 'value' entry holds an unexpected JSON type")
                return v
            if kind == "int":
                return int(node["value"])
            if kind == "float":
                return float(node["value"])
            if kind == "dtype":
                return dt.get_dtype(node["value"])
            if kind == "device":
                return device(str(node["value"]))
            if kind in ("list", "tuple"):
                items = node["items"]
                if not isinstance(items, list):
                    raise self.bad(f"a {kind} entry has no item list")
                vals = [self.decode(v, depth + 1) for v in items]
                return vals if kind == "list" else tuple(vals)
            if kind in ("dict", "ordered_dict", "counter"):
                keys, values = node["keys"], node["values"]
                if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values):
                    raise self.bad("a dict entry has mismatched keys and values")
                pairs = [(self.decode(k, depth + 1), self.decode(v, depth + 1)) for k, v in zip(keys, values)]
                for k, _ in pairs:
                    if isinstance(k, (Tensor, list, dict)):
                        raise self.bad("a dict key is not hashable")
                if kind == "counter":
                    return Counter(dict(pairs))
                return OrderedDict(pairs) if kind == "ordered_dict" else dict(pairs)
        except SerializationError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise self.bad(f"a {kind!r} entry could not be read ({type(e).__name__}: {e})") from None
        raise self.bad(f"unknown entry type {kind!r} (written by a newer kiln?)")


def load(f: PathOrFile, map_location: Any = None, pickle_module: Any = None, *, weights_only: Any = None,
         mmap: Any = None, **kwargs: Any) -> Any:
    """Load an object written by `kiln.save` (or a plain safetensors file, as a {name: tensor} dict).

    Raises `CheckpointNotFoundError` for a missing path and `SerializationError` (a
    RuntimeError) naming the file for truncated, corrupt or foreign files (e.g. a
    pickled PyTorch checkpoint). Tensors load on the device they were saved from (CUDA tensors are
    stored as host copies), unless `map_location` says otherwise: a device ('cpu', 'cuda', a
    `kiln.device`) for every tensor, or a dict {saved device: device}. The other PyTorch arguments
    are accepted and ignored (loading never unpickles).
    """
    name = _file_name(f)
    _placement(map_location, "cpu", name)  # a bad map_location fails before the file is read
    head, total, source = _read_head(f, name)
    header = _parse_header(head, total, name)
    import safetensors.numpy as stnp  # function-local: safetensors is loaded only when a file is read or written
    try:
        arrays = stnp.load_file(source) if isinstance(source, str) else stnp.load(source)
    except Exception as e:  # safetensors raises its own SafetensorError for framing problems
        raise _fail(name, f"is corrupt: safetensors could not read it ({e})") from None
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise _fail(name, "is corrupt: its safetensors metadata is not a JSON object")
    if "kiln.structure" not in meta:
        out = {}
        for k in sorted(arrays):
            try:
                dt.from_numpy_dtype(arrays[k].dtype)
            except TypeError:
                raise _fail(name, f"holds tensor {k!r} of dtype {arrays[k].dtype}, which kiln does not "
                                  "support") from None
            t = Tensor._make(np.array(arrays[k], copy=True))
            where = _placement(map_location, "cpu", name)
            if where.type != "cpu":
                t._cell.value = to_device_value(t._cell.value, where)
            out[k] = t
        return out
    fmt = meta.get("kiln.format")
    if fmt != FORMAT:
        raise _fail(name, f"was written in kiln format {fmt!r}, which this kiln (format {FORMAT!r}) cannot read")
    try:
        structure = json.loads(meta["kiln.structure"])
    except (ValueError, RecursionError):
        raise _fail(name, "is corrupt: its kiln structure description is not valid JSON") from None
    return _Decoder(arrays, name, map_location).decode(structure)


def _placement(map_location: Any, saved: str, name: str) -> device:
    """The device a tensor saved on `saved` loads on (checked usable)."""
    target: Any = saved
    if isinstance(map_location, dict):
        target = map_location.get(saved, map_location.get(str(device(saved)), saved))
    elif map_location is not None:
        target = map_location
    try:
        d = device(target)
    except (RuntimeError, TypeError, ValueError):
        raise SerializationError(f"kiln.load({name!r}): map_location={map_location!r} is not supported; give a "
                                 "device ('cpu', 'cuda'), a kiln.device, or a dict {saved device: device}") from None
    if d.type == "cuda":
        try:
            return _check_device(d)
        except RuntimeError as e:
            raise SerializationError(f"kiln.load({name!r}): a tensor saved on {saved} is to load on {d}, but {e}; "
                                     "pass map_location='cpu' to load it on the CPU") from None
    return d
