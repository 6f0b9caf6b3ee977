"""The `transpose_copy` kernel-IR statement (kir.TransposeCopy) and the GEMM packing that uses it:
its forms (numpy evaluator, plain-loop expansion, LLVM register transpose) agree on random
blocks, the verifiers name bad blocks, and GEMMs whose operands are read along k (x @ W.T, a
k-contiguous A that is packed, both of a transposed product) match the reference interpreter
with the packing done by vector permutes."""
from __future__ import annotations

import dataclasses
import platform
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln
from kiln.codegen import gemm
from kiln.codegen.cuda_render import CudaRenderError, check_renderable
from kiln.codegen.cuda_render import render_kernel as render_cuda
from kiln.codegen.gemm_kir import expand_block_stmts, expand_transpose_copy
from kiln.codegen.kir import BufferParam, KernelFunc, Loop, TransposeCopy, Var, const, idx, op
from kiln.codegen.kir_eval import run_kernel
from kiln.codegen.kir_verify import KernelIRError, check_bounds, verify_kernel
from kiln.codegen.llvm_render import render_program
from kiln.ir import dtypes as dt
from kiln.runtime.llvm_backend import run_kernel_native
from helpers import check_gemm

BLOCKS = 3  # copies per kernel, one per loop iteration


def _kernel(d, rows, cols, src_ld, dst_ld, src_off=0, dst_off=0, src_step=None, dst_step=None):
    """`BLOCKS` transpose_copy statements in a loop: block b reads src from src_off + b*src_step
    and writes dst from dst_off + b*dst_step; returns the kernel and the buffers' sizes."""
    src_step = rows * abs(src_ld) + cols if src_step is None else src_step
    dst_step = cols * dst_ld if dst_step is None else dst_step
    first = src_off + min(0, (rows - 1) * src_ld)
    assert first >= 0
    src_n = src_off + (BLOCKS - 1) * src_step + max(0, (rows - 1) * src_ld) + cols + 2
    dst_n = dst_off + (BLOCKS - 1) * dst_step + (cols - 1) * dst_ld + rows + 3
    b = Var("b", dt.int64)
    body = [Loop(b, idx(BLOCKS), [TransposeCopy(
        "dst", op("add", idx(dst_off), op("mul", b, idx(dst_step))), dst_ld,
        "src", op("add", idx(src_off), op("mul", b, idx(src_step))), src_ld, rows, cols)])]
    return KernelFunc("tc", [BufferParam("src", d, src_n, "r"), BufferParam("dst", d, dst_n, "w")], body), \
        (src_n, dst_n, src_step, dst_step)


def _expected(src, dst_n, rows, cols, src_ld, dst_ld, src_off, dst_off, src_step, dst_step):
    want = np.zeros(dst_n, src.dtype)
    written = np.zeros(dst_n, bool)
    for b in range(BLOCKS):
        for r in range(rows):
            for c in range(cols):
                at = dst_off + b * dst_step + c * dst_ld + r
                want[at] = src[src_off + b * src_step + r * src_ld + c]
                written[at] = True
    return want, written


SHAPES = [(16, 16), (32, 16), (8, 8), (16, 8), (12, 16), (4, 4), (5, 7), (1, 9), (9, 1), (1, 1), (17, 33), (3, 20)]


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
@pytest.mark.parametrize("rows,cols", SHAPES, ids=lambda v: str(v))
def test_evaluator_expansion_and_llvm_agree(d, rows, cols):
    """Blocks that are and are not multiples of the host's vector square, at odd offsets, with
    leading dimensions past the block (the destination's too: the gaps stay untouched)."""
    src_ld, dst_ld, src_off, dst_off = cols + 3, rows + 1, 5, 2
    k, (src_n, dst_n, ss, ds) = _kernel(d, rows, cols, src_ld, dst_ld, src_off, dst_off)
    verify_kernel(k)
    check_bounds(k)
    rng = np.random.default_rng(rows * 100 + cols)
    src = rng.standard_normal(src_n).astype(d.np_dtype)
    want, written = _expected(src, dst_n, rows, cols, src_ld, dst_ld, src_off, dst_off, ss, ds)
    ev = run_kernel(k, {"src": src, "dst": np.zeros(dst_n, d.np_dtype)})["dst"]
    ex_k = expand_transpose_copy(k)
    verify_kernel(ex_k)
    assert "transpose_copy" not in str(ex_k)
    ex = run_kernel(ex_k, {"src": src, "dst": np.zeros(dst_n, d.np_dtype)})["dst"]
    native = np.asarray(run_kernel_native(k, [src])[-1])
    np.testing.assert_array_equal(ev, want)  # the gaps too: only the blocks are written
    np.testing.assert_array_equal(ex, want)
    np.testing.assert_array_equal(native[written], want[written])


@pytest.mark.parametrize("src_ld", [-40, 0, 16], ids=lambda v: f"ld{v}")
def test_source_rows_may_step_back_or_repeat(src_ld):
    """A negative leading dimension (rows read backwards) and 0 (one row broadcast) are copies too;
    the destination is packed (dst_ld = rows)."""
    d, rows, cols = dt.float32, 16, 16
    src_off = (rows - 1) * 40 if src_ld < 0 else 0
    k, (src_n, dst_n, ss, ds) = _kernel(d, rows, cols, src_ld, rows, src_off, 0, src_step=cols + 1)
    verify_kernel(k)
    check_bounds(k)
    src = np.random.default_rng(3).standard_normal(src_n).astype(np.float32)
    want, written = _expected(src, dst_n, rows, cols, src_ld, rows, src_off, 0, ss, ds)
    native = np.asarray(run_kernel_native(k, [src])[-1])
    np.testing.assert_array_equal(native[written], want[written])
    np.testing.assert_array_equal(run_kernel(k, {"src": src, "dst": np.zeros(dst_n, np.float32)})["dst"], want)


@pytest.mark.parametrize("bits", [128, 256, 512])
@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
def test_every_host_vector_shape_transposes_right(monkeypatch, d, bits):
    """The squares the renderer cuts follow the host's lanes (4x4 float32 on 128-bit vectors,
    8x8 on AVX2, 16x16 on AVX-512; half that for float64): rendered as for each host (the code
    runs here, on the widest), the copies agree with numpy."""
    from kiln.codegen import host
    real = host.host_info()
    monkeypatch.setattr(host, "host_info", lambda: dataclasses.replace(real, vector_bits=bits))
    rows, cols = 19, 21
    k, (src_n, dst_n, ss, ds) = _kernel(d, rows, cols, cols + 2, rows, 1, 0)
    src = np.random.default_rng(bits).standard_normal(src_n).astype(d.np_dtype)
    want, written = _expected(src, dst_n, rows, cols, cols + 2, rows, 1, 0, ss, ds)
    native = np.asarray(run_kernel_native(k, [src])[-1])
    np.testing.assert_array_equal(native[written], want[written])


def test_printed_form():
    k, _ = _kernel(dt.float32, 32, 16, 784, 32)
    assert "transpose_copy 32x16 dst[(b * 512); ld=32] = src[(b * 25104); ld=784]" in str(k)


def test_llvm_renders_a_register_transpose():
    """Vector loads of the source rows, shufflevectors, vector stores: no element moved alone."""
    k, _ = _kernel(dt.float32, 16, 16, 784, 16)
    text = render_program("t", [k], [("tc", [0, 1])])
    assert "shufflevector" in text and any(f"<{w} x float>" in text for w in (4, 8, 16))
    assert "extractelement" not in text and "masked.scatter" not in text and "masked.gather" not in text


def test_cuda_runs_the_expansion():
    """The CUDA renderer has no native form: it names the statement, and renders its expansion."""
    k, _ = _kernel(dt.float32, 8, 4, 10, 8)
    with pytest.raises(CudaRenderError, match="TransposeCopy"):
        check_renderable(k)
    src = render_cuda(expand_block_stmts(k)).source
    assert "dst[" in src and "src[" in src


@pytest.mark.parametrize("change,msg", [
    (dict(dst="nope"), "unknown buffer nope"),
    (dict(src="nope"), "unknown buffer nope"),
    (dict(dst="src"), "read-only buffer src"),
    (dict(dst_ld=3), "ld >= rows"),
    (dict(rows=0), "must be >= 1"),
    (dict(src_index=const(1.0, dt.float32)), "not int64"),
])
def test_verifier_names_a_bad_block(change, msg):
    k, _ = _kernel(dt.float32, 4, 4, 4, 4)
    k.body[0].body[0] = dataclasses.replace(k.body[0].body[0], **change)
    with pytest.raises(KernelIRError, match=msg):
        verify_kernel(k)


def test_verifier_needs_one_dtype():
    k, _ = _kernel(dt.float32, 4, 4, 4, 4)
    k.params[1] = BufferParam("dst", dt.float64, k.params[1].numel, "w")
    with pytest.raises(KernelIRError, match="one dtype"):
        verify_kernel(k)


@pytest.mark.parametrize("which", ["src", "dst"])
def test_bounds_checker_and_evaluator_reject_a_block_out_of_range(which):
    """One element short: the last block's last element lies past the buffer."""
    k, (src_n, dst_n, _, _) = _kernel(dt.float32, 5, 7, 9, 6)
    exact = max(0, 4 * 9) + 7 + (BLOCKS - 1) * (5 * 9 + 7) if which == "src" else (BLOCKS - 1) * 7 * 6 + 6 * 6 + 5
    k.params = [dataclasses.replace(p, numel=exact - 1) if p.name == which else p for p in k.params]
    verb = "reads" if which == "src" else "writes"
    with pytest.raises(KernelIRError, match=rf"transpose_copy {which}\[\d+\.\.{exact - 1}\] {verb} out of bounds"):
        check_bounds(k)
    bufs = {p.name: np.zeros(p.numel, np.float32) for p in k.params}
    with pytest.raises(IndexError, match=f"transpose_copy {verb} {which}"):
        run_kernel(k, bufs)
    k.params = [dataclasses.replace(p, numel=exact) if p.name == which else p for p in k.params]
    check_bounds(k)  # the exact size is enough


# ---------------------------------------------------------------------------------------------
# the GEMM packing through it
# ---------------------------------------------------------------------------------------------

# kc past the lanes (so whole blocks of lanes exist), several depth, row and column blocks
DEEP = gemm.Blocking(mr=5, nr=8, kc=40, mc=10, nc=24, min_macs=1)
TOL = {dt.float32: 2e-5, dt.float64: 1e-12}


def _gemm_text(fn, arrays, d, blocking=None):
    """`fn` checked natively against the reference interpreter (under `blocking`); its kernels' text."""
    if blocking is None:
        return check_gemm(fn, arrays, d)
    with gemm.override_blocking(blocking):
        return check_gemm(fn, arrays, d)


def _rand(shape, d, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(d.np_dtype)


dims = st.sampled_from([1, 2, 7, 8, 13, 16, 17, 31, 33, 47, 64])
depths = st.sampled_from([1, 5, 16, 17, 37, 48, 64, 100, 129])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=dims, n=dims, k=depths, d=st.sampled_from([dt.float32, dt.float64]), deep=st.booleans(),
       batch=st.sampled_from([(), (2,)]))
def test_gemm_with_weights_read_along_k_matches_the_reference(m, n, k, d, deep, batch):
    """x @ W.T: B = Wᵀ packed from W's rows (k contiguous)."""
    if batch:
        fn = lambda x, w: x @ w.transpose(-1, -2)  # noqa: E731
    else:
        fn = lambda x, w: x @ w.T  # noqa: E731
    _gemm_text(fn, [_rand(batch + (m, k), d, 1), _rand(batch + (n, k), d, 2)], d, DEEP if deep else None)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=dims, n=dims, k=depths, d=st.sampled_from([dt.float32, dt.float64]), deep=st.booleans())
def test_gemm_with_a_read_along_k_matches_the_reference(m, n, k, d, deep):
    """x @ w with x (m x k, k contiguous) packed where its rows fill no whole tiles, and the
    transposed product (x @ w.T).T (computed as w @ x.T: both operands read along k)."""
    x, w = _rand((m, k), d, 3), _rand((k, n), d, 4)
    _gemm_text(lambda x, w: x @ w, [x, w], d, DEEP if deep else None)
    _gemm_text(lambda x, w: (x @ w.T).T + 1.0, [x, _rand((n, k), d, 5)], d, DEEP if deep else None)


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
@pytest.mark.parametrize("m,n,k", [(64, 128, 784), (13, 40, 100), (33, 17, 64)])
def test_transposing_packs_use_the_statement(d, m, n, k):
    """Packing B = Wᵀ (and a packed k-contiguous A: 13 and 33 rows fill no tile height) through
    transpose_copy blocks, matching the reference."""
    text = _gemm_text(lambda x, w: x @ w.T, [_rand((m, k), d, 6), _rand((n, k), d, 7)], d, DEEP)
    lanes = gemm.host_info().lanes(d.itemsize)
    tcs = re.findall(r"transpose_copy (\d+)x(\d+) ", text)
    assert ("8", str(lanes)) in tcs, text[:3000]  # B's panels: nr = 8 columns
    if m in (13, 33):  # no tile height of 5 or 4 covers these rows: A is packed
        assert ("5", str(lanes)) in tcs, text[:3000]  # A's panels: mr = 5 rows


def test_an_operand_computed_in_the_prologue_keeps_the_scalar_copy():
    """W[:, ::2]ᵀ is read through its prologue (a strided slice): not a block of rows, k contiguous."""
    d = dt.float32
    text = _gemm_text(lambda x, w: x @ w[:, ::2].T, [_rand((40, 64), d, 8), _rand((48, 128), d, 9)], d, DEEP)
    assert "temp" not in text.split("kernel", 1)[0]  # the slice is read inside the GEMM kernel
    assert "tile_mma" in text and "transpose_copy" not in text


def test_mlp_forward_packing_has_no_whole_block_scalar_loop():
    """64x784 @ (128x784)ᵀ on the host blocking: K = 784 is 49 blocks of 16 float32, the depth
    blocks are whole blocks of lanes, so the full panels are packed by transpose_copy alone."""
    f = kiln.compile(lambda x, w: x @ w.T)
    text = f.lower(kiln.ShapeDtype((64, 784)), kiln.ShapeDtype((128, 784))).as_text("kernels")
    assert "transpose_copy" in text
    packing = text.split("transpose_copy", 1)[1].split("tile_mma", 1)[0]
    # after the block copies only the clamped edge panel's loop (qbe) holds scalar copies
    assert re.findall(r"for (\w+?)\d+ in", packing)[:1] == ["qbe"], packing[:2000]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or gemm.host_info().vector_bits < 256,
                    reason="reads x86 AVX assembly")
def test_packing_of_x_wT_is_vector_permutes():
    """The optimized code of x @ w.T: vector permutes present, no gathers or scatters."""
    lo = kiln.compile(lambda x, w: x @ w.T).lower(kiln.ShapeDtype((64, 784)), kiln.ShapeDtype((128, 784)))
    opt, asm = lo.as_text("llvm-opt"), lo.as_text("asm")
    assert "shufflevector" in opt
    assert not re.search(r"masked\.(gather|scatter)", opt)
    assert not re.search(r"\bv(p?gather|p?scatter)\w*", asm)
    assert len(re.findall(r"\bv(perm\w*|unpck\w*|shuf\w*)\b", asm)) >= 32, asm[:3000]
