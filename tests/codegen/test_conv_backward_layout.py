"""The conv backward's layout and its bias-gradient sweep (kiln/passes/fusion.py, kiln/codegen/reduce_lower.py).

A conv's weight gradient reads the output gradient dy transposed to (C_out, N, *S) through the
conv kernel's prologue (the packing or the blocked loads index dy in its own NCHW layout): no
kernel writes a transposed copy of dy. The kernel that computes dy (ReLU mask x max-pool
backward) and sums it over (N, *S) for the bias gradient writes dy and the sum from one loop
(`reduce_lower.lower_row_sweep`). Checked here: conv gradients against the reference
interpreter (1-3 d; stride, padding, dilation, groups; float32 and float64; packed, blocked
and generic weight gradients), float64 finite differences of conv + bias + ReLU + max pool,
the sweep against the reference over random shapes, and the plan / kernel IR facts.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.codegen.conv_packed import force_packed

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


def _grads(fn, backend, args, packed=None):
    """(the loss, its gradients) of `fn` compiled for `backend`, as numpy arrays."""
    def g(*a):
        loss = fn(*a)
        return (loss,) + tuple(kiln.autograd.grad(loss, list(a)))
    ts = [kiln.from_numpy(a).requires_grad_(True) for a in args]
    if packed is None:
        return [t.numpy() for t in kiln.compile(g, backend=backend)(*ts)]
    with force_packed(packed):
        return [t.numpy() for t in kiln.compile(g, backend=backend)(*ts)]


@st.composite
def conv_cfg(draw):
    nd = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2]))
    cg = draw(st.sampled_from([1, 2, 3]))
    og = draw(st.sampled_from([1, 4, 9]))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(nd))
    size = tuple(draw(st.sampled_from([5, 7, 9, 12] if nd < 3 else [4, 5, 6])) for _ in range(nd))
    size = tuple(max(s, (kk - 1) * d + 1) for s, kk, d in zip(size, k, dil))
    nb = draw(st.sampled_from([1, 2, 3]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    packed = draw(st.sampled_from([None, True, False]))
    return nd, groups, cg, og, k, stride, dil, pad, size, nb, dtype, packed


@settings(max_examples=30, deadline=None, derandomize=True)
@given(conv_cfg())
def test_conv_gradients_with_a_computed_output_gradient_match_reference(cfg):
    """dy is computed (ReLU backward of a bias add), so the weight gradient's conv reads it
    transposed through its prologue; every path of the weight gradient (packed, blocked, generic)."""
    nd, groups, cg, og, k, stride, dil, pad, size, nb, dtype, packed = cfg
    rng = np.random.default_rng(1)
    x = rng.standard_normal((nb, groups * cg) + size).astype(dtype)
    w = rng.standard_normal((groups * og, cg) + k).astype(dtype)
    b = rng.standard_normal((groups * og,)).astype(dtype)
    bshape = (1, groups * og) + (1,) * nd

    def loss(x, w, b):
        y = CONV[nd](x, w, stride=stride, padding=pad, dilation=dil, groups=groups) + b.reshape(bshape)
        return (F.relu(y) ** 2).sum()

    got = _grads(loss, "llvm", (x, w, b), packed)
    want = _grads(loss, "reference", (x, w, b))
    for name, g, r in zip(("loss", "x", "w", "b"), got, want):
        np.testing.assert_allclose(g, r, err_msg=f"gradient of {name}", **_tol(dtype))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_bias_relu_pool_gradients_match_finite_differences(nd):
    """float64 central differences through conv + bias + ReLU + max pool + a second conv: the
    first conv's bias gradient runs in the sweep, both weight gradients read dy transposed."""
    rng = np.random.default_rng(4)
    spatial = {1: (16,), 2: (8, 8), 3: (4, 4, 4)}[nd]
    x0 = rng.standard_normal((3, 2) + spatial)
    w0 = rng.standard_normal((4, 2) + (3,) * nd) * 0.5
    b0 = rng.standard_normal((4,)) * 0.1
    v0 = rng.standard_normal((5, 4) + (3,) * nd) * 0.5
    bshape = (1, 4) + (1,) * nd

    def loss(x, w, b, v):
        h = POOL[nd](F.relu(CONV[nd](x, w, padding=1) + b.reshape(bshape)), 2)
        return (CONV[nd](h, v, padding=1) ** 2).sum()

    got = _grads(loss, "llvm", (x0, w0, b0, v0))
    value = kiln.compile(loss, backend="llvm")
    args = [x0, w0, b0, v0]
    eps = 1e-6
    for which in range(4):
        arr = args[which]
        flat = list(np.ndindex(arr.shape))
        for i in flat[:: max(1, len(flat) // 25)]:
            hi, lo = arr.copy(), arr.copy()
            hi[i] += eps
            lo[i] -= eps
            vals = []
            for a in (hi, lo):
                ins = list(args)
                ins[which] = a
                vals.append(value(*[kiln.from_numpy(t) for t in ins]).item())
            num = (vals[0] - vals[1]) / (2 * eps)
            np.testing.assert_allclose(got[1 + which][i], num, rtol=1e-5, atol=1e-6,
                                       err_msg=f"input {which} at {i}")


def _cnn_step_plans(batch=4):
    """The fusion plans of a CNN training step like the benchmark's (conv 3->8->16, pools, linear)."""
    rng = np.random.default_rng(2)
    w1 = kiln.from_numpy((rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32)).requires_grad_(True)
    b1 = kiln.from_numpy(np.zeros(8, np.float32)).requires_grad_(True)
    w2 = kiln.from_numpy((rng.standard_normal((16, 8, 3, 3)) * 0.1).astype(np.float32)).requires_grad_(True)
    b2 = kiln.from_numpy(np.zeros(16, np.float32)).requires_grad_(True)
    fc = kiln.from_numpy((rng.standard_normal((10, 16 * 4 * 4)) * 0.05).astype(np.float32)).requires_grad_(True)
    x = kiln.from_numpy(rng.standard_normal((batch, 3, 16, 16)).astype(np.float32))

    def step(x, w1, b1, w2, b2, fc):
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, padding=1) + b1.reshape((1, 8, 1, 1))), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, w2, padding=1) + b2.reshape((1, 16, 1, 1))), 2)
        loss = (h.reshape((batch, 256)) @ fc.T).square().mean()
        gs = kiln.autograd.grad(loss, [w1, b1, w2, b2, fc])
        return (loss,) + tuple(p - 0.1 * g for p, g in zip((w1, b1, w2, b2, fc), gs))

    lowered = kiln.compile(step, backend="llvm").lower(x, w1, b1, w2, b2, fc)
    return [ex.plan for ex in lowered._executables()], lowered


def test_cnn_step_writes_no_transposed_copy_of_the_output_gradient():
    plans, _ = _cnn_step_plans()
    convs = [k for p in plans for k in p.kernels if k.kind == "conv"]
    wgrads = [k for k in convs if k.anchor.inputs[1].op == "permute"]
    assert len(wgrads) == 2, "both weight gradients read a permuted operand"
    for k in wgrads:
        assert k.anchor.inputs[1] in k.nodes, "the permute of dy is the conv kernel's prologue"
    for p in plans:
        for k in p.kernels:
            copies = [o for o in k.outputs if o.op == "permute" and o.numel > 1000]
            assert not copies, f"kernel {k.id} writes a transposed copy {copies[0].name} of {list(copies[0].shape)}"


def test_bias_gradient_and_output_gradient_in_one_sweep():
    """The kernel computing dy (ReLU mask x pool backward) stores dy and sums it for the bias
    gradient in the same innermost loop (the sweep, not two loop nests), reading the pooled
    gradient without a gather (the pool window's lanes)."""
    _, lowered = _cnn_step_plans()
    text = lowered.as_text("kernels")
    sweeps = []
    for blk in re.split(r"\n(?=kernel )", text):
        if "[reduction]" not in blk.split("\n")[1] or "select" not in blk:
            continue
        inner = re.findall(r"for r\d+ in [^\n]*\n((?:\s+[^f\s][^\n]*\n)+)", blk)
        if any(re.search(r"out0\[", body) and re.search(r"= \(acc\d+ \+", body) for body in inner):
            sweeps.append(blk.split("(")[0])
    assert len(sweeps) >= 2, f"the two bias-gradient kernels sweep once: {sweeps}\n{text[:3000]}"
    opt = lowered.as_text("llvm-opt")
    for name in sweeps:
        fn = name.split()[-1]
        body = opt[opt.index(f"@{fn}("):]
        body = body[:body.index("\n}\n")]
        assert "masked.gather" not in body, f"{fn}: the pooled gradient is read without a gather"
        # a chunk of the last axis per step, one accumulator per element: LLVM makes them a vector
        assert re.search(r"phi <\d+ x float>", body), f"{fn}: the bias-gradient sum runs in vector accumulators"


@st.composite
def sweep_cfg(draw):
    rank = draw(st.integers(2, 4))
    shape = tuple(draw(st.sampled_from([1, 2, 3, 4, 6, 7, 16, 17])) for _ in range(rank))
    last = rank - 1
    others = draw(st.lists(st.integers(0, last - 1), unique=True, max_size=last - 1))
    axes = tuple(sorted(set(others) | {last}))
    red = draw(st.sampled_from(["sum", "max"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    pooled = draw(st.booleans()) and shape[-1] % 2 == 0
    return shape, axes, red, dtype, pooled, draw(st.booleans())


@settings(max_examples=40, deadline=None, derandomize=True)
@given(sweep_cfg())
def test_reduction_with_full_size_outputs_matches_reference(cfg):
    """A reduction over axes that include the last, beside the full-size value it reduces (and,
    `pooled`, a 2-wide broadcast along the last axis, as max-pool backward has), with a row epilogue."""
    shape, axes, red, dtype, pooled, keep = cfg
    rng = np.random.default_rng(6)
    a = rng.standard_normal(shape).astype(dtype)
    m = rng.standard_normal(shape) > 0
    half = shape[:-1] + ((shape[-1] // 2) if pooled else shape[-1],)
    g = rng.standard_normal(half).astype(dtype)

    def f(a, m, g):
        if pooled:
            g = g.reshape(half + (1,)).broadcast_to(half + (2,)).reshape(shape)
        v = kiln.where(m, a * g, 0.0 * a)
        r = v.sum(axes, keepdim=keep) if red == "sum" else v.amax(axes, keepdim=keep)
        return v, r * 0.5 + 1.0

    ins = [kiln.from_numpy(t) for t in (a, m, g)]
    got = kiln.compile(f, backend="llvm")(*ins)
    want = kiln.compile(f, backend="reference")(*ins)
    for x, y in zip(got, want):
        np.testing.assert_allclose(x.numpy(), y.numpy(), **_tol(dtype))
