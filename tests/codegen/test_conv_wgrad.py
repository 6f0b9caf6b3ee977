"""Weight-gradient-shaped convolutions through the packed im2col GEMM (kiln/codegen/conv_packed.py).

Compiled convolutions with a long reduction and a small output — 1-, 2- and 3-d; stride,
dilation, groups; sizes 1, primes and sizes that are not multiples of the tile — against the
reference interpreter in float32 and float64, with host and tiny blockings (every edge panel,
depth block and task split); epilogues over permutes and reshapes of the product (the optimizer
update of a weight), and the ones the path declines; whole conv backwards by float64 finite
differences; and what the code generator makes of it (the microkernel in the assembly).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.codegen.conv_packed import applies, force_packed, output_maps, packed_pays, split_rows
from kiln.codegen.gemm import Blocking, host_blocking, host_threads, override_blocking
from kiln.codegen.host import host_info
from kiln.codegen.kir import Const, idx
from kiln.ir import dtypes as dt
from kiln.ir.graph import Graph

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TINY = Blocking(mr=5, nr=8, kc=12, mc=10, nc=16)  # edge panels, several depth blocks, row blocks


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


def _packed(text: str) -> bool:
    return "tile_mma" in text and "conv_a" in text


@st.composite
def wgrad_cfg(draw):
    """A conv whose output (batch x output positions x channels) is small against its reduction
    (channels x kernel), as `applies` wants: the shape of a weight gradient."""
    nd = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2]))
    cg = draw(st.sampled_from([1, 2, 3, 7]))
    og = draw(st.sampled_from([8, 9, 13, 17]))
    p = tuple(draw(st.sampled_from([1, 2, 3])) for _ in range(nd))        # output positions (taps)
    nb = max(draw(st.sampled_from([1, 2, 3, 5])), -(-8 // math.prod(p)))  # at least 8 rows
    stride = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    k = [draw(st.sampled_from([1, 2, 3])) for _ in range(nd - 1)]
    need = 8 * max(nb * math.prod(p), og)                                 # the depth `applies` wants
    k.append(-(-need // (cg * math.prod(k))) + draw(st.sampled_from([0, 1, 4])))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    tiny = draw(st.booleans())
    size = tuple((pp - 1) * s + (kk - 1) * d + 1 for pp, kk, s, d in zip(p, k, stride, dil))
    return nd, groups, nb, cg, og, tuple(k), stride, dil, size, dtype, tiny


@settings(max_examples=25, deadline=None, derandomize=True)
@given(wgrad_cfg())
def test_packed_conv_matches_reference(cfg):
    nd, groups, nb, cg, og, k, stride, dil, size, dtype, tiny = cfg
    rng = np.random.default_rng(0)
    x = kiln.from_numpy(rng.standard_normal((nb, groups * cg) + size).astype(dtype))
    w = kiln.from_numpy(rng.standard_normal((groups * og, cg) + k).astype(dtype))

    def f(x, w):
        return CONV[nd](x, w, stride=stride, dilation=dil, groups=groups)

    with force_packed(True), (override_blocking(TINY) if tiny else _nothing()):
        lowered = kiln.compile(f, backend="llvm")
        assert _packed(lowered.lower(x, w).as_text("kernels")), "a weight-gradient-shaped conv: the packed GEMM"
        got = lowered(x, w).numpy()
    want = kiln.compile(f, backend="reference")(x, w).numpy()
    np.testing.assert_allclose(got, want, **_tol(dtype))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blocking", [None, TINY, Blocking(mr=3, nr=4, kc=7, mc=3, nc=4)])
def test_cnn_weight_gradient_shapes(dtype, blocking):
    """The CNN's conv2 weight gradient, smaller (batch 16, 9 x 9 outputs), with a permute and a
    momentum update after it: the epilogue runs on each tile."""
    rng = np.random.default_rng(1)
    xp = rng.standard_normal((16, 12, 11, 11)).astype(dtype)   # the padded forward input
    g = rng.standard_normal((16, 16, 9, 9)).astype(dtype)      # the forward's output gradient
    p0, m0 = (rng.standard_normal((16, 12, 3, 3)).astype(dtype) for _ in range(2))

    def step(xp, g, p, m):
        xt = xp.permute(1, 0, 2, 3)              # (C_in, N, H, W)
        gt = g.permute(1, 0, 2, 3)               # (C_out, N, H, W)
        gw = F.conv2d(xt, gt).permute(1, 0, 2, 3)  # (C_out, C_in, 3, 3)
        buf = m * 0.9 + gw
        return p - 0.01 * buf, buf

    args = [kiln.from_numpy(a) for a in (xp, g, p0, m0)]
    with force_packed(True), (override_blocking(blocking) if blocking else _nothing()):
        lowered = kiln.compile(step, backend="llvm")
        assert _packed(lowered.lower(*args).as_text("kernels"))
        got = lowered(*args)
    want = kiln.compile(step, backend="reference")(*args)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), **_tol(dtype))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_backward_with_packed_weight_gradient_matches_finite_differences(nd):
    """float64 central differences of a padded, strided or dilated conv whose weight gradient runs packed."""
    rng = np.random.default_rng(3)
    spatial = {1: (40,), 2: (9, 8), 3: (5, 6, 5)}[nd]
    ks = {1: (3,), 2: (3, 2), 3: (2, 2, 3)}[nd]
    # strides whose weight gradient needs no slice of its taps (the packed path declines a slice)
    kw = {1: dict(dilation=(2,)), 2: dict(stride=(1, 2)), 3: dict(stride=(1, 1, 2))}[nd]
    kw["padding"] = (1,) * nd
    x0 = rng.standard_normal((4, 3) + spatial)
    w0 = rng.standard_normal((8, 3) + ks)
    out = CONV[nd](kiln.from_numpy(x0), kiln.from_numpy(w0), **kw)
    ct = kiln.from_numpy(rng.standard_normal(tuple(out.shape)))

    def loss(x, w):
        return (CONV[nd](x, w, **kw) * ct).sum()

    with force_packed(True):
        grads = kiln.compile(lambda x, w: kiln.autograd.grad(loss(x, w), [x, w]), backend="llvm")
        xs, wsv = kiln.from_numpy(x0).requires_grad_(True), kiln.from_numpy(w0).requires_grad_(True)
        assert _packed(grads.lower(xs, wsv).as_text("kernels"))
        gx, gw = grads(xs, wsv)
    value = kiln.compile(loss, backend="llvm")
    eps = 1e-6
    for arr, got, which in ((x0, gx, 0), (w0, gw, 1)):
        flat = list(np.ndindex(arr.shape))
        for i in flat[:: max(1, len(flat) // 40)]:  # 40 elements of each: enough to catch a wrong index
            hi, lo = arr.copy(), arr.copy()
            hi[i] += eps
            lo[i] -= eps
            args_hi = [kiln.from_numpy(a) for a in ((hi, w0) if which == 0 else (x0, hi))]
            args_lo = [kiln.from_numpy(a) for a in ((lo, w0) if which == 0 else (x0, lo))]
            num = (value(*args_hi).item() - value(*args_lo).item()) / (2 * eps)
            np.testing.assert_allclose(got.numpy()[i], num, rtol=1e-6, atol=1e-7)


def test_a_reduction_of_the_product_keeps_the_blocked_path():
    """A kernel that also sums the product (or returns another value) is not pointwise per tile:
    the packed path declines and the result is still right."""
    rng = np.random.default_rng(4)
    x = kiln.from_numpy(rng.standard_normal((4, 16, 18, 18)).astype(np.float32))
    w = kiln.from_numpy(rng.standard_normal((16, 16, 16, 16)).astype(np.float32))

    def f(x, w):
        y = F.conv2d(x, w)
        return y * 2.0, y.sum(1)

    with force_packed(True):
        lowered = kiln.compile(f, backend="llvm")
        got = lowered(x, w)
    want = kiln.compile(f, backend="reference")(x, w)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-4, atol=2e-3)


def _conv_node(xs, ws, padding=None, dtype=dt.float32):
    g = Graph("f")
    nsp = len(xs) - 2
    x, w = g.add_input(xs, dtype, name="x"), g.add_input(ws, dtype, name="w")
    from kiln.ir.primitives import get_primitive
    attrs = dict(strides=(1,) * nsp, padding=padding or ((0, 0),) * nsp, dilation=(1,) * nsp, groups=1)
    shape, d = get_primitive("conv").abstract_eval([x, w], attrs)
    c = g.add_node("conv", [x, w], attrs, shape, d, name="c")
    return g, c


def test_applies_to_weight_gradients_not_forward_convs():
    assert applies(_conv_node((32, 64, 18, 18), (64, 64, 16, 16))[1])        # CNN conv2's weight gradient
    assert applies(_conv_node((3, 64, 34, 34), (32, 64, 32, 32))[1])         # conv1's
    assert not applies(_conv_node((64, 32, 18, 18), (64, 32, 3, 3))[1])      # a forward conv: depth 288
    assert not applies(_conv_node((32, 64, 20, 20), (64, 64, 16, 16), padding=((1, 1), (1, 1)))[1])
    assert not applies(_conv_node((32, 64, 18, 18), (64, 64, 16, 16), dtype=dt.float16)[1])


def test_cost_model_prefers_packing_for_the_cnn_weight_gradients():
    conv2 = _conv_node((32, 64, 18, 18), (64, 64, 16, 16))[1]
    conv1 = _conv_node((3, 64, 34, 34), (32, 64, 32, 32))[1]
    assert packed_pays(conv2, threads=2) and packed_pays(conv2, threads=1)
    assert packed_pays(conv1, threads=1) and packed_pays(conv1, threads=2)
    # 27 x 32 outputs: on four threads each would transpose all 32 x 65536 of B for 7 rows
    assert not packed_pays(conv1, threads=4)


def test_rows_are_split_into_balanced_panels():
    sp, mr = split_rows(1, 27, 32, 65536, threads=2, mr_max=12, nr=32, nc_max=4096)
    assert (sp.mg, sp.rows_per_group, mr) == (2, 14, 7)   # 2 x 2 panels of 7, not 24 + 3
    sp, mr = split_rows(1, 288, 64, 16384, threads=2, mr_max=12, nr=32, nc_max=4096)
    assert (sp.mg, sp.rows_per_group, mr) == (2, 144, 12)
    sp, mr = split_rows(1, 20, 200, 4096, threads=2, mr_max=12, nr=32, nc_max=4096)
    assert (sp.mg, sp.nj, sp.nc) == (1, 2, 128)            # more columns than rows: cut the columns
    sp, mr = split_rows(1, 20, 20, 100, threads=2, mr_max=12, nr=32, nc_max=4096)
    assert sp.tasks == 1                                    # too small to thread


def _eval(e):
    """The value of a constant int64 index expression."""
    if isinstance(e, Const):
        return e.value
    a, b = (_eval(v) for v in e.args)
    return {"add": a + b, "sub": a - b, "mul": a * b, "div": a // b, "rem": a % b}[e.name]


def test_output_maps_follow_permutes_and_reshapes():
    g, c = _conv_node((2, 4, 6, 6), (3, 4, 4, 4))
    t = g.add_node("permute", [c], {"perm": (1, 0, 2, 3)}, (3, 2, 3, 3), dt.float32, name="t")
    r = g.add_node("reshape", [t], {"shape": (6, 9)}, (6, 9), dt.float32, name="r")
    maps = output_maps(c, [c, t, r], [r])
    got = tuple(_eval(e) for e in maps[id(r)](tuple(idx(v) for v in (1, 2, 0, 2))))
    assert got == (47 // 9, 47 % 9)  # (1, 2, 0, 2) -> permuted (2, 1, 0, 2) -> flat 2*18 + 1*9 + 2 = 47
    s = g.add_node("reduce_sum", [c], {"axes": (1,), "keepdims": False}, (2, 3, 3), dt.float32, name="s")
    assert output_maps(c, [c, s], [s]) is None


@pytest.mark.skipif(not (host_info().has_fma and host_info().vector_bits >= 256
                          and __import__("platform").machine() in ("x86_64", "AMD64")),
                    reason="reads x86 AVX assembly")
def test_microkernel_in_the_assembly():
    """The packed weight gradient's hottest loop is the GEMM microkernel: one FMA per accumulator
    register per k (mr x 2 FMAs per 2 + mr loads), no spills."""
    f = kiln.compile(lambda x, w: F.conv2d(x, w))
    with force_packed(True):
        asm = f.lower(kiln.ShapeDtype((32, 64, 18, 18)), kiln.ShapeDtype((64, 64, 16, 16))).as_text("asm")
    blk = host_blocking(4)
    _, mr = split_rows(1, 32 * 9, 64, 64 * 256, host_threads(), blk.mr, blk.nr, blk.nc)  # this host's tile
    loops = re.findall(r"(\.LBB\d+_\d+):\n((?:(?!\.LBB).*\n)*?)\s*j\w+\s+\1\n", asm)
    best = max((body for _, body in loops), key=lambda b: len(re.findall(r"vfmadd\w+", b)), default="")
    fmas = re.findall(r"vfmadd\w+\s+[^\n]*", best)
    assert len(fmas) == mr * blk.nr // host_info().lanes(4), best
    assert len(re.findall(r"vbroadcastss", best)) == mr, best
    assert not re.search(r"\(%rsp\)", best), "the microkernel's loop spills to the stack"


def test_packed_weight_gradient_in_a_cnn_step_matches_torch():
    """Conv -> ReLU -> conv -> sum, SGD: the weight gradient of the second conv runs packed."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x0 = rng.standard_normal((8, 3, 12, 12)).astype(np.float32)
    w1 = (rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)

    def loss_of(conv, relu, x, a, b):
        return (relu(conv(relu(conv(x, a, padding=1)), b, padding=1)) ** 2).mean()

    def step(x, a, b):
        loss = loss_of(F.conv2d, F.relu, x, a, b)
        ga, gb = kiln.autograd.grad(loss, [a, b])
        return loss, a - 0.1 * ga, b - 0.1 * gb

    with force_packed(True):
        compiled = kiln.compile(step, backend="llvm")
        args = (kiln.from_numpy(x0), kiln.from_numpy(w1).requires_grad_(True), kiln.from_numpy(w2).requires_grad_(True))
        assert _packed(compiled.lower(*args).as_text("kernels"))
        loss, a, b = compiled(*args)
    ta, tb = torch.tensor(w1, requires_grad=True), torch.tensor(w2, requires_grad=True)
    tl = loss_of(torch.nn.functional.conv2d, torch.relu, torch.tensor(x0), ta, tb)
    tl.backward()
    np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-5)
    np.testing.assert_allclose(a.numpy(), (ta - 0.1 * ta.grad).detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.numpy(), (tb - 0.1 * tb.grad).detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_im2col_rows_are_packed_by_vector_copies(dtype):
    """A's panels are row-major: each im2col row is a run of x along its last axis, copied by
    vector loads and stores (or a memcpy); no scalar store writes the A scratch."""
    f = kiln.compile(lambda x, w: F.conv2d(x, w))
    d = getattr(kiln, dtype)
    with force_packed(True):
        ll = f.lower(kiln.ShapeDtype((32, 64, 18, 18), d), kiln.ShapeDtype((64, 64, 16, 16), d)).as_text("llvm-opt")
    scope = re.search(r"^(!\d+) = distinct !\{!\d+, !\d+, !\"[^\"]*%conv_a\d+\"\}", ll, re.M).group(1)
    sets = re.findall(rf"^(!\d+) = !\{{(?:!\d+, )*{scope}(?:, !\d+)*\}}$", ll, re.M)  # scope lists naming it
    assert sets, "no alias scope set for the A scratch"
    a_writes = [ln for ln in ll.splitlines() if re.search(rf"!alias\.scope ({'|'.join(sets)})\b", ln)
                and ("store " in ln or "memcpy" in ln)]
    assert a_writes, "the A scratch is never written"
    scalar = "float" if dtype == "float32" else "double"
    assert not [ln for ln in a_writes if re.search(rf"store {scalar} ", ln)], a_writes
