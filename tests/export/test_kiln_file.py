"""The .kiln file: save/load, versions, and 1,000 seeded corrupted or truncated files, each rejected clearly."""
import builtins
import hashlib
import json
import pickle
import random
import re
import struct

import numpy as np
import pytest

import kiln
import kiln.nn as nn
from kiln.export import ExportFormatError
from kiln.export import kiln_file


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    kiln.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    x = kiln.randn(3, 5)
    prog = kiln.export(model, x, dynamic_shapes=({0: kiln.Dim("batch")},))
    path = tmp_path_factory.mktemp("kiln") / "model.kiln"
    prog.save(path)
    return path, prog, model


def test_save_and_load_give_the_same_program(saved):
    path, prog, model = saved
    again = kiln.load_exported(path)
    assert str(again.graph) == str(prog.graph)
    assert again.metadata == prog.metadata
    assert list(again.state) == list(prog.state)
    for k in prog.state:
        np.testing.assert_array_equal(again.state[k], prog.state[k])
    x = kiln.randn(6, 5)
    np.testing.assert_allclose(again(x).numpy(), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    raw = path.read_bytes()
    assert raw[:8] == kiln_file.MAGIC and b"pickle" not in raw


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_a_file_from_a_newer_kiln_says_so(saved, tmp_path):
    sections = kiln_file.read_file(saved[0])
    p = _write(tmp_path, "future.kiln", kiln_file.pack(sections, version=kiln_file.FORMAT_VERSION + 1))
    v = kiln_file.FORMAT_VERSION
    with pytest.raises(ExportFormatError, match=rf"future.kiln: written in .kiln format version {v + 1}, newer than "
                                                rf"this kiln reads \(up to {v}\); upgrade kiln"):
        kiln.load_exported(p)


def test_a_file_from_an_older_format_says_why_not(saved, tmp_path):
    sections = kiln_file.read_file(saved[0])
    p = _write(tmp_path, "old.kiln", kiln_file.pack(sections, version=0))
    with pytest.raises(ExportFormatError, match=rf"old.kiln: .kiln format version 0 is older than any this kiln "
                                                rf"reads \(1..{kiln_file.FORMAT_VERSION}\); re-export"):
        kiln.load_exported(p)


def _as_version_1(sections: dict) -> bytes:
    """The file as kiln 0.x wrote it in format version 1: affine dim_map entries {token, kind, const, coeffs}."""
    meta = json.loads(sections[b"META"])
    old = []
    for e in meta["dim_map"]:
        terms = {tuple(mono): a for mono, a in e["terms"]}
        assert all(len(mono) <= 1 for mono in terms), "version 1 holds affine entries only"
        old.append({"token": e["token"], "kind": e["kind"], "const": terms.pop((), 0),
                    "coeffs": {mono[0]: a for mono, a in terms.items()}})
    meta.update(format_version=1, dim_map=old)
    return kiln_file.pack(dict(sections) | {b"META": json.dumps(meta).encode()}, version=1)


def test_a_version_1_file_still_loads_and_saves_as_the_current_version(saved, tmp_path):
    path, prog, model = saved
    sections = {k: v for k, v in kiln_file.read_file(path).items()}
    data = _as_version_1(sections)
    assert struct.unpack_from("<I", data, 8)[0] == 1
    old = kiln.load_exported(_write(tmp_path, "v1.kiln", data))
    assert old.metadata["format_version"] == 1 and old.dim_map == prog.dim_map  # read as the same fit
    x = kiln.randn(7, 5)
    np.testing.assert_allclose(old(x).numpy(), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    old.save(tmp_path / "again.kiln")
    assert kiln_file.read_versioned(tmp_path / "again.kiln")[0] == kiln_file.FORMAT_VERSION
    assert kiln.load_exported(tmp_path / "again.kiln").metadata == prog.metadata
    meta = json.loads(kiln_file.read_file(tmp_path / "v1.kiln")[b"META"])
    meta["format_version"] = 2  # header 1, metadata 2: refused
    bad = kiln_file.pack(dict(sections) | {b"META": json.dumps(meta).encode()}, version=1)
    with pytest.raises(ExportFormatError, match=r"metadata says format version 2, the header 1"):
        kiln.load_exported(_write(tmp_path, "mixed.kiln", bad))


def test_plain_faults_name_the_file(tmp_path):
    with pytest.raises(ExportFormatError, match=r"missing.kiln: no such file"):
        kiln.load_exported(tmp_path / "missing.kiln")
    with pytest.raises(ExportFormatError, match=r"bad.kiln: not a .kiln file \(bad magic\)"):
        kiln.load_exported(_write(tmp_path, "bad.kiln", b"PK\x03\x04 not a kiln file"))
    with pytest.raises(ExportFormatError, match=r"empty.kiln: not a .kiln file \(bad magic\)"):
        kiln.load_exported(_write(tmp_path, "empty.kiln", b""))
    with pytest.raises(ExportFormatError, match=r"is a directory"):
        kiln.load_exported(tmp_path)


# ------------------------------------------------------------------------------------------
# the corruption corpus
# ------------------------------------------------------------------------------------------

def _meta_lies(meta: dict, rng: random.Random) -> dict:
    """A copy of the metadata that disagrees with the graph or the tensors in one way."""
    m = json.loads(json.dumps(meta))
    choice = rng.randrange(16)
    if choice == 0:
        m["inputs"][0]["shape"][1] += rng.randint(1, 5)
    elif choice == 1:
        s = rng.choice(m["state"])
        s["shape"] = [d + 1 for d in s["shape"]] or [1]
    elif choice == 2:
        rng.choice(m["state"])["dtype"] = rng.choice(["float64", "int32", "bool"])
    elif choice == 3:
        del m[rng.choice(sorted(m))]
    elif choice == 4:
        m["unexpected"] = 1
    elif choice == 5:
        rng.choice(m["state"])["name"] += "_renamed"
    elif choice == 6:
        m["outputs"].append(dict(m["outputs"][0], name="extra"))
    elif choice == 7:
        m["state_updates"].append("no.such.state")
    elif choice == 8:
        m["dims"]["batch"]["example"] += rng.randint(1, 9)
    elif choice == 9:
        e = rng.choice(m["dim_map"])
        e["token"] += rng.choice([-1, 1])
    elif choice == 10:
        rng.choice(m["dim_map"])["terms"][0][1] += rng.randint(1, 3)
    elif choice == 11:
        m["input_tree"]["items"][0]["items"][0]["index"] = rng.randint(1, 5)
    elif choice == 12:
        m["format"] = "something.else"
    elif choice == 13:
        m["state"].pop(rng.randrange(len(m["state"])))
    elif choice == 14:
        m["inputs"][0]["shape"][0] = "undeclared"
    else:
        m["dim_map"] = []
    return m


def _corruptions(good: bytes, n: int, seed: int = 0):
    """(description, corrupted bytes): byte flips, truncations, appended bytes, header lies, then files whose
    checksums are recomputed so only the structural checks can reject them."""
    rng = random.Random(seed)
    sections = kiln_file.read_sections(good)
    meta = json.loads(sections[b"META"])
    graph = sections[b"GRPH"].decode()
    node_lines = [k for k, ln in enumerate(graph.splitlines()) if ln.strip().startswith("%")]
    head_len = 16 + 44 * len(sections) + 32
    for k in range(n):
        kind = k % 10
        if kind in (0, 1, 2):
            data = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            if bytes(data) == good:
                data[0] ^= 1
            yield "byte flips", bytes(data)
        elif kind in (3, 4):
            yield "truncated", good[:rng.randrange(len(good))]
        elif kind == 5:
            choice = rng.randrange(3)
            if choice == 0:
                yield "appended bytes", good + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:  # a header whose section length lies, with the header checksum recomputed
                data = bytearray(good[:head_len - 32])
                entry = 16 + 44 * rng.randrange(len(sections))
                length = struct.unpack_from("<Q", data, entry + 4)[0]
                struct.pack_into("<Q", data, entry + 4, max(0, length + rng.choice([-7, -1, 1, 5, 1 << 40])))
                yield "header lies about a length", bytes(data) + hashlib.sha256(data).digest() + good[head_len:]
        elif kind == 6:
            s = dict(sections)
            a, b = rng.sample(list(s), 2)
            s[a], s[b] = s[b], s[a]
            yield f"sections {a} and {b} swapped", kiln_file.pack(s)
        elif kind in (7, 8):
            s = dict(sections)
            s[b"META"] = json.dumps(_meta_lies(meta, rng)).encode()
            yield "metadata lies", kiln_file.pack(s)
        else:
            s = dict(sections)
            choice = rng.randrange(4)
            if choice == 0:
                lines = graph.splitlines()
                del lines[rng.choice(node_lines)]
                s[b"GRPH"] = ("\n".join(lines) + "\n").encode()
            elif choice == 1:
                s[b"GRPH"] = graph[:rng.randrange(graph.rindex("}"))].encode()
            elif choice == 2:
                t = s[b"TENS"]
                s[b"TENS"] = t[:rng.randrange(len(t))]
            else:
                m = s[b"META"]
                s[b"META"] = m[:rng.randrange(len(m) - 1)]
            yield "section cut short, checksums recomputed", kiln_file.pack(s)


def test_one_thousand_corrupted_files_are_each_rejected_clearly(saved, tmp_path, monkeypatch):
    good = saved[0].read_bytes()
    ran = []

    def refuse(*a, **k):
        ran.append(a)
        raise AssertionError("loading a .kiln file ran code")
    for mod, name in ((pickle, "loads"), (pickle, "load"), (builtins, "eval"), (builtins, "exec")):
        monkeypatch.setattr(mod, name, refuse)
    path = tmp_path / "damaged.kiln"
    kinds = {}
    for what, data in _corruptions(good, 1000):
        path.write_bytes(data)
        with pytest.raises(ExportFormatError) as info:
            kiln.load_exported(path)
        msg = str(info.value)
        assert msg.startswith(f"{path}: ") and len(msg) > len(str(path)) + 5, (what, msg)
        assert "\n" not in msg, (what, msg)
        kinds[what.split(" and ")[0]] = kinds.get(what.split(" and ")[0], 0) + 1
    assert not ran
    assert sum(kinds.values()) == 1000 and len(kinds) >= 6


@pytest.mark.parametrize("meta,problem", [
    (b"[" * 200000, "metadata section is not JSON"),
    (b"\xff\xfe", "metadata section is not JSON"),
    (b"[1, 2]", "metadata is not a JSON object"),
    (b'{"format": "kiln.ExportedProgram", "format_version": 2}', "metadata: missing keys"),
])
def test_metadata_that_is_not_the_schema_is_rejected(saved, tmp_path, meta, problem):
    sections = dict(kiln_file.read_file(saved[0]))
    sections[b"META"] = meta
    p = _write(tmp_path, "meta.kiln", kiln_file.pack(sections))
    with pytest.raises(ExportFormatError, match=re.escape(f"meta.kiln: {problem}")):
        kiln.load_exported(p)


def test_metadata_claiming_huge_sizes_is_rejected_before_anything_is_allocated(saved, tmp_path):
    sections = dict(kiln_file.read_file(saved[0]))
    meta = json.loads(sections[b"META"])
    meta["state"][0]["shape"] = [10 ** 12, 10 ** 12]
    meta["dims"]["batch"]["example"] = 10 ** 15
    sections[b"META"] = json.dumps(meta).encode()
    with pytest.raises(ExportFormatError, match=r"meta.kiln: "):
        kiln.load_exported(_write(tmp_path, "meta.kiln", kiln_file.pack(sections)))
