"""The small-matrix path: GEMM operands read in place instead of packed (`TileMMA.a_steps`,
`b_kstep`): a k-contiguous A (x in x @ w.T) when every tile is full, a row-major B for products
of at most `B_DIRECT_ROWS` rows with full panels. The statement's three implementations (numpy
evaluator, plain-loop expansion, LLVM microkernel) agree; the lowered GEMM reads in place where
it should, packs where it must, and matches the reference interpreter."""
from __future__ import annotations

import re

import numpy as np
import pytest

import kiln
from kiln.codegen import gemm
from kiln.codegen.gemm_kir import expand_tile_mma
from kiln.codegen.kir import BufferParam, KernelFunc, Load, Loop, Store, TileMMA, Var, const, idx, op
from kiln.codegen.kir_eval import run_kernel
from kiln.codegen.kir_verify import verify_kernel
from kiln.ir import dtypes as dt
from kiln.runtime import native_pool
from kiln.runtime.llvm_backend import compile_graph, run_kernel_native
from helpers import check_gemm

TOL = {dt.float32: 2e-5, dt.float64: 1e-12}


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
def test_tile_mma_with_operands_in_place_agrees_in_all_three_forms(d):
    """A is a row-major 7 x 11 matrix read from row 2, depth 3 (steps (11, 1)); B a row-major
    9 x 20 matrix read from row 1, column 4 (k step 20)."""
    mr, nr, kc = 3, 8, 5
    a_at, b_at = 2 * 11 + 3, 1 * 20 + 4
    k = KernelFunc("tile", [BufferParam("a", d, 77, "r"), BufferParam("b", d, 180, "r"),
                            BufferParam("c", d, mr * nr, "rw"), BufferParam("out", d, mr * nr, "w")],
                   [TileMMA("c", idx(0), nr, "a", idx(a_at), "b", idx(b_at), idx(kc), mr, nr,
                            const(False, dt.bool_), (11, 1), 20)])
    i, j = Var("i", dt.int64), Var("j", dt.int64)
    at = op("add", op("mul", i, idx(nr)), j)
    k.body.append(Loop(i, idx(mr), [Loop(j, idx(nr), [Store("out", at, Load("c", at, d))])]))
    verify_kernel(k)
    assert "a_steps=11,1 b_kstep=20" in str(k)
    rng = np.random.default_rng(2)
    a = rng.standard_normal(77).astype(d.np_dtype)
    b = rng.standard_normal(180).astype(d.np_dtype)
    want = a.reshape(7, 11)[2:2 + mr, 3:3 + kc].astype(np.float64) @ b.reshape(9, 20)[1:1 + kc, 4:4 + nr]
    bufs = lambda: {"a": a, "b": b, "c": np.zeros(mr * nr, d.np_dtype), "out": np.zeros(mr * nr, d.np_dtype)}  # noqa: E731
    ev = run_kernel(k, bufs())["out"]
    ex = expand_tile_mma(k)
    verify_kernel(ex)
    ev2 = run_kernel(ex, bufs())["out"]
    native = run_kernel_native(k, [a, b])[-1]
    for got in (ev, ev2, native):
        np.testing.assert_allclose(np.asarray(got).reshape(mr, nr), want, rtol=TOL[d] * 10, atol=TOL[d] * 10)


def test_tile_mma_in_place_read_out_of_bounds_is_an_error():
    """Rows 0, 1 at step 11 and depths 0..3 read a[0..14]: a 15-element a holds them, 14 does not."""
    def kernel(size):
        return KernelFunc("tile", [BufferParam("a", dt.float32, size, "r"), BufferParam("b", dt.float32, 32, "r"),
                                   BufferParam("c", dt.float32, 16, "rw")],
                          [TileMMA("c", idx(0), 8, "a", idx(0), "b", idx(0), idx(4), 2, 8, const(False, dt.bool_),
                                   (11, 1))])
    bufs = lambda n: {"a": np.ones(n, np.float32), "b": np.ones(32, np.float32), "c": np.zeros(16, np.float32)}  # noqa: E731
    np.testing.assert_array_equal(run_kernel(kernel(15), bufs(15))["c"], np.full(16, 4.0, np.float32))
    with pytest.raises(IndexError, match=r"tile_mma reads a\[0\.\.14\] out of bounds \(size 14\)"):
        run_kernel(kernel(14), bufs(14))


def _steps(text):
    mma = re.search(r"tile_mma .*", text).group(0)
    a = re.search(r"a_steps=(\d+),(\d+)", mma)
    b = re.search(r"b_kstep=(\d+)", mma)
    return (tuple(map(int, a.groups())) if a else None), (int(b.group(1)) if b else None)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
def test_mlp_first_layer_reads_x_in_place(d, threads, monkeypatch):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((64, 784)).astype(d.np_dtype), rng.standard_normal((128, 784)).astype(d.np_dtype)
    a, b = _steps(check_gemm(lambda x, w: (x @ w.T).relu(), [x, w], d, threads, monkeypatch))
    assert a == (784, 1) and b is None   # x as it lies; w.T still packed (its copy transposes)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
def test_lstm_step_reads_both_operands_in_place(d, threads, monkeypatch):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((64, 256)).astype(d.np_dtype), rng.standard_normal((256, 1024)).astype(d.np_dtype)
    assert _steps(check_gemm(lambda x, w: x @ w, [x, w], d, threads, monkeypatch)) == ((256, 1), 1024)


@pytest.mark.parametrize("case", ["rows", "cols", "kstride", "rowstride", "batched", "tall", "prologue"])
def test_in_place_only_where_it_is_exact(case, monkeypatch):
    rng = np.random.default_rng(5)
    f32 = np.float32
    fn = lambda x, w: x @ w  # noqa: E731
    if case == "rows":      # 65 rows: the edge tile would read past A: packed (clamped rows)
        arrays, expect = [rng.standard_normal((65, 256)), rng.standard_normal((256, 1024))], (None, 1024)
    elif case == "cols":    # 1000 columns: the edge panel would read past B: packed
        arrays, expect = [rng.standard_normal((64, 256)), rng.standard_normal((256, 1000))], ((256, 1), None)
    elif case == "kstride":  # x[:, ::2]: k not contiguous: packed
        arrays, expect = [rng.standard_normal((64, 512))[:, ::2], rng.standard_normal((256, 1024))], (None, 1024)
    elif case == "rowstride":  # x[::2]: rows 512 apart, k contiguous: in place
        arrays, expect = [rng.standard_normal((128, 256))[::2], rng.standard_normal((256, 1024))], ((512, 1), 1024)
    elif case == "batched":  # a batch of 3: the batch stride in the index
        arrays, expect = [rng.standard_normal((3, 64, 100)), rng.standard_normal((3, 100, 96))], ((100, 1), 96)
    elif case == "tall":    # more rows than B_DIRECT_ROWS: B packed (A in place, in tiles that cover 512 rows)
        arrays, expect = [rng.standard_normal((512, 256)), rng.standard_normal((256, 1024))], ((256, 1), None)
    else:                   # a weight broadcast over the batch in the GEMM's prologue: packed
        arrays, expect = [rng.standard_normal((3, 64, 256)), rng.standard_normal((256, 1024))], ((256, 1), None)
    arrays = [np.ascontiguousarray(a, f32) for a in arrays]
    if case in ("kstride", "rowstride"):  # a view passed to the program: read through its strides
        base = rng.standard_normal((64, 512) if case == "kstride" else (128, 256)).astype(f32)
        view = base[:, ::2] if case == "kstride" else base[::2]
        monkeypatch.setattr(native_pool, "_num_threads", 1)
        ex = compile_graph(kiln.make_graph(fn)(*[kiln.from_numpy(a) for a in arrays]))
        variant = ex._strided_variant([view, arrays[1]])
        np.testing.assert_allclose(variant.run([view, arrays[1]])[0], view.astype(np.float64) @ arrays[1],
                                   rtol=1e-4, atol=1e-3)
        text = variant.stages("kernels")
    else:
        text = check_gemm(fn, arrays, dt.float32, 1, monkeypatch)
    a, b = _steps(text)
    assert (a, b) == expect


@pytest.mark.parametrize("m, mr", [(1024, 8), (120, 12), (1000, 10), (97, None)])
def test_tile_height_that_covers_the_rows_lets_a_be_read_in_place(m, mr, monkeypatch):
    """1024 rows under 12-row tiles leave a 4-row edge; 8-row tiles cover them, and A is read in
    place. 97 rows (prime): no tile height covers them, A is packed."""
    blk = gemm.host_blocking(4)
    if blk.mr != 12:
        pytest.skip("row counts chosen for 12-row tiles (AVX-512)")
    rng = np.random.default_rng(m)
    x, w = rng.standard_normal((m, 200)).astype(np.float32), rng.standard_normal((64, 200)).astype(np.float32)
    text = check_gemm(lambda x, w: x @ w.T, [x, w], dt.float32, 1, monkeypatch)
    tile = int(re.search(r"tile_mma (\d+)x", text).group(1))
    a, _ = _steps(text)
    if mr is None:
        assert a is None and tile == gemm.tile_rows(m, blk)
    else:
        assert tile == mr and a == (200, 1)
