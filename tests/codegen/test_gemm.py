"""kiln's own GEMM (kiln/codegen/gemm.py, host.py, gemm_kir.py and the tile_mma statement):
results against the reference interpreter over random shapes, layouts, batches and fused
epilogues, float32 and float64, with the host's blocking and with tiny blockings that make
every edge (partial tiles, several depth / row / column blocks, task splits) appear."""
from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln
import kiln.nn.functional as F
from kiln.codegen import gemm
from kiln.codegen.gemm_kir import expand_tile_mma
from kiln.codegen.host import HostInfo, parse_cache_size, read_cache_sizes, vector_shape
from kiln.codegen.kir import BufferParam, KernelFunc, Loop, Store, TileMMA, Var, const, idx, op, Load
from kiln.codegen.kir_eval import run_kernel
from kiln.codegen.kir_verify import KernelIRError, verify_kernel
from kiln.ir import dtypes as dt
from kiln.runtime import native_pool
from kiln.runtime.llvm_backend import run_kernel_native

# tiny blocks: 3x16 tiles, 5 deep, 6 rows, 32 columns per block -> every loop runs several times
TINY = gemm.Blocking(mr=3, nr=16, kc=5, mc=6, nc=32, min_macs=1)
ODD = gemm.Blocking(mr=5, nr=8, kc=7, mc=10, nc=24, min_macs=1)
TOL = {dt.float32: dict(rtol=2e-5, atol=2e-5), dt.float64: dict(rtol=1e-12, atol=1e-12)}


def _arr(rng, shape, d):
    return rng.standard_normal(shape).astype(d.np_dtype)


def _packs(m, k, n, d, blocking):
    with gemm.override_blocking(blocking) if blocking is not None else contextlib.nullcontext():
        return gemm.packs(m, n, k, d.itemsize)


def _check(fn, arrays, d, blocking=None, expect_gemm=True):
    """Compile `fn` natively (under `blocking`), compare with the reference backend, and check
    whether the packed GEMM (a tile_mma) was used."""
    args = [kiln.from_numpy(a) for a in arrays]
    f = kiln.compile(fn)

    def results(r):
        return [x.numpy() for x in (r if isinstance(r, tuple) else (r,))]
    with gemm.override_blocking(blocking) if blocking is not None else contextlib.nullcontext():
        got = results(f(*args))
        text = f.lower(*args).as_text("kernels")
    want = results(kiln.compile(fn, backend="reference")(*args))
    k = max([a.shape[-1] for a in arrays if a.ndim >= 2] + [1])
    tol = TOL[d]
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=tol["rtol"] * k, atol=tol["atol"] * k)
    assert ("tile_mma" in text) == expect_gemm, text[:2000]


# -- shapes: 1, primes, non-multiples of the tile, several blocks -----------------------------------

SHAPES = [(4, 4, 16), (7, 5, 3), (13, 11, 17), (31, 37, 29), (64, 64, 64), (97, 23, 41), (5, 129, 33),
          (61, 16, 100), (100, 90, 80), (131, 67, 97)]


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
@pytest.mark.parametrize("blocking", [None, TINY, ODD], ids=["host", "tiny", "odd"])
@pytest.mark.parametrize("mkn", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_plain_gemm_matches_reference(mkn, blocking, d):
    m, k, n = mkn
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    _check(lambda a, b: a @ b, [_arr(rng, (m, k), d), _arr(rng, (k, n), d)], d, blocking,
           expect_gemm=_packs(m, k, n, d, blocking))


@pytest.mark.parametrize("mkn", [(1, 64, 64), (64, 64, 1), (3, 3, 3), (2, 100, 50), (100, 1, 100), (64, 64, 64),
                                 (256, 256, 4), (4, 256, 256)],
                         ids=lambda s: "x".join(map(str, s)))
def test_small_and_vector_products_skip_packing(mkn):
    m, k, n = mkn
    rng = np.random.default_rng(7)
    _check(lambda a, b: a @ b, [_arr(rng, (m, k), dt.float32), _arr(rng, (k, n), dt.float32)], dt.float32,
           expect_gemm=False)


# -- layouts: transposed, strided and padded operands are read in the packing ---------------------

@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
@pytest.mark.parametrize("layout", ["a.T", "b.T", "both.T", "strided", "pad", "broadcast"])
def test_operand_layouts_are_handled_in_the_packing(layout, d):
    rng = np.random.default_rng(hash(layout) % 1000)
    m, k, n = 29, 19, 37
    if layout == "a.T":
        fn, arrays = (lambda a, b: a.t() @ b), [_arr(rng, (k, m), d), _arr(rng, (k, n), d)]
    elif layout == "b.T":
        fn, arrays = (lambda a, b: a @ b.t()), [_arr(rng, (m, k), d), _arr(rng, (n, k), d)]
    elif layout == "both.T":
        fn, arrays = (lambda a, b: a.t() @ b.t()), [_arr(rng, (k, m), d), _arr(rng, (n, k), d)]
    elif layout == "strided":  # numpy views: read in place through their strides
        big_a, big_b = _arr(rng, (2 * m, k + 3), d), _arr(rng, (k, 3 * n), d)
        fn, arrays = (lambda a, b: a @ b), [big_a[::2, 1:k + 1], big_b[:, ::-3]]
        assert not arrays[0].flags.c_contiguous and not arrays[1].flags.c_contiguous
    elif layout == "pad":
        fn = lambda a, b: F.pad(a, (0, 2, 1, 0)) @ b  # noqa: E731 - zero rows and columns in the prologue
        arrays = [_arr(rng, (m, k), d), _arr(rng, (k + 2, n), d)]
    else:
        fn = lambda a, b: a @ b  # noqa: E731 - the weight broadcast over the batch
        arrays = [_arr(rng, (3, m, k), d), _arr(rng, (k, n), d)]
    for blocking in (None, TINY):
        _check(fn, arrays, d, blocking, expect_gemm=_packs(m, k, n, d, blocking))


# -- batched ----------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
@pytest.mark.parametrize("batch", [(1,), (3,), (2, 3)], ids=str)
def test_batched_gemm_matches_reference(batch, d):
    rng = np.random.default_rng(len(batch) * 10 + batch[-1])
    m, k, n = 23, 17, 35
    for blocking in (None, TINY):
        _check(lambda a, b: a @ b, [_arr(rng, batch + (m, k), d), _arr(rng, batch + (k, n), d)], d, blocking,
               expect_gemm=_packs(m, k, n, d, blocking))


# -- fused epilogues ----------------------------------------------------------------------------

EPILOGUES = {
    "bias_relu": (lambda a, b, c, r: (a @ b + c).relu()),
    "linear_gelu": (lambda a, b, c, r: F.gelu(F.linear(a, b.t(), c))),
    "residual": (lambda a, b, c, r: a @ b + r),
    "scale_sigmoid": (lambda a, b, c, r: ((a @ b) * 0.125).sigmoid()),
    "two_outputs": (lambda a, b, c, r: (a @ b, (a @ b + c).tanh())),
    "reshape": (lambda a, b, c, r: (a @ b).reshape(-1) * 2.0),
    "cast": (lambda a, b, c, r: (a @ b + r).to(kiln.float64 if a.dtype == kiln.float32 else kiln.float32)),
}


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
@pytest.mark.parametrize("name", list(EPILOGUES))
def test_fused_epilogues_match_reference(name, d):
    rng = np.random.default_rng(len(name))
    m, k, n = 41, 13, 50
    arrays = [_arr(rng, (m, k), d), _arr(rng, (k, n), d), _arr(rng, (n,), d), _arr(rng, (m, n), d)]
    for blocking in (None, TINY):
        _check(EPILOGUES[name], arrays, d, blocking, expect_gemm=_packs(m, k, n, d, blocking))


def test_epilogue_runs_inside_the_gemm_kernel():
    f = kiln.compile(lambda a, b, c: (a @ b + c).relu())
    lo = f.lower(kiln.ShapeDtype((128, 64)), kiln.ShapeDtype((64, 96)), kiln.ShapeDtype((96,)))
    assert "-> 1 kernels" in lo.as_text("plan")
    text = lo.as_text("kernels")
    # the bias is read and the relu'd result stored inside the tile loop, after the tile's product
    mma, last = text.index("tile_mma"), text.index("for last")
    assert mma < last < text.index("in2[") < text.index("out0[")


# -- random shapes (hypothesis) ------------------------------------------------------------------

@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 70), k=st.integers(1, 40), n=st.integers(1, 90), batch=st.integers(1, 3),
       trans_a=st.booleans(), trans_b=st.booleans(), f64=st.booleans(), tiny=st.booleans(),
       epilogue=st.sampled_from(["none", "bias_relu", "residual"]))
def test_random_gemms_match_reference(m, k, n, batch, trans_a, trans_b, f64, tiny, epilogue):
    d = dt.float64 if f64 else dt.float32
    rng = np.random.default_rng(m * 7919 + k * 31 + n)
    a = _arr(rng, (batch, k, m) if trans_a else (batch, m, k), d)
    b = _arr(rng, (batch, n, k) if trans_b else (batch, k, n), d)
    c, r = _arr(rng, (n,), d), _arr(rng, (batch, m, n), d)

    def fn(a, b, c, r):
        y = (a.transpose(1, 2) if trans_a else a) @ (b.transpose(1, 2) if trans_b else b)
        if epilogue == "bias_relu":
            return (y + c).relu()
        if epilogue == "residual":
            return y + r
        return y
    args = [kiln.from_numpy(x) for x in (a, b, c, r)]
    f = kiln.compile(fn)
    if tiny:
        with gemm.override_blocking(TINY):
            got = f(*args).numpy()
    else:
        got = f(*args).numpy()
    want = kiln.compile(fn, backend="reference")(*args).numpy()
    np.testing.assert_allclose(got, want, rtol=TOL[d]["rtol"] * k, atol=TOL[d]["atol"] * k)


# -- threads ------------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_gemm_matches_reference(threads, monkeypatch):
    monkeypatch.setattr(native_pool, "_num_threads", threads)
    monkeypatch.setattr(gemm, "host_threads", lambda: threads)
    rng = np.random.default_rng(threads)
    a, b, c = _arr(rng, (203, 256), dt.float32), _arr(rng, (256, 700), dt.float32), _arr(rng, (700,), dt.float32)
    fn = lambda a, b, c: (a @ b + c).relu()  # noqa: E731
    _check(fn, [a, b, c], dt.float32)
    if threads > 1:
        from kiln.runtime.llvm_backend import compile_graph
        ex = compile_graph(kiln.make_graph(fn)(*[kiln.from_numpy(x) for x in (a, b, c)]))
        assert ex.parallel
        assert "slot" in ex.program.kernels[0].body[0].var.name


def test_split_tasks_covers_the_product_once():
    blk = gemm.Blocking(12, 32, 128, 120, 4096)
    for batch, m, n, threads in [(1, 1024, 1024, 2), (1, 4000, 64, 4), (1, 64, 4000, 3), (8, 512, 512, 2),
                                 (1, 30, 30, 2)]:
        sp = gemm.split_tasks(batch, m, n, 256, blk, threads)
        assert sp.mg * sp.rows_per_group >= m > (sp.mg - 1) * sp.rows_per_group
        assert sp.nj * sp.nc >= n > (sp.nj - 1) * sp.nc and sp.nc % blk.nr == 0
        if m * n * 256 >= 1 << 21 and batch < threads:
            assert sp.tasks >= threads


# -- host and blocking -----------------------------------------------------------------------------

def test_cache_sizes_are_read_from_sysfs(tmp_path):
    for k, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"),
                                              (3, "Unified", "64M")]):
        p = tmp_path / f"index{k}"
        p.mkdir()
        (p / "level").write_text(f"{level}\n")
        (p / "type").write_text(kind + "\n")
        (p / "size").write_text(size + "\n")
    assert read_cache_sizes(str(tmp_path)) == {1: 48 << 10, 2: 2 << 20, 3: 64 << 20}
    assert read_cache_sizes(str(tmp_path / "missing"))[1] == 32 << 10  # defaults
    assert parse_cache_size("65536") == 65536 and parse_cache_size("1M") == 1 << 20


@pytest.mark.parametrize("features,expect", [("+avx2,+fma,-avx512f", (256, 16, True)),
                                             ("+avx512f,+avx2,+fma", (512, 32, True)),
                                             ("+sse2,-avx", (128, 16, False)), ("+neon", (128, 32, True))])
def test_vector_shape_from_llvm_features(features, expect):
    assert vector_shape(features) == expect


@pytest.mark.parametrize("bits,regs,itemsize,mr,nr", [(512, 32, 4, 12, 32), (512, 32, 8, 12, 16),
                                                      (256, 16, 4, 6, 16), (128, 16, 8, 6, 4)])
def test_blocking_follows_the_host(bits, regs, itemsize, mr, nr):
    h = HostInfo(l1d=32 << 10, l2=1 << 20, l3=32 << 20, vector_bits=bits, vector_registers=regs, has_fma=True)
    b = gemm.host_blocking(itemsize, h)
    assert (b.mr, b.nr) == (mr, nr)
    assert b.kc * b.nr * itemsize <= h.l1d               # a b panel in L1
    assert b.mc * b.kc * itemsize <= h.l2 // 2           # an A block in half of L2
    assert b.mc % b.mr == 0 and b.nc % b.nr == 0


def test_bad_blocking_is_refused():
    with pytest.raises(ValueError, match="mc=7 must be a multiple of mr=3"):
        gemm.Blocking(3, 16, 8, 7, 32)
    with pytest.raises(ValueError, match="kc=0 must be >= 1"):
        gemm.Blocking(3, 16, 0, 6, 32)


# -- the tile_mma statement ------------------------------------------------------------------------

def _tile_kernel(d, mr=3, nr=8, kc=5, accumulate_twice=True):
    """c = A1 x B1 (+ A2 x B2): two tile_mma into a scratch tile, then copied out."""
    a = BufferParam("a", d, 2 * kc * mr, "r")
    b = BufferParam("b", d, 2 * kc * nr, "r")
    c = BufferParam("c", d, mr * (nr + 2), "rw")   # ldc = nr + 2: rows apart
    out = BufferParam("out", d, mr * nr, "w")
    body = [TileMMA("c", idx(0), nr + 2, "a", idx(0), "b", idx(0), idx(kc), mr, nr, const(False, dt.bool_))]
    if accumulate_twice:
        body.append(TileMMA("c", idx(0), nr + 2, "a", idx(kc * mr), "b", idx(kc * nr), idx(kc), mr, nr,
                            const(True, dt.bool_)))
    i, j = Var("i", dt.int64), Var("j", dt.int64)
    body.append(Loop(i, idx(mr), [Loop(j, idx(nr), [
        Store("out", op("add", op("mul", i, idx(nr)), j), Load("c", op("add", op("mul", i, idx(nr + 2)), j), d))])]))
    return KernelFunc("tile", [a, b, c, out], body)


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
def test_tile_mma_native_evaluator_and_expansion_agree(d):
    mr, nr, kc = 3, 8, 5
    k = _tile_kernel(d, mr, nr, kc)
    verify_kernel(k)
    assert "tile_mma 3x8 c[0; ldc=10] += a[0] * b[0] k=0..5" in str(k)
    assert "accumulate=true" in str(k).lower() or "accumulate=True" in str(k)
    rng = np.random.default_rng(1)
    a, b = _arr(rng, (2 * kc * mr,), d), _arr(rng, (2 * kc * nr,), d)
    pa, pb = a.reshape(2, kc, mr).astype(np.float64), b.reshape(2, kc, nr).astype(np.float64)
    want = pa[0].T @ pb[0] + pa[1].T @ pb[1]
    ev = run_kernel(k, {"a": a, "b": b, "c": np.zeros(mr * (nr + 2), d.np_dtype), "out": np.zeros(mr * nr, d.np_dtype)})
    ex = expand_tile_mma(k)
    verify_kernel(ex)
    assert "tile_mma" not in str(ex)
    ev2 = run_kernel(ex, {"a": a, "b": b, "c": np.zeros(mr * (nr + 2), d.np_dtype),
                          "out": np.zeros(mr * nr, d.np_dtype)})
    native = run_kernel_native(k, [a, b])
    tol = TOL[d]
    for got in (ev["out"], ev2["out"], native[-1]):
        np.testing.assert_allclose(np.asarray(got).reshape(mr, nr), want, **tol)


def test_tile_mma_renders_to_vector_fmas():
    from kiln.codegen.llvm_render import render_program
    text = render_program("t", [_tile_kernel(dt.float32)], [("tile", [0, 1, 2, 3])])
    assert "llvm.fma.v8f32" in text and "<8 x float>" in text  # nr=8: one vector per row on every x86 host


@pytest.mark.parametrize("change,msg", [
    (dict(c="a"), "accumulates into a, which is not a read-write buffer"),
    (dict(c="nope"), "unknown buffer nope"),
    (dict(ldc=4), "ldc >= nr"),
    (dict(accumulate=idx(1)), "accumulate flag is not bool"),
    (dict(kc=const(2.0, dt.float32)), "not int64"),
])
def test_verifier_names_a_bad_tile_mma(change, msg):
    import dataclasses
    k = _tile_kernel(dt.float32, accumulate_twice=False)
    k.body[0] = dataclasses.replace(k.body[0], **change)
    with pytest.raises(KernelIRError, match=msg):
        verify_kernel(k)


def test_tile_mma_needs_one_float_dtype():
    k = _tile_kernel(dt.float32, accumulate_twice=False)
    k.params[0] = BufferParam("a", dt.float64, k.params[0].numel, "r")
    with pytest.raises(KernelIRError, match="one float dtype"):
        verify_kernel(k)


@pytest.mark.skipif(not (gemm.host_info().has_fma and gemm.host_info().vector_bits >= 256
                          and __import__("platform").machine() in ("x86_64", "AMD64")),
                    reason="reads x86 AVX assembly")
def test_host_gemm_microkernel_keeps_its_tile_in_vector_registers():
    """The microkernel's k loop: one FMA per accumulator register (zmm on AVX-512, ymm on
    AVX2), and no stack traffic (no spills)."""
    f = kiln.compile(lambda a, b: a @ b)
    blk = gemm.host_blocking(4)
    m = 21 * blk.mr  # rows the blocking's full tile height covers exactly (252 for mr = 12)
    asm = f.lower(kiln.ShapeDtype((m, 256)), kiln.ShapeDtype((256, 256))).as_text("asm")
    # the innermost loop with the most FMAs is the microkernel's
    loops = re.findall(r"(\.LBB\d+_\d+):\n((?:(?!\.LBB).*\n)*?)\s*j\w+\s+\1\n", asm)
    best = max((body for _, body in loops), key=lambda b: len(re.findall(r"vfmadd\w+", b)), default="")
    fmas = re.findall(r"vfmadd\w+\s+[^\n]*", best)
    assert len(fmas) == blk.mr * blk.nr // gemm.host_info().lanes(4), best
    reg = "zmm" if gemm.host_info().vector_bits == 512 else "ymm"
    assert all(reg in f for f in fmas), fmas
    assert not re.search(r"\(%rsp\)", best), "the microkernel's loop spills to the stack"


def test_blocks_are_balanced():
    assert gemm.balanced_block(1024, 1020, 12) == 516
    assert gemm.balanced_block(1000, 128, 1) == 125
    assert gemm.balanced_block(30, 128, 8) == 32
    assert gemm.balanced_block(7, 5, 1) == 4


def test_strided_packing_copies_stay_scalar():
    """The packing loops that write a panel strided carry a vector width of 1, which LLVM
    honours only with a well-formed loop ID: no scatter is left in the optimized IR. (`b.T`:
    its packing reads along k; a row-major A of full tiles is read in place, not packed.)"""
    f = kiln.compile(lambda a, b: a @ b.T)
    lo = f.lower(kiln.ShapeDtype((256, 256)), kiln.ShapeDtype((256, 256)))
    assert "vector=1" in lo.as_text("kernels")
    assert "masked.scatter" not in lo.as_text("llvm-opt")


def test_full_panels_are_packed_without_clamped_indices():
    """Packing copies the full panels with unclamped (contiguous) indices; only the edge panel
    clamps its rows (columns) into the operand. The weight gradient dyᵀ @ x (784 columns: 24
    full 32-wide panels and one of 16) reads x with one clamped load, and its A panels (dyᵀ,
    100 rows: 12 full 8-row panels) read dy with one."""
    f = kiln.compile(lambda dy, x: dy.T @ x)
    with gemm.override_blocking(gemm.Blocking(mr=8, nr=32, kc=256, mc=96, nc=800)):
        lo = f.lower(kiln.ShapeDtype((512, 100)), kiln.ShapeDtype((512, 784)))
        text = lo.as_text("kernels")
    loads = {name: re.findall(rf"= {name}\[([^\n]*)\]$", text, re.M) for name in ("in0", "in1")}
    for name, idxs in loads.items():
        assert len(idxs) == 2, (name, idxs)
        assert sum("min(" in i for i in idxs) == 1, (name, idxs)
    rng = np.random.default_rng(5)
    dy, x = _arr(rng, (512, 100), dt.float32), _arr(rng, (512, 784), dt.float32)
    _check(lambda dy, x: dy.T @ x, [dy, x], dt.float32, gemm.Blocking(mr=8, nr=32, kc=256, mc=96, nc=800))


def test_a_reshaped_row_major_operand_is_packed_along_its_rows():
    """A flattened activation (`x.reshape(64, -1)` of a row-major [64, 16, 8, 8] kernel input,
    the CNN's fc1 weight gradient dyᵀ @ x) is contiguous along its columns: B is packed by
    contiguous copies from a plain position (no digit arithmetic, no scalar k-major loop).
    A permuted input reshaped is not contiguous and keeps the strided copy; both match the
    reference interpreter."""
    rng = np.random.default_rng(9)
    dy, x = _arr(rng, (64, 128), dt.float32), _arr(rng, (64, 16, 8, 8), dt.float32)
    flat = lambda dy, x: dy.T @ x.reshape(64, -1)  # noqa: E731
    _check(flat, [dy, x], dt.float32)
    text = kiln.compile(flat).lower(kiln.from_numpy(dy), kiln.from_numpy(x)).as_text("kernels")
    x_loads = re.findall(r"= in1\[([^\n]*)\]$", text, re.M)
    assert x_loads and not any("/" in i or "%" in i for i in x_loads), x_loads
    assert "vector=1" not in text
    perm = lambda dy, x: dy.T @ x.permute(0, 2, 3, 1).reshape(64, -1)  # noqa: E731
    _check(perm, [dy, x], dt.float32)


def test_many_small_matrices_share_a_few_scratch_slots(monkeypatch):
    """A batch of 40 products is 40 tasks, but the scratch holds SLOTS_PER_THREAD x threads
    sets of panels and C blocks, each slot running its tasks in turn."""
    monkeypatch.setattr(gemm, "host_threads", lambda: 2)
    rng = np.random.default_rng(11)
    a, b = _arr(rng, (40, 9, 10), dt.float32), _arr(rng, (40, 10, 17), dt.float32)
    _check(lambda a, b: (a @ b).relu(), [a, b], dt.float32, TINY)
    with gemm.override_blocking(TINY):
        lo = kiln.compile(lambda a, b: a @ b).lower(kiln.from_numpy(a), kiln.from_numpy(b))
        text = lo.as_text("kernels")
    slots = gemm.SLOTS_PER_THREAD * 2
    assert re.search(rf"for slot\d+ in 0\.\.{slots}:", text), text[:1500]
    scratch = [line for line in text.splitlines() if "scratch f32" in line]
    c_elems = max(int(line.split("[")[1].rstrip("]")) for line in scratch)
    assert c_elems < 40 * 9 * 32  # not one C block per task
