"""Reduction schedules (kiln/codegen/reduce_lower.py): column blocks, unrolled windows, pool gradients.

Compiled (LLVM) reductions against the reference interpreter over random shapes — sizes 1,
primes and non-multiples of the vector width; reductions over outer and middle axes with a
fused epilogue and full-size outputs; strided and transposed inputs; nan — in float32 and
float64; max / average pooling 1-, 2-, 3-d forward and backward against PyTorch (ties: the
first maximum; nan); and the facts the speed rests on: the column blocks and the window
kernel's single read of each element in the kernel IR, vector code without gathers in the
optimized LLVM IR.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.codegen import index as ix
from kiln.codegen.kir import Load, Loop, Op, Var, walk_exprs, walk_stmts, stmt_exprs
from kiln.ir import dtypes as dt

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

SIZES = [1, 2, 3, 5, 7, 13, 16, 17, 31, 64, 67, 129]  # 1, primes, a vector, non-multiples of it
REDUCERS = {"sum": lambda t, a: t.sum(a), "max": lambda t, a: t.amax(a), "min": lambda t, a: t.amin(a),
            "prod": lambda t, a: t.prod(a)}


def _tol(dtype):
    return dict(rtol=3e-5, atol=3e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def _both(fn, *arrays):
    """(llvm, reference) results of kiln.compile(fn) on the arrays, as lists of numpy arrays."""
    out = []
    for backend in ("llvm", "reference"):
        r = kiln.compile(fn, backend=backend)(*[kiln.from_numpy(a) for a in arrays])
        out.append([t.numpy() for t in (r if isinstance(r, tuple) else (r,))])
    return out


# ---- outer-axis reductions (column blocks) --------------------------------------------------------

@st.composite
def column_cfg(draw):
    rank = draw(st.integers(2, 3))
    shape = tuple(draw(st.sampled_from(SIZES)) for _ in range(rank))
    axes = (0,) if rank == 2 else draw(st.sampled_from([(0,), (1,), (0, 1)]))
    return (shape, axes, draw(st.sampled_from(sorted(REDUCERS))), draw(st.sampled_from([np.float32, np.float64])),
            draw(st.sampled_from(["contiguous", "transposed", "strided"])), draw(st.booleans()))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(column_cfg())
def test_column_reductions_match_reference(cfg):
    shape, axes, red, dtype, layout, nan = cfg
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.5, shape).astype(dtype)  # products stay finite
    if layout == "transposed":  # the same logical array, read through permuted strides
        x = np.ascontiguousarray(np.swapaxes(x, 0, -1)).swapaxes(0, -1)
    elif layout == "strided":
        big = np.zeros(tuple(2 * s for s in shape), dtype)
        big[tuple(slice(None, None, 2) for _ in shape)] = x
        x = big[tuple(slice(None, None, 2) for _ in shape)]
    if nan and x.size > 2:
        x.reshape(-1)[::7] = np.nan if x.flags.c_contiguous else 0
        if not x.flags.c_contiguous:
            x[(0,) * x.ndim] = np.nan
    b = rng.standard_normal(tuple(s for d, s in enumerate(shape) if d not in axes)).astype(dtype)
    h = rng.standard_normal(shape).astype(dtype)

    def step(x, h, b):  # a masked column reduction, an update fused after it, a full-size output beside it
        g = kiln.where(h > 0, x, 1.0)
        return b - 0.5 * REDUCERS[red](g, axes), g * 2.0

    (got, full), (ref, full_ref) = _both(step, x, h, b)
    np.testing.assert_allclose(got, ref, **_tol(dtype), equal_nan=True)
    np.testing.assert_array_equal(full, full_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("keepdims", [False, True])
def test_bias_gradient_with_momentum_update(dtype, keepdims):
    """The shape of a bias gradient step: sum over the batch of a masked gradient, momentum and
    the parameter update fused after it (three row outputs), as in the mlp1024 benchmark."""
    rng = np.random.default_rng(1)
    g, h = rng.standard_normal((1024, 130)).astype(dtype), rng.standard_normal((1024, 130)).astype(dtype)
    shape = (1, 130) if keepdims else (130,)
    m, p = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)

    def step(g, h, m, p):
        db = kiln.where(h > 0, g, 0.0).sum(0, keepdim=keepdims)
        m2 = 0.9 * m + db
        return db, m2, p - 0.01 * m2

    got, ref = _both(step, g, h, m, p)
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a, r, **_tol(dtype))


def _kernel_ir(fn, *specs):
    return kiln.compile(fn, backend="llvm").lower(*specs)


def test_column_reduction_runs_in_blocks_of_contiguous_columns():
    lo = _kernel_ir(lambda g, b: b - 0.1 * g.sum(0), kiln.ShapeDtype((1024, 200)), kiln.ShapeDtype((200,)))
    text = lo.as_text("kernels")
    # the reduction loop runs inside a loop over blocks of columns, each load a column of the block
    # (jb*W + lane), then one narrower block for the last 200 % W columns
    loads = re.findall(r"in0\[\(\(r\d+ \* 200\) \+ \(\(jb\d+ \* (\d+)\) \+ (\d+)\)\)\]", text)
    width = max(int(w) for w, _ in loads)
    assert sorted({int(t) for w, t in loads if int(w) == width}) == list(range(1, width)) and 200 % width, text
    assert re.search(rf"for jb\d+ in 0\.\.{200 // width}:", text) and f"+ {200 // width * width})" in text
    opt = lo.as_text("llvm-opt")
    assert "masked.gather" not in opt
    lanes = [int(n) for n in re.findall(r"fadd <(\d+) x float>", opt)]
    assert lanes and max(lanes) >= 4, "the column sums are not vector adds"


# ---- windows: small reductions unrolled ------------------------------------------------------------

@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.sampled_from(SIZES[:6]), st.sampled_from([2, 3, 5, 16]), st.sampled_from(["argmax", "argmin", "max", "sum"]),
       st.sampled_from([np.float32, np.float64]), st.booleans())
def test_small_reductions_unrolled_match_reference(rows, k, red, dtype, ties):
    """A reduction over at most 16 elements is written out without a loop: argmax / argmin keep
    numpy's rules (the first extreme wins; the first nan wins), sums keep the loop's order."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((rows, k)).astype(dtype)
    if ties:
        x = np.round(x)  # many equal values in a row
        x[0, k // 2] = np.nan
    fn = {"argmax": lambda t: t.argmax(1), "argmin": lambda t: t.argmin(1),
          "max": lambda t: t.amax(1), "sum": lambda t: t.sum(1)}[red]
    (got,), (ref,) = _both(fn, x)
    np.testing.assert_allclose(got, ref, **_tol(dtype), equal_nan=True)
    if red.startswith("arg"):
        np.testing.assert_array_equal(got, getattr(np, red)(x, axis=1))


def _input_loads(kernel, buf: str) -> int:
    return sum(1 for s in walk_stmts(kernel.body) for e in stmt_exprs(s)
               for x in walk_exprs(e) if isinstance(x, Load) and x.buf == buf)


def test_max_pool_window_reads_each_element_once():
    """Max pooling's value, nan and first-maximum reductions and its argmax mask share one read of
    each window element (and one evaluation of the ReLU fused before it): 4 loads for a 2x2 window."""
    lo = _kernel_ir(lambda x: F.max_pool2d(x.relu(), 2), kiln.ShapeDtype((2, 3, 8, 10)))
    (k,) = [k for k in lo._executables()[0].program.kernels if "reduction" in k.source]
    assert _input_loads(k, "in0") == 4
    assert not any(isinstance(s, Loop) and s.var.name.startswith("r") for s in walk_stmts(k.body))


def test_max_pool_forward_is_vectorized_without_gathers():
    opt = _kernel_ir(lambda x: F.max_pool2d(x, 2), kiln.ShapeDtype((4, 8, 32, 32))).as_text("llvm-opt")
    assert "masked.gather" not in opt
    assert re.search(r"shufflevector <(\d+) x float>", opt), "the stride-2 window is not an interleaved load"


def test_pool_gradient_is_vectorized_without_gathers():
    """The gradient of max pooling scatters dy into the window's argmax: its last axis is split into
    the window's lanes, so dy is read contiguously (no per-element division, no gather)."""
    def step(x, ct):
        y = F.max_pool2d(x, 2)
        return kiln.autograd.grad((y * ct).sum(), [x])[0]
    x = kiln.from_numpy(np.zeros((4, 8, 32, 32), np.float32)).requires_grad_(True)
    lo = _kernel_ir(step, x, kiln.ShapeDtype((4, 8, 16, 16)))
    kernels = "\n".join(ex.stages("kernels") for ex in lo._executables())
    grad = [blk for blk in kernels.split("\n\n") if "[elementwise]" in blk and "select" in blk]
    assert grad
    for blk in grad:  # the innermost loop variable is never divided: i*2 + lane meets the split directly
        inner = re.findall(r"for (i\d+) in", blk)[-1]
        assert f"({inner} / 2)" not in blk and f"({inner} % 2)" not in blk, blk
    opt = "\n".join(ex.stages("llvm-opt") for ex in lo._executables())
    assert "masked.gather" not in opt


def test_delinearize_of_a_lane_split_needs_no_division():
    i = Var("i", dt.int64)
    for lane in (0, 1):
        q, r = ix.delinearize(i * ix.idx(2) + ix.idx(lane), (16, 2))
        assert q == i and r == ix.idx(lane)
    # a chunk of the split axis (i*16 + t, t >= 2: the row sweep's vector of lanes): quotient
    # i*8 + t // 2, remainder t % 2
    for t in (2, 7, 15):
        q, r = ix.delinearize(i * ix.idx(16) + ix.idx(t), (64, 2))
        assert q == i * ix.idx(8) + ix.idx(t // 2) and r == ix.idx(t % 2)
    # not of that form: the division stays
    q, r = ix.delinearize(i + ix.idx(3), (16, 2))
    assert isinstance(q, Op) and q.name == "div" and isinstance(r, Op) and r.name == "rem"


# ---- pooling against PyTorch -----------------------------------------------------------------------

torch = pytest.importorskip("torch")
TF = torch.nn.functional


@st.composite
def pool_cfg(draw):
    nd = draw(st.integers(1, 3))
    k = draw(st.sampled_from([2, 2, 3]))
    stride = draw(st.sampled_from([None, None, 1, 2]))
    sizes = (2, 3, 4, 5, 7, 11, 17, 33) if nd < 3 else (2, 3, 5)
    size = tuple(draw(st.sampled_from([s for s in sizes if s >= k])) for _ in range(nd))
    return (nd, k, stride, size, draw(st.sampled_from(["max", "avg"])), draw(st.sampled_from([np.float32, np.float64])),
            draw(st.booleans()), draw(st.booleans()))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(pool_cfg())
def test_pooling_forward_backward_match_torch(cfg):
    nd, k, stride, size, kind, dtype, ties, transposed = cfg
    rng = np.random.default_rng(3)
    shape = (2, 3) + size
    x = rng.standard_normal(shape).astype(dtype)
    if ties:  # equal values in a window: the gradient goes to the first maximum; nan wins and propagates
        x = np.round(x * 2) / 2
        x.reshape(-1)[::11] = np.nan
    if transposed:  # channels-last memory, read in place
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1)).transpose((0, nd + 1) + tuple(range(1, nd + 1)))
    name = f"{kind}_pool{nd}d"
    kw = dict(kernel_size=k) if stride is None else dict(kernel_size=k, stride=stride)
    tx = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    to = getattr(TF, name)(tx, **kw)
    ct = rng.standard_normal(tuple(to.shape)).astype(dtype)
    (to * torch.tensor(ct)).sum().backward()

    def step(x, ct):
        y = getattr(F, name)(x, **kw)
        return y, kiln.autograd.grad((y * ct).sum(), [x])[0]

    y, gx = kiln.compile(step, backend="llvm")(kiln.from_numpy(x).requires_grad_(True), kiln.from_numpy(ct))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y.numpy(), to.detach().numpy(), **tol, equal_nan=True)
    np.testing.assert_allclose(gx.numpy(), tx.grad.numpy(), **tol, equal_nan=True)
