"""The tiled GEMM stages (kiln/codegen/cuda_gemm.py): matmul and convolution (forward, input and
weight gradients) run on the CPU harness -- wmma and cp.async emulated in cuda_host.h -- and agree
with the reference interpreter; NVRTC compiles every one for sm_80 and sm_90; TF32 only when allowed."""
import numpy as np
import pytest
from kiln.cuda.host_harness import HarnessLibrary, compiler

import kiln
import kiln.nn.functional as F
from kiln.codegen.lower import lower_plan
from kiln.passes.fusion import plan_fusion
from kiln.runtime import backend as be
from kiln.runtime.cuda_backend import build_cuda_program
from kiln.runtime.interpreter import run_graph
from kiln.runtime.nvrtc_compiler import available, compile_cuda

F32, F16 = "float32", "float16"
needs_gxx = pytest.mark.skipif(compiler() is None, reason="the CUDA harness needs g++")


def mm(a, b):
    return a @ b


def mm_bias_relu(a, b, c):
    return kiln.relu(a @ b + c)


def mm_gelu_half_out(a, b):
    return F.gelu(a @ b).half()


def mm_at_b(a, b):
    return a.transpose(0, 1) @ b


def mm_a_bt(a, b):
    return a @ b.transpose(0, 1)


def bmm_broadcast(a, b):
    return kiln.tanh(a @ b) * 2


def conv_plain(x, w):
    return F.conv2d(x, w)


def conv_strided(x, w, b):
    return kiln.relu(F.conv2d(x, w, b, stride=2, padding=1))


def conv_dilated(x, w):
    return F.conv2d(x, w, padding=2, dilation=2)


def conv_groups(x, w):
    return F.conv2d(x, w, stride=(1, 2), padding=(1, 0), groups=3)


def conv1d_depthwise(x, w):
    return F.conv1d(x, w, padding=1, groups=4)


# name -> (function, [(shape, dtype)], gemm kind)
CASES = {
    "mm_m1": (mm, [((1, 3), F32), ((3, 2), F32)]),
    "mm_k1": (mm, [((5, 1), F32), ((1, 4), F32)]),
    "mm_primes": (mm, [((7, 13), F32), ((13, 5), F32)]),
    "mm_exact_tiles": (mm, [((64, 32), F32), ((32, 128), F32)]),
    "mm_edges_bias_relu": (mm_bias_relu, [((67, 131), F32), ((131, 70), F32), ((70,), F32)]),
    "mm_matvec": (mm, [((1, 100), F32), ((100, 3), F32)]),
    "mm_gelu_half_out": (mm_gelu_half_out, [((20, 33), F32), ((33, 17), F32)]),
    "mm_at_b": (mm_at_b, [((19, 23), F32), ((19, 66), F32)]),
    "mm_a_bt": (mm_a_bt, [((23, 19), F32), ((66, 19), F32)]),
    "bmm_broadcast": (bmm_broadcast, [((3, 2, 9, 17), F32), ((2, 17, 11), F32)]),
    "mm_f16": (mm, [((37, 70), F16), ((70, 67), F16)]),
    "mm_f16_t_bias": (lambda a, b, c: a @ b.transpose(0, 1) + c, [((5, 48), F16), ((33, 48), F16), ((33,), F16)]),
    "bmm_f16": (lambda a, b: a @ b, [((2, 17, 40), F16), ((2, 40, 9), F16)]),
    "conv_plain": (conv_plain, [((1, 2, 5, 5), F32), ((3, 2, 3, 3), F32)]),
    "conv_strided": (conv_strided, [((2, 3, 9, 8), F32), ((5, 3, 3, 3), F32), ((5,), F32)]),
    "conv_dilated": (conv_dilated, [((2, 2, 7, 7), F32), ((4, 2, 3, 3), F32)]),
    "conv_groups": (conv_groups, [((2, 6, 6, 7), F32), ((9, 2, 3, 2), F32)]),
    "conv1d_depthwise": (conv1d_depthwise, [((3, 4, 20), F32), ((8, 1, 3), F32)]),
    "conv_f16": (conv_plain, [((2, 4, 6, 6), F16), ((8, 4, 3, 3), F16)]),
}
# a reduction of one element is no reduction in the kernel IR: an elementwise product, no gemm stage
NO_GEMM = {"mm_k1"}
KIND = {"mm_f16": "f16", "mm_f16_t_bias": "f16", "bmm_f16": "f16", "conv_f16": "f16"}


def _cuda_program(fn, specs, tf32: bool):
    lowered = kiln.compile(fn, backend="cuda").lower(*[kiln.ShapeDtype(s, d) for s, d in specs])
    (ex,) = lowered._executables()
    return ex.graph, build_cuda_program(ex.program, allow_tf32=tf32)


def _inputs(specs, rng):
    return [rng.standard_normal(s).astype(d) for s, d in specs]


@pytest.fixture(scope="module")
def built():
    progs = {}
    for tf32 in (False, True):
        for name, (fn, specs) in CASES.items():
            fn_named = _rename(fn, f"{name}_{'tf32' if tf32 else 'plain'}")
            progs[name, tf32] = _cuda_program(fn_named, specs, tf32)
    for name, graph in _training_graphs().items():
        cp = build_cuda_program(lower_plan(plan_fusion(graph), f"kiln_{name}", cpu_blocking=False))
        progs[name, False] = (graph, cp)
    lib = HarnessLibrary([cp for _, cp in progs.values()]) if compiler() else None
    yield lib, progs
    if lib is not None:
        lib.close()


def _rename(fn, name):
    def f(*a):
        return fn(*a)
    f.__name__ = name
    return f


# the convolution's training step: input gradient and weight gradient are convolutions too
GRAD_CASES = {
    "grad_conv_strided": ([((2, 3, 9, 8), F32), ((4, 3, 3, 3), F32)], dict(stride=2, padding=1)),
    "grad_conv_groups": ([((2, 4, 7, 7), F32), ((6, 2, 3, 3), F32)], dict(padding=1, dilation=2, groups=2)),
}


def _training_graphs():
    """The joint forward+backward graphs of a conv loss (as kiln.value_and_grad compiles them)."""
    graphs = {}
    compile_llvm = be.LLVMBackend.compile
    for name, (specs, kw) in GRAD_CASES.items():
        seen = []

        def record(self, graph, seen=seen):
            seen.append(graph)
            return compile_llvm(self, graph)

        def loss(x, w, kw=kw):
            return (F.conv2d(x, w, **kw) ** 2).sum()
        be.LLVMBackend.compile = record
        try:
            xs = [kiln.from_numpy(a) for a in _inputs(specs, np.random.default_rng(0))]
            kiln.value_and_grad(loss, argnums=(0, 1))(*xs)
        finally:
            be.LLVMBackend.compile = compile_llvm
        graphs[name] = seen[-1]
    return graphs


def _tolerance(name, tf32):
    if name in KIND or "half" in name:
        return 2e-2
    return 2e-2 if tf32 else 1e-4


@needs_gxx
@pytest.mark.parametrize("tf32", [False, True], ids=["fp32", "tf32"])
@pytest.mark.parametrize("name", list(CASES))
def test_gemm_matches_reference(built, name, tf32):
    lib, progs = built
    graph, cp = progs[name, tf32]
    assert ("gemm" in {ln.mode for ln in cp.launches}) == (name not in NO_GEMM), name
    xs = _inputs(CASES[name][1], np.random.default_rng(len(name)))
    got = lib.run(cp, xs)
    ref = run_graph(graph, xs)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape
        tol = _tolerance(name, tf32)
        np.testing.assert_allclose(g.astype(np.float64), r.astype(np.float64), rtol=tol, atol=tol, err_msg=name)


@needs_gxx
@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_conv_gradients_match_reference(built, name):
    lib, progs = built
    graph, cp = progs[name, False]
    gemms = [ln for ln in cp.launches if ln.mode == "gemm"]
    assert len(gemms) >= 3, [ln.mode for ln in cp.launches]  # forward, input grad, weight grad
    xs = _inputs(GRAD_CASES[name][0], np.random.default_rng(3))
    got = lib.run(cp, xs)
    ref = run_graph(graph, xs)
    assert len(got) == len(ref) >= 3
    for g, r in zip(got, ref):
        scale = max(1.0, float(np.max(np.abs(r))))
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_tf32_only_when_allowed(built):
    _, progs = built
    for name in set(CASES) - NO_GEMM:
        plain, tf32 = progs[name, False][1].source, progs[name, True][1].source
        expected = KIND.get(name, "simt")
        assert f"gemm ({expected})" in plain, name
        assert "to_tf32(" not in plain.split("namespace kiln_wmma")[-1], name
        if name not in KIND:
            assert "gemm (tf32)" in tf32 and "kiln_wmma::to_tf32(" in tf32, name
        else:  # half inputs use their own tensor-core path whatever the switch
            assert tf32.count("gemm (tf32)") == 0, name


def test_allow_tf32_switch_rerenders_the_program():
    from kiln.backends import cuda as settings
    f = kiln.compile(_rename(mm, "mm_switch"), backend="cuda")
    (ex,) = f.lower(kiln.ShapeDtype((33, 40)), kiln.ShapeDtype((40, 20)))._executables()
    assert settings.matmul.allow_tf32 is False and kiln.get_float32_matmul_precision() == "highest"
    assert "gemm (simt)" in ex.cuda.source
    try:
        kiln.backends.cuda.matmul.allow_tf32 = True
        assert kiln.get_float32_matmul_precision() == "high"
        assert "gemm (tf32)" in ex.cuda.source and ex.cuda.allow_tf32
        kiln.set_float32_matmul_precision("highest")
        assert "gemm (simt)" in ex.cuda.source and not settings.matmul.allow_tf32
        kiln.set_float32_matmul_precision("medium")
        assert settings.matmul.allow_tf32
    finally:
        kiln.set_float32_matmul_precision("highest")
    with pytest.raises(ValueError, match="precision must be one of highest, high, medium"):
        kiln.set_float32_matmul_precision("fast")
    with pytest.raises(TypeError, match="allow_tf32 must be True or False"):
        kiln.backends.cuda.matmul.allow_tf32 = 1


def test_tile_layout_of_each_kind(built):
    _, progs = built
    simt = progs["mm_edges_bias_relu", False][1]
    (ln,) = simt.launches
    assert (ln.mode, ln.block, ln.grid) == ("gemm", 256, 2 * 2)   # 67x70 in 64x64 tiles
    assert "kiln_cp_async4(" in simt.source                       # float32 loads go by cp.async
    half = progs["mm_f16", False][1]
    assert half.launches[0].block == 128 and "kiln_wmma::frag_a_f16" in half.source
    assert "kiln_cp_async4(&" not in half.source.split("namespace kiln_wmma")[-1].split("kiln_cp_async_commit")[-1]
    groups = progs["conv_groups", False][1]
    assert "groups 3" in groups.source and "kiln_g * 3LL" in groups.source


@pytest.mark.skipif(available() is None, reason="needs NVRTC (kiln[cuda]) or nvcc")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_gemm_kernel_compiles_with_nvrtc(built, arch):
    _, progs = built
    from kiln.codegen.cuda_render import PRELUDE
    body = "\n".join(cp.source[len(PRELUDE):] for _, cp in progs.values())
    # sm_90 (the H200's) through NVVM's optimiser as a device run compiles it; sm_80 takes the same
    # source paths (__CUDA_ARCH__ >= 800), so -G (no optimisation, ~40% less time) checks its PTX
    opts = ("-G",) if arch == "sm_80" else ()
    c = compile_cuda(PRELUDE + body, "gemm_sweep.cu", arch=arch, cubin=False, extra_options=opts)
    assert "mma.sync" in c.ptx or "wmma.mma" in c.ptx      # the tensor-core kernels
    assert "cp.async" in c.ptx


@needs_gxx
def test_tf32_rounds_the_inputs(built):
    """The TF32 path really multiplies 10-bit-mantissa inputs (the harness truncates as the hardware
    rounds): its result differs from float32's, within TF32's error."""
    lib, progs = built
    xs = _inputs(CASES["mm_primes"][1], np.random.default_rng(5))
    plain = lib.run(progs["mm_primes", False][1], xs)[0]
    tf32 = lib.run(progs["mm_primes", True][1], xs)[0]
    exact = xs[0].astype(np.float64) @ xs[1].astype(np.float64)
    assert np.max(np.abs(plain - exact)) < 1e-5
    err = np.max(np.abs(tf32 - exact))
    assert 1e-5 < err < 2e-2


def test_tile_loads_follow_the_contiguous_dimension(built):
    """Consecutive threads load consecutive addresses: along k for a row-major a and a transposed b
    (b.T is contiguous along k), along m for a transposed a."""
    _, progs = built

    def mapping(name):
        src = progs[name, False][1].source
        return ("kiln_mm = kiln_e % 64" in src, "kiln_kk = kiln_e % 16, kiln_nn" in src)
    assert mapping("mm_primes") == (False, False)    # a: along k; b: along n
    assert mapping("mm_at_b") == (True, False)       # a.T: along m
    assert mapping("mm_a_bt") == (False, True)       # b.T: along k


@pytest.mark.parametrize("tf32", [False, True], ids=["fp32", "tf32"])
@pytest.mark.parametrize("name", ["mm_edges_bias_relu", "mm_a_bt", "bmm_broadcast", "mm_f16", "conv_strided",
                                  "conv_groups", "conv_f16"])
def test_gemm_on_the_device_matches_the_cpu(needs_gpu, name, tf32):
    fn, specs = CASES[name]
    xs = [kiln.from_numpy(a) for a in _inputs(specs, np.random.default_rng(7))]
    want = kiln.compile(_rename(fn, f"cpu_{name}"))(*xs).numpy()
    kiln.backends.cuda.matmul.allow_tf32 = tf32
    try:
        got = kiln.compile(_rename(fn, f"dev_{name}"), backend="cuda")(*xs).numpy()
    finally:
        kiln.backends.cuda.matmul.allow_tf32 = False
    tol = _tolerance(name, tf32)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)
