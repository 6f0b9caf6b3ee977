"""GEMM epilogues (kiln/codegen/gemm.py, the fusion plan's merge_gemm_sums): products stored
through a permute (the transposed product computed by swapping the operands in the packing),
side outputs of another size (a step count), and reduce_sums over the contraction axis of an
operand (bias gradients) computed from the packed panels, each with its own epilogue. Results
against the reference interpreter over shapes with 1, primes and non-multiples of the tile,
float32 and float64, with the host's blocking and tiny ones that reach every edge."""
from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln
from kiln.codegen import gemm
from kiln.ir import dtypes as dt
from kiln.passes.fusion import KernelKind, plan_fusion
from kiln.runtime import native_pool

TINY = gemm.Blocking(mr=3, nr=16, kc=5, mc=6, nc=32, min_macs=1)
ODD = gemm.Blocking(mr=5, nr=8, kc=7, mc=10, nc=24, min_macs=1)
TOL = {dt.float32: dict(rtol=3e-5, atol=3e-5), dt.float64: dict(rtol=1e-12, atol=1e-12)}
SHAPES = [(1, 9, 17), (9, 1, 17), (13, 11, 17), (31, 37, 29), (64, 64, 64), (97, 23, 41), (5, 129, 33),
          (100, 90, 80)]


def _arr(rng, shape, d):
    return rng.standard_normal(shape).astype(d.np_dtype)


def _blocking(b):
    return gemm.override_blocking(b) if b is not None else contextlib.nullcontext()


def _run(fn, arrays, d, blocking=None):
    """Compile `fn` natively under `blocking`, compare every result with the reference backend;
    returns the `kernels` text."""
    args = [kiln.from_numpy(a) for a in arrays]
    f = kiln.compile(fn)

    def results(r):
        return [x.numpy() for x in (r if isinstance(r, tuple) else (r,))]
    with _blocking(blocking):
        got = results(f(*args))
        text = f.lower(*args).as_text("kernels")
    want = results(kiln.compile(fn, backend="reference")(*args))
    k = max([a.shape[0] for a in arrays if a.ndim] + [1])
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=TOL[d]["rtol"] * k, atol=TOL[d]["atol"] * k)
    return text


def _packs(m, k, n, d, blocking):
    with _blocking(blocking):
        return gemm.packs(m, n, k, d.itemsize)


def _kernel_kinds(fn, arrays):
    g = kiln.make_graph(fn)(*[kiln.from_numpy(a) for a in arrays])
    return [k.kind for k in plan_fusion(g).kernels]


# -- transposed stores ------------------------------------------------------------------------------

def transposed_update(a, b, r, m, w):
    """An optimizer update of a [n, m] weight from a product [m, n] with a residual in the
    product's layout: the LSTM's weight-gradient kernels."""
    y = (a @ b + r).transpose(0, 1)
    m1 = m * 0.9 + y * 0.1
    return m1, w - m1 * 0.01


def mixed_orientation(a, b, r, m, w):
    y = a @ b
    return y + r, (y * 2.0).transpose(0, 1) + m


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
@pytest.mark.parametrize("blocking", [None, TINY, ODD], ids=["host", "tiny", "odd"])
@pytest.mark.parametrize("mkn", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("fn", [transposed_update, mixed_orientation], ids=lambda f: f.__name__)
def test_transposed_stores_match_reference(fn, mkn, blocking, d):
    m, k, n = mkn
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    arrays = [_arr(rng, (m, k), d), _arr(rng, (k, n), d), _arr(rng, (m, n), d), _arr(rng, (n, m), d),
              _arr(rng, (n, m), d)]
    text = _run(fn, arrays, d, blocking)
    assert ("tile_mma" in text) == _packs(m, k, n, d, blocking)


def _graph_and_kernel(fn, arrays):
    g = kiln.make_graph(fn)(*[kiln.from_numpy(a) for a in arrays])
    (k,) = [k for k in plan_fusion(g).kernels if k.kind == KernelKind.MATMUL]
    return k


def test_the_orientation_follows_the_epilogues_memory():
    rng = np.random.default_rng(0)
    d = dt.float32
    arrays = [_arr(rng, (40, 30), d), _arr(rng, (30, 50), d), _arr(rng, (40, 50), d), _arr(rng, (50, 40), d),
              _arr(rng, (50, 40), d)]
    k = _graph_and_kernel(transposed_update, arrays)  # 2 transposed stores, 2 transposed loads, 1 straight load
    assert gemm.transposed_store(k.anchor, k.nodes, k.outputs)
    k = _graph_and_kernel(mixed_orientation, arrays)  # 1 + 1 straight, 1 + 1 transposed: keep the product's
    assert not gemm.transposed_store(k.anchor, k.nodes, k.outputs)
    k = _graph_and_kernel(lambda a, b: a @ b, arrays[:2])
    assert not gemm.transposed_store(k.anchor, k.nodes, k.outputs)


def test_loads_under_other_elementwise_ops_count_for_the_orientation():
    """The LSTM's weight gradient adds per-step gradients (in the product's layout) before the
    permute: those loads sit under adds that do not read the product and still count."""
    def step_sum(a, b, g1, g2, g3, g4, g5, m, w):
        y = (a @ b + (g1 + g2 + g3 + g4 + g5)).transpose(0, 1)
        m1 = m * 0.9 + y
        return m1, w - m1 * 0.01
    rng = np.random.default_rng(2)
    d = dt.float32
    arrays = [_arr(rng, (40, 30), d), _arr(rng, (30, 50), d)] + [_arr(rng, (40, 50), d) for _ in range(5)] + [
        _arr(rng, (50, 40), d), _arr(rng, (50, 40), d)]
    k = _graph_and_kernel(step_sum, arrays)  # 5 straight loads; 2 transposed stores + 2 loads
    assert not gemm.transposed_store(k.anchor, k.nodes, k.outputs)
    _run(step_sum, arrays, d, TINY)


def test_epilogue_maps_compose_permutes_and_refuse_two_positions():
    rng = np.random.default_rng(1)
    arrays = [_arr(rng, (20, 30), dt.float32), _arr(rng, (30, 20), dt.float32)]
    k = _graph_and_kernel(lambda a, b: ((a @ b).transpose(0, 1) * 2.0).transpose(0, 1) + 1.0, arrays)
    maps = gemm.epilogue_maps(k.anchor, k.nodes)
    assert all(perm == (0, 1) for perm, _ in (maps[id(o)] for o in k.outputs))
    # y + y.T reads the product at (i, j) and (j, i): not pointwise (the plan keeps them apart)
    def twice(a, b):
        y = a @ b
        return y + y.transpose(0, 1)
    g = kiln.make_graph(twice)(*[kiln.from_numpy(a) for a in arrays])
    (mm,) = [n for n in g.nodes if n.op == "matmul"]
    assert gemm.epilogue_maps(mm, g.nodes) is None
    _run(lambda a, b: (a @ b) + (a @ b).transpose(0, 1), arrays, dt.float32, TINY)


def test_transposed_store_is_lowered_with_swapped_operands():
    f = kiln.compile(transposed_update)
    specs = [kiln.ShapeDtype(s) for s in [(128, 64), (64, 96), (128, 96), (96, 128), (96, 128)]]
    text = f.lower(*specs).as_text("kernels")
    assert "tile_mma" in text
    # the tile runs along the outputs: the epilogue's innermost index (j) is the outputs' last axis
    lines = text.splitlines()
    last = next(k for k, ln in enumerate(lines) if ln.strip().startswith("for last"))
    j = re.search(r"for (j\d+) in", lines[last + 2]).group(1)
    store = next(ln for ln in lines[last:] if ln.strip().startswith("out0["))
    assert re.search(rf"\+ {j}\)+\] = ", store), store


# -- side outputs of another size -------------------------------------------------------------------

@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
@pytest.mark.parametrize("blocking", [None, TINY], ids=["host", "tiny"])
def test_scalar_side_outputs_keep_the_gemm(blocking, d):
    def adam_like(g, x, w, m, t):
        gw = g.transpose(0, 1) @ x
        t1 = t + 1.0
        m1 = m * 0.9 + gw * 0.1
        return w - m1 / (1.0 - 0.9 ** t1) * 1e-3, m1, t1
    rng = np.random.default_rng(5)
    b, n, k = 97, 101, 67
    arrays = [_arr(rng, (b, n), d), _arr(rng, (b, k), d), _arr(rng, (n, k), d), _arr(rng, (n, k), d),
              np.array(3.0, d.np_dtype)]
    text = _run(adam_like, arrays, d, blocking)
    assert "tile_mma" in text
    assert _kernel_kinds(adam_like, arrays) == [KernelKind.MATMUL]


# -- fused bias-gradient sums ----------------------------------------------------------------------

def bias_grad_rows(dy, x, w, b):
    """Linear's weight and bias gradients with an SGD update: the sum over the batch is over the
    contraction axis of the GEMM's left operand dyᵀ."""
    gb = dy.sum(0)
    return w - (dy.transpose(0, 1) @ x) * 0.01, b - gb * 0.01, gb


def bias_grad_cols(dy, x, w, b):
    """The same in the [in, out] layout: x.T @ dy sums dy over the contraction axis of the right operand."""
    return w - (x.transpose(0, 1) @ dy) * 0.01, b - dy.sum(0) * 0.01


def row_sum_of_a(dy, x, w, b):
    """The left operand itself, summed along k: (a @ b, a.sum(1))."""
    a = dy.transpose(0, 1) + 0.5  # computed by the sum's kernel: the GEMM reads it from memory
    return a @ x, a.sum(1) * 2.0


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
@pytest.mark.parametrize("blocking", [None, TINY, ODD], ids=["host", "tiny", "odd"])
@pytest.mark.parametrize("bon", [(1, 9, 17), (9, 1, 17), (13, 11, 17), (31, 37, 29), (97, 23, 41), (64, 64, 64),
                                 (129, 5, 33), (100, 90, 80)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("fn", [bias_grad_rows, bias_grad_cols, row_sum_of_a], ids=lambda f: f.__name__)
def test_fused_sums_match_reference(fn, bon, blocking, d):
    bsz, o, i = bon
    rng = np.random.default_rng(bsz * 100 + o * 10 + i)
    arrays = [_arr(rng, (bsz, o), d), _arr(rng, (bsz, i), d), _arr(rng, (o, i) if fn is bias_grad_rows else (i, o), d),
              _arr(rng, (o,), d)]
    if fn is row_sum_of_a:
        arrays[1] = _arr(rng, (bsz, i), d)
    _run(fn, arrays, d, blocking)


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
def test_fused_sums_with_kept_and_negative_axes(d):
    def fn(dy, x, w, b):
        gb = dy.sum(-2, keepdim=True)  # [1, o]
        return w - (dy.transpose(0, 1) @ x) * 0.01, b - gb * 0.01, (x.transpose(0, 1) @ dy), x.sum(0, keepdim=True)
    rng = np.random.default_rng(9)
    arrays = [_arr(rng, (37, 23), d), _arr(rng, (37, 29), d), _arr(rng, (23, 29), d), _arr(rng, (1, 23), d)]
    for blocking in (None, TINY):
        text = _run(fn, arrays, d, blocking)
    assert "for rowsum" in text and "for colsum" in text
    assert KernelKind.REDUCTION not in _kernel_kinds(fn, arrays)


def test_fused_sum_runs_inside_the_gemm_kernel():
    specs = [kiln.ShapeDtype(s) for s in [(256, 128), (256, 96), (128, 96), (128,)]]
    lo = kiln.compile(bias_grad_rows).lower(*specs)
    plan = lo.as_text("plan")
    assert "-> 1 kernels" in plan and "[reduction]" not in plan
    text = lo.as_text("kernels")
    # the row sums are taken from the packed a panels, before the tiles, and the bias update stored after
    assert text.index("gemm_a") < text.index("for rowsum") < text.index("for rowsum_last") < text.index("tile_mma")
    lo = kiln.compile(bias_grad_cols).lower(*[kiln.ShapeDtype(s) for s in [(256, 96), (256, 128), (128, 96),
                                                                           (96,)]])
    assert "for colsum" in lo.as_text("kernels") and "[reduction]" not in lo.as_text("plan")


def test_relu_backward_leaves_an_elementwise_kernel():
    """The MLP's pattern: dy = select(mask, 0, g) feeds the sum and the weight gradient; the sum
    joins the GEMM and the select stays behind as an elementwise kernel that writes dy."""
    def step(g, h, x, w, b):
        dy = kiln.where(h > 0, g, kiln.zeros_like(g))
        return w - (dy.transpose(0, 1) @ x) * 0.01, b - dy.sum(0) * 0.01
    rng = np.random.default_rng(3)
    d = dt.float32
    arrays = [_arr(rng, (96, 40), d), _arr(rng, (96, 40), d), _arr(rng, (96, 30), d), _arr(rng, (40, 30), d),
              _arr(rng, (40,), d)]
    assert _kernel_kinds(step, arrays) == [KernelKind.ELEMENTWISE, KernelKind.MATMUL]
    for blocking in (None, TINY):
        _run(step, arrays, d, blocking)


def test_a_sum_the_gemm_epilogue_reads_is_not_moved():
    """y = dyᵀ x - dy.sum(0)[:, None]: the epilogue reads the sum at every tile, so the sum stays
    in its reduction kernel (the GEMM's tiles would race with it)."""
    def fn(dy, x):
        return dy.transpose(0, 1) @ x - dy.sum(0).reshape(-1, 1)
    rng = np.random.default_rng(4)
    arrays = [_arr(rng, (50, 20), dt.float32), _arr(rng, (50, 30), dt.float32)]
    assert KernelKind.REDUCTION in _kernel_kinds(fn, arrays)
    _run(fn, arrays, dt.float32, TINY)


@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_fused_sums_are_taken_once(threads, monkeypatch):
    """With N split over tasks every task packs the same a rows; only the first column block's
    task sums them and writes their update (the others would write the same rows again: a race
    on an in-place update). With M split, each row group's task sums its own rows."""
    monkeypatch.setattr(native_pool, "_num_threads", threads)
    monkeypatch.setattr(gemm, "host_threads", lambda: threads)
    rng = np.random.default_rng(threads)
    d = dt.float32
    arrays = [_arr(rng, (512, 64), d), _arr(rng, (512, 700), d), _arr(rng, (64, 700), d), _arr(rng, (64,), d)]
    text = _run(bias_grad_rows, arrays, d)  # N = 700 columns split over the tasks
    assert re.search(r"for rowsum\d+ in 0\.\.select\(\(\(.*% \d+\) == 0\), 1, 0\)", text), text[:3000]
    arrays = [_arr(rng, (512, 700), d), _arr(rng, (512, 64), d), _arr(rng, (700, 64), d), _arr(rng, (700,), d)]
    text = _run(bias_grad_rows, arrays, d)  # M = 700 rows split over the tasks, N = 64
    assert "for rowsum" in text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bsz=st.integers(1, 60), o=st.integers(1, 50), i=st.integers(1, 70), f64=st.booleans(),
       tiny=st.booleans(), which=st.sampled_from(["rows", "cols", "transposed"]))
def test_random_epilogues_match_reference(bsz, o, i, f64, tiny, which):
    d = dt.float64 if f64 else dt.float32
    rng = np.random.default_rng(bsz * 7919 + o * 31 + i)
    if which == "transposed":
        arrays = [_arr(rng, (o, bsz), d), _arr(rng, (bsz, i), d), _arr(rng, (o, i), d), _arr(rng, (i, o), d),
                  _arr(rng, (i, o), d)]
        _run(transposed_update, arrays, d, TINY if tiny else None)
        return
    fn = bias_grad_rows if which == "rows" else bias_grad_cols
    arrays = [_arr(rng, (bsz, o), d), _arr(rng, (bsz, i), d), _arr(rng, (o, i) if which == "rows" else (i, o), d),
              _arr(rng, (o,), d)]
    _run(fn, arrays, d, TINY if tiny else None)
