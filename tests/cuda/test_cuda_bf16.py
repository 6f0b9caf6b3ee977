"""bfloat16 storage with float32 computation in the CUDA emitter (elementwise, reductions, row kernels,
the bf16 tensor-core GEMM), checked on the CPU harness.

kiln has no bfloat16 tensor dtype yet, so the kernels come from the float16 programs with every
float16 of their kernel IR replaced by a bfloat16 DType (ml_dtypes' numpy type): the same loads,
float32 arithmetic and stores, in the other 16-bit format. The reference is the kernel-IR evaluator
(kiln/codegen/kir_eval.py) over the same kernels."""
import dataclasses

import numpy as np
import pytest
from kiln.cuda.host_harness import HarnessLibrary, compiler

import kiln
import kiln.nn.functional as F
from kiln.codegen import kir
from kiln.codegen.kir_eval import run_kernel
from kiln.ir import dtypes as dt
from kiln.runtime.cuda_backend import build_cuda_program
from kiln.runtime.nvrtc_compiler import available, compile_cuda

ml_dtypes = pytest.importorskip("ml_dtypes")
pytestmark = pytest.mark.skipif(compiler() is None, reason="the CUDA harness needs g++")
BF16 = dt.DType("bfloat16", "bf16", np.dtype(ml_dtypes.bfloat16), 2, 2)
F16 = "float16"

CASES = {
    "bf_ew": (lambda x, y: kiln.tanh(x * 2 + y) - kiln.exp(-x * x), [((9, 37), F16), ((37,), F16)]),
    "bf_sum_rows": (lambda x: x.sum(dim=1), [((6, 300), F16)]),
    "bf_max_cols": (lambda x: x.max(dim=0).values, [((50, 7), F16)]),
    "bf_softmax": (lambda x: F.softmax(x, dim=-1), [((5, 100), F16)]),
    "bf_layer_norm": (lambda x, w, b: F.layer_norm(x, (64,), w, b), [((5, 64), F16), ((64,), F16), ((64,), F16)]),
    "bf_mm_bias": (lambda a, b, c: kiln.relu(a @ b + c), [((37, 70), F16), ((70, 67), F16), ((67,), F16)]),
    "bf_conv": (lambda x, w: F.conv2d(x, w, padding=1), [((2, 4, 6, 6), F16), ((8, 4, 3, 3), F16)]),
}


def _e(e):
    """An expression with float16 replaced by bfloat16."""
    d = BF16 if e.dtype == dt.float16 else e.dtype
    if isinstance(e, kir.Const):
        return kir.Const(e.value, d)
    if isinstance(e, kir.Var):
        return kir.Var(e.name, d)
    if isinstance(e, kir.Load):
        return kir.Load(e.buf, _e(e.index), d)
    return kir.Op(e.name, tuple(_e(a) for a in e.args), d)


def _s(s):
    if isinstance(s, kir.Loop):
        return kir.Loop(_e(s.var), _e(s.extent), [_s(x) for x in s.body])
    if isinstance(s, (kir.Let, kir.Assign)):
        return type(s)(_e(s.var), _e(s.value))
    if isinstance(s, kir.Store):
        return kir.Store(s.buf, _e(s.index), _e(s.value))
    if isinstance(s, kir.If):
        return kir.If(_e(s.cond), [_s(x) for x in s.then], [_s(x) for x in s.orelse])
    if isinstance(s, kir.Fail):
        return kir.Fail(s.code, tuple(_e(p) for p in s.payload))
    raise TypeError(type(s).__name__)


def _to_bf16(program):
    kernels = [dataclasses.replace(k, params=[dataclasses.replace(p, dtype=BF16 if p.dtype == dt.float16 else p.dtype)
                                              for p in k.params], body=[_s(s) for s in k.body])
               for k in program.kernels]
    buffers = [dataclasses.replace(b, dtype=BF16 if b.dtype == dt.float16 else b.dtype) for b in program.buffers]
    return dataclasses.replace(program, kernels=kernels, buffers=buffers)


def _reference(program, inputs):
    """The program's kernels run by the kernel-IR evaluator, in call order."""
    bufs = {}
    for b in program.buffers:
        if b.role == "const":
            bufs[b.name] = np.asarray(b.data, b.dtype.np_dtype).reshape(-1).copy()
        else:
            bufs[b.name] = np.zeros(b.numel, b.dtype.np_dtype)
    for name, a in zip(program.inputs, inputs):
        bufs[name] = np.ascontiguousarray(a).reshape(-1).copy()
    by_name = {k.name: k for k in program.kernels}
    for kname, args in program.calls:
        k = by_name[kname]
        run_kernel(k, {p.name: bufs[a] for p, a in zip(k.params, args)})
    return [bufs[n].reshape(program.buffer(n).shape) for n in program.outputs]


@pytest.fixture(scope="module")
def built():
    progs = {}
    for name, (fn, specs) in CASES.items():
        def f(*a, fn=fn):
            return fn(*a)
        f.__name__ = name
        (ex,) = kiln.compile(f, backend="cuda").lower(*[kiln.ShapeDtype(s, d) for s, d in specs])._executables()
        progs[name] = build_cuda_program(_to_bf16(ex.program))
    lib = HarnessLibrary(list(progs.values()))
    yield lib, progs
    lib.close()


def _inputs(name, rng):
    return [rng.standard_normal(s).astype(np.float32).astype(BF16.np_dtype) for s, _ in CASES[name][1]]


@pytest.mark.parametrize("name", list(CASES))
def test_bf16_matches_the_kernel_ir_reference(built, name):
    lib, progs = built
    cp = progs[name]
    xs = _inputs(name, np.random.default_rng(len(name)))
    got = lib.run(cp, xs)
    ref = _reference(cp.program, xs)
    for g, r in zip(got, ref):
        assert g.dtype == BF16.np_dtype and g.shape == r.shape
        g32, r32 = g.astype(np.float32), r.astype(np.float32)
        scale = max(1.0, float(np.max(np.abs(r32))))
        # bfloat16 keeps 8 bits: one rounding of the output is 2^-8 relative; the reference rounds
        # float16-style intermediates to bfloat16 too, so allow a few
        np.testing.assert_allclose(g32, r32, rtol=3e-2, atol=3e-2 * scale, err_msg=name)


def test_bf16_storage_helpers_and_gemm_kind(built):
    _, progs = built
    assert "kiln_bf2f(" in progs["bf_ew"].source and "kiln_f2bf(" in progs["bf_ew"].source
    assert "kiln_h2f(" not in progs["bf_ew"].source.split("kiln_wmma")[-1]
    assert "gemm (bf16)" in progs["bf_mm_bias"].source and "kiln_wmma::frag_a_bf16" in progs["bf_mm_bias"].source
    assert "gemm (bf16)" in progs["bf_conv"].source


def test_bf16_rounding_is_to_nearest_even(built):
    """The store rounds as ml_dtypes does (round to nearest, ties to even; nan stays nan)."""
    lib, progs = built
    cp = progs["bf_sum_rows"]
    x = np.zeros((6, 300), np.float32)  # bfloat16-exact values whose float32 row sums are ties and near-ties
    x[:, 0] = [1, 1 + 2 ** -7, 1, 1, np.inf, -1]
    x[:, 1] = [2 ** -8, 2 ** -8, 2 ** -9, 2 ** -8 + 2 ** -10, 1, np.nan]
    xs = [x.astype(BF16.np_dtype)]
    got = lib.run(cp, xs)[0].astype(np.float32)
    want = x.sum(axis=1).astype(BF16.np_dtype).astype(np.float32)
    assert list(want[:4]) == [1.0, 1 + 2 ** -6, 1.0, 1 + 2 ** -7]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])


@pytest.mark.skipif(available() is None, reason="needs NVRTC (kiln[cuda]) or nvcc")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_bf16_kernels_compile_with_nvrtc(built, arch):
    _, progs = built
    from kiln.codegen.cuda_render import PRELUDE
    src = PRELUDE + "\n".join(cp.source[len(PRELUDE):] for cp in progs.values())
    assert "mma.sync" in compile_cuda(src, "bf16.cu", arch=arch, cubin=False).ptx
