"""The emitted CUDA C, compiled as C++ with the CPU harness (a block's threads as fibers taking turns
between barriers, shuffles through memory), agrees with the reference interpreter."""
import numpy as np
import pytest
from kiln.cuda.host_harness import HarnessLibrary, compiler

import kiln
import kiln.nn.functional as F
from kiln.runtime.interpreter import run_graph

pytestmark = pytest.mark.skipif(compiler() is None, reason="the CUDA harness needs g++")

F32, F16, I64 = "float32", "float16", "int64"


def ew_broadcast(x, y):
    return kiln.tanh(x * 2 + y[0])


def ew_math(x):
    return kiln.exp(-x * x) + kiln.erf(x) * kiln.sigmoid(x) - kiln.log1p(kiln.abs(x))


def ew_int(a):
    return (a // 3) * 7 + a % 5, a > 2, (a.float() * 0.5).floor()


def ew_half(x):
    return x * 2 + 1


def red_sum_rows(x):
    return x.sum(dim=1)


def red_max_cols(x):
    return x.max(dim=0).values


def red_argmax(x):
    return x.argmax(dim=1)


def red_mean_all(x):
    return (x - x.mean()).abs().sum()


def red_prod_bool(x):
    return x.prod(dim=1), (x > 0).any(dim=1), (x > -3).all(dim=1)


def row_softmax(x):
    return F.softmax(x, dim=-1)


def row_log_softmax(x):
    return F.log_softmax(x, dim=-1)


def row_layer_norm(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b)


def row_cross_entropy(logits, target):
    return F.cross_entropy(logits, target)


def gather_rows(x, idx):
    return x[idx] * 2


def gather_dim(x, idx):
    return kiln.gather(x, 1, idx)


def scatter_add_rows(base, idx, src):
    return kiln.scatter_add(base, 0, idx, src)


def embedding(w, idx):
    return F.embedding(idx, w).sum(dim=-1)


def mm_epilogue(a, b):
    return kiln.relu(a @ b + 1)


def mm_batched_t(a, b):
    return a @ b.transpose(-1, -2)


def conv(x, w):
    return F.conv2d(x, w, padding=1)


# name -> (function, [(shape, dtype)], input maker)
CASES = {
    "ew_broadcast": (ew_broadcast, [((10, 101), F32), ((5, 101), F32)]),
    "ew_math": (ew_math, [((3, 67), F32)]),
    "ew_int": (ew_int, [((4, 33), I64)]),
    "ew_half": (ew_half, [((9, 17), F16)]),
    "red_sum_rows": (red_sum_rows, [((6, 300), F32)]),
    "red_max_cols": (red_max_cols, [((50, 7), F32)]),
    "red_argmax": (red_argmax, [((5, 40), F32)]),
    "red_mean_all": (red_mean_all, [((1000,), F32)]),
    "red_prod_bool": (red_prod_bool, [((4, 40), F32)]),
    "row_softmax": (row_softmax, [((7, 100), F32)]),
    "row_log_softmax": (row_log_softmax, [((3, 257), F32)]),
    "row_layer_norm": (row_layer_norm, [((5, 64), F32), ((64,), F32), ((64,), F32)]),
    "row_cross_entropy": (row_cross_entropy, [((8, 40), F32), ((8,), I64)]),
    "gather_rows": (gather_rows, [((6, 9), F32), ((11,), I64)]),
    "gather_dim": (gather_dim, [((4, 9), F32), ((4, 5), I64)]),
    "scatter_add_rows": (scatter_add_rows, [((5, 3), F32), ((7, 3), I64), ((7, 3), F32)]),
    "embedding": (embedding, [((10, 8), F32), ((3, 4), I64)]),
    "mm_epilogue": (mm_epilogue, [((9, 70), F32), ((70, 33), F32)]),
    "mm_batched_t": (mm_batched_t, [((2, 5, 40), F32), ((2, 6, 40), F32)]),
    "conv": (conv, [((2, 3, 6, 6), F32), ((4, 3, 3, 3), F32)]),
}
# index inputs: (case, argument) -> upper bound (exclusive) of valid indices
INDEX_BOUNDS = {("row_cross_entropy", 1): 40, ("gather_rows", 1): 6, ("gather_dim", 1): 9,
                ("scatter_add_rows", 1): 5, ("embedding", 1): 10}


def _inputs(name, rng, bad=False):
    xs = []
    for k, (shape, dtype) in enumerate(CASES[name][1]):
        if dtype == I64:
            hi = INDEX_BOUNDS.get((name, k), 20)
            a = rng.integers(0, hi, shape).astype(np.int64) if hi else rng.integers(-9, 9, shape)
            if name == "ew_int":
                a = rng.integers(-50, 50, shape).astype(np.int64)
            if bad and (name, k) in INDEX_BOUNDS:
                a.reshape(-1)[-1] = hi + 3
            xs.append(a)
        else:
            xs.append(rng.standard_normal(shape).astype(dtype))
    return xs


@pytest.fixture(scope="module")
def built():
    execs = {}
    for name, (fn, specs) in CASES.items():
        lowered = kiln.compile(fn, backend="cuda").lower(*[kiln.ShapeDtype(s, d) for s, d in specs])
        (ex,) = lowered._executables()
        execs[name] = ex
    lib = HarnessLibrary([ex.cuda for ex in execs.values()])
    yield lib, execs
    lib.close()


@pytest.mark.parametrize("name", list(CASES))
def test_harness_matches_reference(built, name):
    lib, execs = built
    ex = execs[name]
    xs = _inputs(name, np.random.default_rng(len(name)))
    got = lib.run(ex.cuda, xs)
    ref = run_graph(ex.graph, xs)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape
        tol = 2e-3 if g.dtype == np.float16 else 2e-5
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol, err_msg=name)


def test_modes_cover_every_mapping(built):
    """The cases exercise each way a stage maps onto the GPU, and the 16-byte vector path."""
    _, execs = built
    modes = {name: {ln.mode for ln in ex.cuda.launches} for name, ex in execs.items()}
    assert "rows" in modes["row_softmax"] and "rows" in modes["row_layer_norm"]
    assert modes["ew_broadcast"] == {"threads"} and "block" in modes["red_mean_all"]
    assert "serial" in modes["scatter_add_rows"]
    assert "float4" in execs["ew_broadcast"].cuda.source
    assert "kiln_block_reduce" in execs["row_softmax"].cuda.source


@pytest.mark.parametrize("name", ["gather_rows", "row_cross_entropy", "embedding", "scatter_add_rows"])
def test_bad_index_is_the_cpu_error(built, name):
    lib, execs = built
    ex = execs[name]
    xs = _inputs(name, np.random.default_rng(1), bad=True)
    with pytest.raises(IndexError) as cuda_err:
        lib.run(ex.cuda, xs)
    fn, specs = CASES[name]
    cpu = kiln.compile(fn, backend="llvm")
    with pytest.raises(IndexError) as cpu_err:
        cpu(*[kiln.from_numpy(x) for x in xs])
    assert str(cuda_err.value).split(" (at ")[0] == str(cpu_err.value).split(" (at ")[0]
    assert "out of bounds" in str(cuda_err.value)
    # the library stays usable after a failed check
    good = _inputs(name, np.random.default_rng(2))
    for g, r in zip(lib.run(ex.cuda, good), run_graph(ex.graph, good)):
        np.testing.assert_allclose(g, r, rtol=2e-5, atol=2e-5)


def test_a_stuck_kernel_fails_instead_of_hanging():
    """A kernel whose threads never all reach a barrier: the harness names the kernel, the block and
    the threads on each side, at once (no timeout)."""
    from kiln.codegen.cuda_render import CudaKernel, CudaStage, PRELUDE
    from kiln.codegen.kir import BufferParam
    from kiln.codegen.lower import LoweredProgram, ProgramBuffer
    from kiln.ir import dtypes as dt
    from kiln.runtime.cuda_backend import CudaProgram, Launch
    src = (PRELUDE + '\nextern "C" __global__ void stuck_s0(float* __restrict__ out0, long long* __restrict__ '
           "kiln_status) { if (threadIdx.x == 0) return; __syncthreads(); out0[0] = 1.0f; }\n")
    params = [BufferParam("out0", dt.float32, 1, "w")]
    prog = LoweredProgram("stuck", [], [ProgramBuffer("b0", dt.float32, (1,), "output")], [], [], ["b0"])
    cp = CudaProgram("stuck", prog, src, [CudaKernel("stuck", params, [CudaStage("stuck_s0", "block", 1, 32)], "")],
                     [Launch("stuck_s0", (0,), 1, 32, "block")])
    lib = HarnessLibrary([cp], timeout_s=60.0)
    with pytest.raises(RuntimeError, match=r"stuck_s0 \(grid 1, block 32\): in block 0, 1 threads finished "
                                           r"while 31 wait at __syncthreads"):
        lib.run(cp, [])
