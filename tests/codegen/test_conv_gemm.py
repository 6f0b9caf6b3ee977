"""Convolution as register-blocked implicit GEMM (kiln/codegen/conv_lower.py, passes/conv_padding.py).

Compiled (LLVM) convolutions against the reference interpreter over random shapes — 1-, 2- and
3-d; stride, padding, dilation, groups; sizes 1 and primes; batch 1 — in float32 and float64,
through each block kind (rows, taps, and the generic element-by-element lowering); their
gradients against float64 finite differences; pooling forward and backward compiled against
PyTorch; and the facts the speed rests on (the block chosen, vector FMAs in the optimized IR).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.codegen.conv_lower import ConvBlock, plan_conv
from kiln.ir import dtypes as dt
from kiln.ir.graph import Graph
from kiln.passes.conv_padding import explicit_conv_padding

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
SIZES = [1, 2, 3, 5, 7, 11, 13, 17, 19]  # 1 and primes: no block divides them evenly


@st.composite
def conv_cfg(draw):
    nd = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.sampled_from([1, 2, 3, 5]))
    og = draw(st.sampled_from([1, 2, 3, 4, 8]))
    k = tuple(draw(st.sampled_from([1, 2, 3])) for _ in range(nd))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(nd))
    big = 19 if nd == 1 else (17 if nd == 2 else 7)  # the last dim may reach a vector of positions
    size = []
    for d, (kk, dl, p) in enumerate(zip(k, dil, pad)):
        lo = max(1, dl * (kk - 1) + 1 - 2 * p)
        top = big if d == nd - 1 else 7
        size.append(draw(st.sampled_from([s for s in SIZES if lo <= s <= top] or [lo])))
    n = draw(st.sampled_from([1, 2]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return nd, groups, cg, og, k, dil, stride, pad, tuple(size), n, dtype


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(conv_cfg())
def test_compiled_conv_matches_reference(cfg):
    nd, groups, cg, og, k, dil, stride, pad, size, n, dtype = cfg
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, groups * cg) + size).astype(dtype)
    w = rng.standard_normal((groups * og, cg) + k).astype(dtype)
    b = rng.standard_normal(groups * og).astype(dtype)

    def f(x, w, b):  # bias + relu: an epilogue written per accumulator
        return F.relu(CONV[nd](x, w, b, stride=stride, padding=pad, dilation=dil, groups=groups))

    args = [kiln.from_numpy(a) for a in (x, w, b)]
    got = kiln.compile(f, backend="llvm")(*args).numpy()
    ref = kiln.compile(f, backend="reference")(*args).numpy()
    np.testing.assert_allclose(got, ref, **_tol(dtype))


@settings(max_examples=12, deadline=None, derandomize=True)
@given(conv_cfg())
def test_compiled_conv_gradients_match_reference(cfg):
    """The whole backward (input gradient: the transposed conv; weight gradient: a conv with a
    huge kernel and a tiny output, the taps blocks) compiled, against the reference backend."""
    nd, groups, cg, og, k, dil, stride, pad, size, n, dtype = cfg
    rng = np.random.default_rng(1)
    x = kiln.from_numpy(rng.standard_normal((n, groups * cg) + size).astype(dtype))
    w = kiln.from_numpy(rng.standard_normal((groups * og, cg) + k).astype(dtype))
    conv = CONV[nd]
    out_shape = conv(x, w, stride=stride, padding=pad, dilation=dil, groups=groups).shape
    ct = kiln.from_numpy(rng.standard_normal(tuple(out_shape)).astype(dtype))

    def grads(x, w, ct):
        y = conv(x, w, stride=stride, padding=pad, dilation=dil, groups=groups)
        return kiln.autograd.grad((y * ct).sum(), [x, w])

    xr, wr = x.requires_grad_(True), w.requires_grad_(True)
    got = kiln.compile(grads, backend="llvm")(xr, wr, ct)
    ref = kiln.compile(grads, backend="reference")(xr, wr, ct)
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a.numpy(), r.numpy(), **_tol(dtype))


@pytest.mark.parametrize("xs,ws,kind", [
    ((32, 16, 18, 18), (16, 16, 16, 16), "taps"),   # a weight gradient: kernel = the output positions
    ((3, 8, 34, 34), (8, 8, 32, 32), "taps"),
    ((2, 4, 40), (6, 4, 24), "taps"),               # 1-d, a kernel run of 8 (a remainder of 16)
])
def test_weight_gradient_shaped_convs(xs, ws, kind):
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float64):
        x, w = (kiln.from_numpy(rng.standard_normal(s).astype(dtype)) for s in (xs, ws))
        f = lambda x, w: CONV[len(xs) - 2](x, w)  # noqa: E731
        lowered = kiln.compile(f, backend="llvm")
        np.testing.assert_allclose(lowered(x, w).numpy(), kiln.compile(f, backend="reference")(x, w).numpy(),
                                   **_tol(dtype))
    assert "[conv]" in lowered.lower(x, w).as_text("kernels")


@pytest.mark.parametrize("xs,ws", [
    ((4, 8, 18, 18), (16, 8, 3, 3)),    # rows, with a tail of 2 positions per row
    ((1, 8, 18, 18), (16, 8, 3, 3)),    # batch 1: the threads split the channel blocks
    ((8, 4, 18, 18), (8, 4, 16, 16)),   # taps
])
def test_large_epilogue_runs_over_scratch(xs, ws):
    """An epilogue of more than EPILOGUE_UNROLL_LIMIT nodes (an optimizer update fused into a weight
    gradient) runs in a second phase over the products in a scratch buffer."""
    rng = np.random.default_rng(6)
    x, w = (kiln.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in (xs, ws))
    out_shape = F.conv2d(x, w).shape
    p, m = (kiln.from_numpy(rng.standard_normal(tuple(out_shape)).astype(np.float32)) for _ in range(2))

    def f(x, w, p, m):
        g = F.conv2d(x, w)
        buf = m * 0.9 + g
        return p - 0.01 * (buf * 0.5 + g * 0.5), buf  # 6 nodes downstream of the conv

    got = kiln.compile(f, backend="llvm")
    text = got.lower(x, w, p, m).as_text("kernels")
    assert re.search(r"s\d+: rw f32", text), "the products should go through a scratch buffer"
    for a, r in zip(got(x, w, p, m), kiln.compile(f, backend="reference")(x, w, p, m)):
        np.testing.assert_allclose(a.numpy(), r.numpy(), rtol=2e-4, atol=2e-4)


def test_conv_gradients_match_finite_differences():
    """float64 central differences of a strided, dilated, grouped, padded conv, compiled."""
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((1, 4, 7, 6))
    w0 = rng.standard_normal((6, 2, 3, 2))
    kw = dict(stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=2)
    ct = rng.standard_normal((1, 6, 5, 6))  # (7 + 4 - 3) // 2 + 1, 6 + 2 - 3 + 1

    def loss(x, w):
        return (F.conv2d(x, w, **kw) * kiln.from_numpy(ct)).sum()

    grads = kiln.compile(lambda x, w: kiln.autograd.grad(loss(x, w), [x, w]), backend="llvm")
    gx, gw = grads(kiln.from_numpy(x0).requires_grad_(True), kiln.from_numpy(w0).requires_grad_(True))
    value = kiln.compile(loss, backend="llvm")
    eps = 1e-6
    for arr, g, which in ((x0, gx, 0), (w0, gw, 1)):
        num = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            hi, lo = arr.copy(), arr.copy()
            hi[i] += eps
            lo[i] -= eps
            args_hi = [kiln.from_numpy(hi if which == 0 else x0), kiln.from_numpy(hi if which == 1 else w0)]
            args_lo = [kiln.from_numpy(lo if which == 0 else x0), kiln.from_numpy(lo if which == 1 else w0)]
            num[i] = (value(*args_hi).item() - value(*args_lo).item()) / (2 * eps)
        np.testing.assert_allclose(g.numpy(), num, rtol=1e-6, atol=1e-7)


# ---- the block chosen, and what the code generator makes of it --------------------------------

def _conv_node(xs, ws, dtype=dt.float32, padding=None, strides=None, dilation=None, groups=1):
    g = Graph("f")
    nsp = len(xs) - 2
    x, w = g.add_input(xs, dtype, name="x"), g.add_input(ws, dtype, name="w")
    from kiln.ir.primitives import get_primitive
    attrs = dict(strides=strides or (1,) * nsp, padding=padding or ((0, 0),) * nsp,
                 dilation=dilation or (1,) * nsp, groups=groups)
    shape, d = get_primitive("conv").abstract_eval([x, w], attrs)
    c = g.add_node("conv", [x, w], attrs, shape, d, name="c")
    g.set_outputs([c])
    return g, c


def test_plan_conv_picks_rows_taps_or_generic():
    assert plan_conv(_conv_node((64, 32, 18, 18), (64, 32, 3, 3))[1]) == ConvBlock("rows", 1, 4, 16)
    assert plan_conv(_conv_node((64, 32, 18, 18), (64, 32, 3, 3), dt.float64)[1]) == ConvBlock("rows", 1, 8, 8)
    assert plan_conv(_conv_node((2, 3, 10), (3, 3, 3))[1]) == ConvBlock("rows", 1, 1, 8)  # width 8: half a vector
    assert plan_conv(_conv_node((32, 64, 18, 18), (64, 64, 16, 16))[1]) == ConvBlock("taps", 1, 4, 1, 16)
    assert plan_conv(_conv_node((1, 1, 5, 5), (1, 1, 3, 3))[1]) is None  # short rows, short kernel
    assert plan_conv(_conv_node((1, 1, 20, 20), (1, 1, 3, 3), padding=((1, 1), (1, 1)))[1]) is None
    assert plan_conv(_conv_node((1, 1, 20, 20), (1, 1, 3, 3), dt.float16)[1]) is None


def test_padding_becomes_an_explicit_pad():
    g, _ = _conv_node((1, 2, 5, 5), (3, 2, 3, 3), padding=((1, 2), (0, 1)))
    out = explicit_conv_padding(g)
    ops = [n.op for n in out.nodes]
    assert ops == ["pad", "conv"]
    pad, conv = out.nodes
    assert pad.attrs["lo"] == (0, 0, 1, 0) and pad.attrs["hi"] == (0, 0, 2, 1)
    assert conv.attrs["padding"] == ((0, 0), (0, 0)) and tuple(conv.shape) == (1, 3, 6, 4)
    assert explicit_conv_padding(out) is out  # nothing left to do


def test_rows_block_is_vector_fma_in_optimized_ir():
    x = kiln.randn(4, 8, 18, 18)
    w = kiln.randn(16, 8, 3, 3)
    text = kiln.compile(lambda x, w: F.conv2d(x, w, padding=1), backend="llvm").lower(x, w).as_text("llvm-opt")
    assert re.search(r"@llvm\.fma\.v16f32", text), "the rows block should become 16-lane vector FMAs"


def test_taps_block_is_vectorized_in_optimized_ir():
    x = kiln.randn(16, 8, 18, 18)
    w = kiln.randn(8, 8, 16, 16)
    text = kiln.compile(lambda x, w: F.conv2d(x, w), backend="llvm").lower(x, w).as_text("llvm-opt")
    assert re.search(r"<(16|32|64) x float>", text), "the taps block should use float vectors"


# ---- pooling, compiled, against PyTorch ---------------------------------------------------------

torch = pytest.importorskip("torch")
TF = torch.nn.functional

POOLS = [
    ("max_pool2d", dict(kernel_size=2)),
    ("max_pool2d", dict(kernel_size=3, padding=1)),
    ("max_pool2d", dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool1d", dict(kernel_size=2)),
    ("max_pool3d", dict(kernel_size=2, padding=1)),
    ("avg_pool2d", dict(kernel_size=2)),
    ("avg_pool2d", dict(kernel_size=3, padding=1, count_include_pad=False)),
    ("avg_pool1d", dict(kernel_size=3, stride=2, padding=1)),
    ("avg_pool3d", dict(kernel_size=2)),
]


@pytest.mark.parametrize("name,kw", POOLS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(POOLS)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_pooling_forward_backward_match_torch(name, kw, dtype):
    nd = int(name[-2])
    rng = np.random.default_rng(4)
    shape = (2, 3) + (7, 6, 5)[:nd - 1] + (9,)
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 0, ..., :3] = 0.0  # ties: the gradient goes to the first maximum, as in PyTorch
    if name.startswith("max") and kw.get("stride", kw["kernel_size"]) == kw["kernel_size"]:
        x[1, 2, ..., 1] = np.nan  # nan propagates; its gradient goes to the window's last nan (PyTorch)
    kfn = getattr(F, name)
    tx = torch.tensor(x, requires_grad=True)
    to = getattr(TF, name)(tx, **kw)
    ct = rng.standard_normal(tuple(to.shape)).astype(dtype)
    (to * torch.tensor(ct)).sum().backward()

    def step(x, ct):
        y = kfn(x, **kw)
        return y, kiln.autograd.grad((y * ct).sum(), [x])[0]

    y, gx = kiln.compile(step, backend="llvm")(kiln.from_numpy(x).requires_grad_(True), kiln.from_numpy(ct))
    np.testing.assert_allclose(y.numpy(), to.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.nan_to_num(gx.numpy(), nan=7.0), np.nan_to_num(tx.grad.numpy(), nan=7.0),
                               rtol=1e-5, atol=1e-6)


def test_max_pool_indices_match_torch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 8, 7)).astype(np.float32)
    x[0, 0, :2, :2] = 1.0  # a tie inside one window
    out, idx = F.max_pool2d(kiln.from_numpy(x), 2, padding=1, return_indices=True)
    tout, tidx = TF.max_pool2d(torch.tensor(x), 2, padding=1, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    np.testing.assert_array_equal(out.numpy(), tout.numpy())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("anchor", ["conv", "matmul"])
def test_anchor_returned_beside_a_scratch_epilogue(anchor, dtype):
    """The anchor's own output is written when its epilogue runs in a second phase over a scratch
    buffer (the scratch was once made the anchor's buffer, leaving its output unwritten)."""
    rng = np.random.default_rng(3)
    if anchor == "conv":
        a, b = rng.standard_normal((2, 3, 9)), rng.standard_normal((4, 3, 3))

        def f(x, w):
            y = kiln.nn.functional.conv1d(x, w, padding=1)
            return y, ((y * 2 + 1).clamp(-1, 1) - 0.5).tanh() * 3
    else:
        a, b = rng.standard_normal((5, 7)), rng.standard_normal((7, 6))

        def f(x, w):
            y = x @ w
            return y, ((y * 2 + 1).clamp(-1, 1) - 0.5).tanh() * 3
    x, w = kiln.tensor(a.astype(dtype)), kiln.tensor(b.astype(dtype))
    got = kiln.compile(f)(x, w)
    want = f(x, w)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)
