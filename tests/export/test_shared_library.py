"""The ahead-of-time shared library: docs/export.md's C program, compiled with cc against the
libraries of the examples' MLP and CNN, prints what kiln computes; the C runtime's checks
(NULL, alignment, native bounds checks) come back as error codes with messages."""
import ctypes
import os
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

import kiln
from kiln.export.shared_library import SharedLibraryError, c_compiler, write_shared_library

from export.example_models import export_classifier

CC = shutil.which(kiln.config.get().cc)
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc) to link the shared library")
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "export.md"


def _doc_program() -> str:
    text = DOC.read_text()
    m = re.search(r"<!-- example: run_model\.c -->\n```c\n(.*?)```", text, re.S)
    assert m, "docs/export.md lost its example C program"
    return m.group(1)


def _kiln(exported, *arrays):
    out = exported(*arrays)
    return out.numpy() if not isinstance(out, tuple) else tuple(o.numpy() for o in out)


def _mlp(batch: int = 4):
    return export_classifier("mlp_classifier.py", batch=batch)[1]


@pytest.mark.parametrize("example,through_file", [("mlp_classifier.py", False), ("cnn.py", False),
                                                  ("cnn.py", True)], ids=["mlp", "cnn", "cnn-saved-and-loaded"])
def test_doc_c_program_prints_what_kiln_computes(example, through_file, tmp_path):
    _, exported, shape = export_classifier(example, batch=4)
    if through_file:  # save -> kiln.load_exported -> to_shared_library
        exported.save(tmp_path / "model.kiln")
        exported = kiln.load_exported(tmp_path / "model.kiln")
    lib = exported.to_shared_library(tmp_path, name="model")
    assert lib == tmp_path / "libmodel.so" and (tmp_path / "model.h").exists()
    src = tmp_path / "run_model.c"
    src.write_text(_doc_program())
    exe = tmp_path / "run_model"
    subprocess.run([CC, "-O2", "-o", str(exe), str(src), "-I", str(tmp_path), "-L", str(tmp_path), "-lmodel",
                    f"-Wl,-rpath,{tmp_path}"], check=True, capture_output=True, text=True)
    x = np.random.default_rng(3).standard_normal((4,) + shape).astype(np.float32)
    (tmp_path / "input.f32").write_bytes(x.tobytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KILN"))}
    proc = subprocess.run([str(exe), str(tmp_path / "input.f32")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = np.array([float(v) for v in proc.stdout.split()], np.float32)
    ref = _kiln(exported, x)
    assert got.size == ref.size
    np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-5, atol=1e-6)


def test_header_documents_shapes_and_declares_one_entry(tmp_path):
    write_shared_library(_mlp(4), tmp_path, name="mlp")
    h = (tmp_path / "mlp.h").read_text()
    assert "input  x: float32[4, 784]" in h and "output output0: float32[4, 10]" in h
    assert "int mlp_run(const float *x, float *output0);" in h
    assert "#define MLP_X_NUMEL 3136" in h and "#define MLP_ERROR_BOUNDS 5" in h
    assert "const char *mlp_error_message(void);" in h


def _load(path):
    lib = ctypes.CDLL(str(path))
    lib.model_error_message.restype = ctypes.c_char_p
    return lib


def _ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def test_dims_fix_a_dynamic_size_and_only_the_api_is_exported(tmp_path):
    exported = _mlp(4)
    lib = _load(write_shared_library(exported, tmp_path, name="model", dims={"batch": 5}))
    assert "float32[5, 784]" in (tmp_path / "model.h").read_text()
    x = np.random.default_rng(5).standard_normal((5, 784)).astype(np.float32)
    out = np.full((5, 10), np.nan, np.float32)
    assert lib.model_run(_ptr(x), _ptr(out)) == 0
    np.testing.assert_allclose(out, _kiln(exported, x), rtol=1e-5, atol=1e-6)
    assert lib.model_error_message() == b""
    for hidden in ("kiln_run", "kiln_error_message", "kiln_blob", exported.graph.name):
        assert not hasattr(lib, hidden), hidden
    with pytest.raises(ValueError, match=r"dims \['time'\] are not dynamic dims"):
        write_shared_library(exported, tmp_path, name="model", dims={"time": 3})


def test_null_and_misaligned_pointers_are_named(tmp_path):
    lib = _load(write_shared_library(_mlp(2), tmp_path))
    x = np.zeros((2, 784), np.float32)
    out = np.zeros((2, 10), np.float32)
    assert lib.model_run(None, _ptr(out)) == 1
    assert lib.model_error_message() == b"model: input 'x' is NULL"
    assert lib.model_run(_ptr(x), None) == 1
    assert lib.model_error_message() == b"model: output 'output0' is NULL"
    raw = np.zeros(2 * 784 * 4 + 8, np.uint8)
    odd = ctypes.c_void_p(raw.ctypes.data + 1)
    assert lib.model_run(odd, _ptr(out)) == 2
    assert b"input 'x'" in lib.model_error_message() and b"element size 4" in lib.model_error_message()


def _gather_export():
    return kiln.export(lambda x, idx: x.gather(1, idx), kiln.zeros(3, 4), kiln.zeros(3, 2, dtype=kiln.int64))


def test_native_bounds_check_failure_is_an_error_code_with_the_message(tmp_path):
    lib = _load(write_shared_library(_gather_export(), tmp_path))
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.zeros((3, 2), np.float32)
    idx = np.array([[0, 3], [1, 2], [2, 1]], np.int64)
    assert lib.model_run(_ptr(x), _ptr(idx), _ptr(y)) == 0
    np.testing.assert_array_equal(y, np.take_along_axis(x, idx, 1))
    idx[1, 0] = 9
    assert lib.model_run(_ptr(x), _ptr(idx), _ptr(y)) == 5
    line = _gather_export.__code__.co_firstlineno + 1
    assert lib.model_error_message().decode() == ("gather: index 9 is out of bounds for dimension 1 with size 4 in "
                                                  f"compiled code (at {__file__}:{line})")


def test_parallel_program_gives_the_same_result_on_any_thread_count(tmp_path):
    def f(x):
        return (x * 2.0 + 1.0).tanh()
    n = 1 << 21  # above the executor's threading threshold: the program runs on threads
    exported = kiln.export(f, kiln.zeros(n))
    lib = _load(write_shared_library(exported, tmp_path))
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    ref = kiln.compile(f)(kiln.tensor(x)).numpy()
    for threads in (1, 3):
        lib.model_set_num_threads(threads)
        y = np.zeros(n, np.float32)
        assert lib.model_run(_ptr(x), _ptr(y)) == 0
        np.testing.assert_array_equal(y, ref)


def test_library_needs_no_python_or_llvm(tmp_path):
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("no readelf")
    lib = write_shared_library(_mlp(2), tmp_path)
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]", subprocess.run([readelf, "-d", str(lib)], capture_output=True,
                                                                  text=True, check=True).stdout)
    assert needed and not [n for n in needed if "python" in n.lower() or "llvm" in n.lower()], needed


def test_missing_compiler_bad_name_and_directory_are_named(tmp_path):
    exported = _mlp(2)
    with pytest.raises(ValueError, match="name must be a C identifier"):
        write_shared_library(exported, tmp_path, name="my-model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_shared_library(exported, tmp_path / "nowhere")
    with kiln.config.override(cc="kiln-no-such-cc"):
        with pytest.raises(SharedLibraryError, match=r"'kiln-no-such-cc' was not found on PATH: install one"):
            c_compiler()
        with pytest.raises(SharedLibraryError, match="apt-get install gcc"):
            write_shared_library(exported, tmp_path)


def test_outputs_that_are_an_input_or_repeated_are_copied(tmp_path):
    def f(x):
        y = x * 2.0
        return x, y, y
    exported = kiln.export(f, kiln.zeros(3, 4))
    lib = _load(write_shared_library(exported, tmp_path))
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    outs = [np.full((3, 4), np.nan, np.float32) for _ in range(3)]
    assert lib.model_run(_ptr(x), *map(_ptr, outs)) == 0
    for got, ref in zip(outs, (x, 2 * x, 2 * x)):
        np.testing.assert_array_equal(got, ref)


def test_lstm_classifier_runs_from_the_library(tmp_path):
    _, exported, shape = export_classifier("lstm_classifier.py", batch=3)
    lib = _load(exported.to_shared_library(tmp_path))
    x = np.random.default_rng(4).standard_normal((3,) + shape).astype(np.float32)
    out = np.zeros((3, 4), np.float32)
    assert lib.model_run(_ptr(x), _ptr(out)) == 0
    np.testing.assert_allclose(out, _kiln(exported, x), rtol=1e-5, atol=1e-6)


def test_state_that_does_not_match_the_graph_is_named(tmp_path):
    exported = _mlp(2)
    exported.state["fc2.weight"] = exported.state["fc2.weight"].astype(np.float64)
    with pytest.raises(ValueError, match=r"state 'fc2.weight' is float64\[64, 128\], the graph expects float32"):
        write_shared_library(exported, tmp_path)


@pytest.mark.parametrize("example", ["cnn.py", "lstm_classifier.py"], ids=["cnn", "lstm"])
def test_jit_and_library_place_the_buffers_alike(example):
    from kiln.runtime.llvm_backend import compile_graph, compile_object
    _, exported, _ = export_classifier(example, batch=2)
    jit = compile_graph(exported.graph)
    native = compile_object(exported.graph)
    at = {k: a.ctypes.data for k, a in enumerate(jit._template) if a is not None and jit._roles[k] != "const"}
    assert at and set(at) == set(native.workspace)
    base, lo = min(at.values()), min(native.workspace.values())
    assert {k: a - base for k, a in at.items()} == {k: o - lo for k, o in native.workspace.items()}
    shared = len(set(native.workspace.values())) < len(native.workspace)
    assert shared or example == "cnn.py"  # the LSTM's step values share arenas
