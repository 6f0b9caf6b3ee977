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
from kiln.ir import dtypes as dt
from kiln.ir.graph import Graph
from kiln.ir.primitives import get_primitive

from export.onnx_so_models import Spec, StandInExport, cnn, export_module, mlp, run_kiln

CC = shutil.which(kiln.config.get().cc)
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc) to link the shared library")
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "export.md"


def _doc_program() -> str:
    text = DOC.read_text()
    m = re.search(r"<!-- example: run_model\.c -->\n```c\n(.*?)```", text, re.S)
    assert m, "docs/export.md lost its example C program"
    return m.group(1)


def _as_xy(make):
    model, inputs = make()
    return model, [("x",) + inputs[0][1:]]  # the doc's program reads input x, writes output logits


@pytest.mark.parametrize("make", [mlp, cnn], ids=["mlp", "cnn"])
def test_doc_c_program_prints_what_kiln_computes(make, tmp_path):
    model, inputs = _as_xy(make)
    exported = export_module(model, inputs, {"batch": 4})
    lib = write_shared_library(exported, tmp_path, name="model")
    assert lib == tmp_path / "libmodel.so" and (tmp_path / "model.h").exists()
    src = tmp_path / "run_model.c"
    src.write_text(_doc_program())
    exe = tmp_path / "run_model"
    subprocess.run([CC, "-O2", "-o", str(exe), str(src), "-I", str(tmp_path), "-L", str(tmp_path), "-lmodel",
                    f"-Wl,-rpath,{tmp_path}"], check=True, capture_output=True, text=True)
    shape = [4 if isinstance(s, str) else s for s in inputs[0][1]]
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    (tmp_path / "input.f32").write_bytes(x.tobytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KILN"))}
    proc = subprocess.run([str(exe), str(tmp_path / "input.f32")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = np.array([float(v) for v in proc.stdout.split()], np.float32)
    (ref,) = run_kiln(model, [x])
    assert got.size == ref.size
    np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-5, atol=1e-6)


def test_header_documents_shapes_and_declares_one_entry(tmp_path):
    model, inputs = _as_xy(mlp)
    write_shared_library(export_module(model, inputs, {"batch": 4}), tmp_path, name="mlp")
    h = (tmp_path / "mlp.h").read_text()
    assert "input  x: float32[4, 784]" in h and "output logits: float32[4, 10]" in h
    assert "int mlp_run(const float *x, float *logits);" in h
    assert "#define MLP_X_NUMEL 3136" in h and "#define MLP_ERROR_BOUNDS 5" in h
    assert "const char *mlp_error_message(void);" in h


def _load(path):
    lib = ctypes.CDLL(str(path))
    lib.model_error_message.restype = ctypes.c_char_p
    return lib


def _ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def test_dims_fix_a_dynamic_size_and_only_the_api_is_exported(tmp_path):
    model, inputs = _as_xy(mlp)
    exported = export_module(model, inputs, {"batch": 4})
    lib = _load(write_shared_library(exported, tmp_path, name="model", dims={"batch": 5}))
    assert "float32[5, 784]" in (tmp_path / "model.h").read_text()
    x = np.random.default_rng(5).standard_normal((5, 784)).astype(np.float32)
    out = np.full((5, 10), np.nan, np.float32)
    assert lib.model_run(_ptr(x), _ptr(out)) == 0
    np.testing.assert_allclose(out, run_kiln(model, [x])[0], rtol=1e-5, atol=1e-6)
    assert lib.model_error_message() == b""
    for hidden in ("kiln_run", "kiln_error_message", "kiln_blob", exported.graph.name):
        assert not hasattr(lib, hidden), hidden
    with pytest.raises(ValueError, match=r"dims \['time'\] are not dynamic dims"):
        write_shared_library(exported, tmp_path, name="model", dims={"time": 3})


def test_null_and_misaligned_pointers_are_named(tmp_path):
    model, inputs = _as_xy(mlp)
    lib = _load(write_shared_library(export_module(model, inputs, {"batch": 2}), tmp_path))
    x = np.zeros((2, 784), np.float32)
    out = np.zeros((2, 10), np.float32)
    assert lib.model_run(None, _ptr(out)) == 1
    assert lib.model_error_message() == b"model: input 'x' is NULL"
    assert lib.model_run(_ptr(x), None) == 1
    assert lib.model_error_message() == b"model: output 'logits' is NULL"
    raw = np.zeros(2 * 784 * 4 + 8, np.uint8)
    odd = ctypes.c_void_p(raw.ctypes.data + 1)
    assert lib.model_run(odd, _ptr(out)) == 2
    assert b"input 'x'" in lib.model_error_message() and b"element size 4" in lib.model_error_message()


def _gather_export():
    g = Graph("pick")
    x = g.add_input((3, 4), dt.float32, name="x")
    idx = g.add_input((3, 2), dt.int64, name="idx")
    shape, d = get_primitive("gather").abstract_eval([x, idx], {"axis": 1})
    g.set_outputs([g.add_node("gather", [x, idx], {"axis": 1}, shape, d)])
    from kiln.frontend.compile import optimize_graph
    g = optimize_graph(g, "pick")
    return StandInExport(g, {}, [Spec("x", (3, 4), dt.float32), Spec("idx", (3, 2), dt.int64)],
                         [Spec("y", (3, 2), dt.float32)], build=lambda dims: (g, {}, None))


def test_native_bounds_check_failure_is_an_error_code_with_the_message(tmp_path):
    lib = _load(write_shared_library(_gather_export(), tmp_path))
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.zeros((3, 2), np.float32)
    idx = np.array([[0, 3], [1, 2], [2, 1]], np.int64)
    assert lib.model_run(_ptr(x), _ptr(idx), _ptr(y)) == 0
    np.testing.assert_array_equal(y, np.take_along_axis(x, idx, 1))
    idx[1, 0] = 9
    assert lib.model_run(_ptr(x), _ptr(idx), _ptr(y)) == 5
    assert lib.model_error_message().decode() == \
        "gather: index 9 is out of bounds for dimension 1 with size 4 in compiled code"


def test_parallel_program_gives_the_same_result_on_any_thread_count(tmp_path):
    def f(x):
        return (x * 2.0 + 1.0).tanh()
    n = 1 << 21  # above the executor's threading threshold: the program runs on threads
    g = kiln.compile(f)._lookup((kiln.zeros(n),), {}, count=False)[0].graph
    exported = StandInExport(g, {}, [Spec("x", (n,), dt.float32)], [Spec("y", (n,), dt.float32)],
                             build=lambda dims: (g, {}, None))
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
    model, inputs = _as_xy(mlp)
    lib = write_shared_library(export_module(model, inputs, {"batch": 2}), tmp_path)
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]", subprocess.run([readelf, "-d", str(lib)], capture_output=True,
                                                                  text=True, check=True).stdout)
    assert needed and not [n for n in needed if "python" in n.lower() or "llvm" in n.lower()], needed


def test_missing_compiler_bad_name_and_directory_are_named(tmp_path):
    model, inputs = _as_xy(mlp)
    exported = export_module(model, inputs, {"batch": 2})
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
    g = kiln.compile(f)._lookup((kiln.zeros(3, 4),), {}, count=False)[0].graph
    exported = StandInExport(g, {}, [Spec("x", (3, 4), dt.float32)],
                             [Spec(n, (3, 4), dt.float32) for n in ("same", "twice", "again")],
                             build=lambda dims: (g, {}, None))
    lib = _load(write_shared_library(exported, tmp_path))
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    outs = [np.full((3, 4), np.nan, np.float32) for _ in range(3)]
    assert lib.model_run(_ptr(x), *map(_ptr, outs)) == 0
    for got, ref in zip(outs, (x, 2 * x, 2 * x)):
        np.testing.assert_array_equal(got, ref)


def test_lstm_classifier_runs_from_the_library(tmp_path):
    from export.onnx_so_models import lstm
    model, inputs = lstm()
    exported = export_module(model, inputs, {"batch": 3})
    lib = _load(write_shared_library(exported, tmp_path))
    x = np.random.default_rng(4).standard_normal((3,) + tuple(inputs[0][1][1:])).astype(np.float32)
    out = np.zeros((3, 4), np.float32)
    assert lib.model_run(_ptr(x), _ptr(out)) == 0
    np.testing.assert_allclose(out, run_kiln(model, [x])[0], rtol=1e-5, atol=1e-6)


def test_state_that_does_not_match_the_graph_is_named(tmp_path):
    model, inputs = _as_xy(mlp)
    exported = export_module(model, inputs, {"batch": 2})
    exported.state["fc2.weight"] = exported.state["fc2.weight"].astype(np.float64)
    with pytest.raises(ValueError, match=r"state 'fc2.weight' is float64\[64, 128\], the graph expects float32"):
        write_shared_library(exported, tmp_path)
