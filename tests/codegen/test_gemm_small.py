"""Small and mid-size GEMMs: the tile height chosen for the task's rows (M=64 in 8-row tiles),
the threading rule (from 2^22 multiply-adds a product uses every thread), and results against the reference
interpreter over small shapes, transposed / strided operands and batches, float32 and float64."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln
from kiln.codegen import gemm
from kiln.ir import dtypes as dt
from kiln.runtime import llvm_backend, native_pool
from kiln.runtime.llvm_backend import compile_graph
from helpers import check_gemm

SMALL = [1, 2, 3, 5, 7, 8, 11, 13, 31, 63, 64, 65, 97, 128, 131]


def _threads(monkeypatch, n):
    monkeypatch.setattr(native_pool, "_num_threads", n)
    monkeypatch.setattr(gemm, "host_threads", lambda: n)


# -- tile height ------------------------------------------------------------------------------------

def test_tile_rows_fits_small_tasks_and_keeps_mr_for_large_ones():
    blk = gemm.Blocking(12, 32, 256, 504, 4096)
    assert gemm.tile_rows(64, blk) == 8      # 72 rows under mr=12, 64 under 8
    assert gemm.tile_rows(32, blk) == 8
    assert gemm.tile_rows(128, blk) == 12    # 132: within TILE_WASTE
    assert gemm.tile_rows(1024, blk) == 12
    assert gemm.tile_rows(10, blk) == 10
    for rows in range(1, 300):
        r = gemm.tile_rows(rows, blk)
        assert max(4, blk.mr // 2) <= r <= blk.mr
        assert -(-rows // r) * r <= -(-rows // blk.mr) * blk.mr  # never pads more than mr would
    assert gemm.tile_rows(5, gemm.Blocking(3, 16, 5, 6, 32)) == 3  # tiny blockings keep their mr


def test_m64_product_uses_tiles_that_cover_its_rows_exactly():
    blk = gemm.host_blocking(4)
    mr = gemm.tile_rows(64, blk)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((64, 784), np.float32), rng.standard_normal((128, 784), np.float32)
    text = check_gemm(lambda x, w: x @ w.T, [x, w], dt.float32)
    assert f"tile_mma {mr}x{blk.nr}" in text
    if blk.mr == 12:
        assert mr == 8


@pytest.mark.skipif(not (gemm.host_info().has_fma and gemm.host_info().vector_bits >= 256
                          and __import__("platform").machine() in ("x86_64", "AMD64")),
                    reason="reads x86 AVX assembly")
def test_m64_microkernel_keeps_its_tile_in_vector_registers():
    f = kiln.compile(lambda a, b: a @ b)
    asm = f.lower(kiln.ShapeDtype((64, 784)), kiln.ShapeDtype((784, 128))).as_text("asm")
    blk = gemm.host_blocking(4)
    loops = re.findall(r"(\.LBB\d+_\d+):\n((?:(?!\.LBB).*\n)*?)\s*j\w+\s+\1\n", asm)
    best = max((body for _, body in loops), key=lambda b: len(re.findall(r"vfmadd\w+", b)), default="")
    fmas = re.findall(r"vfmadd\w+\s+[^\n]*", best)
    assert len(fmas) == gemm.tile_rows(64, blk) * blk.nr // gemm.host_info().lanes(4), best
    reg = "zmm" if gemm.host_info().vector_bits == 512 else "ymm"
    assert all(reg in f for f in fmas), fmas
    assert not re.search(r"\(%rsp\)", best), "the microkernel's loop spills to the stack"


# -- threading rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, fn, shapes", [
    ("x@w", lambda x, w: x @ w, [(64, 256), (256, 1024)]),              # the LSTM's per-step product
    ("x@w.T", lambda x, w: x @ w.T, [(256, 784), (128, 784)]),         # the MLP's first layer, b256
    ("g.T@x", lambda g, x: g.T @ x, [(256, 128), (256, 784)]),         # its weight gradient
    ("x@w.T b64", lambda x, w: x @ w.T, [(64, 784), (128, 784)]),      # the MLP's first layer, b64 (6.4M)
    ("g.T@x b64", lambda g, x: g.T @ x, [(64, 128), (64, 784)]),       # its weight gradient, K=64
])
def test_midsize_matmul_is_split_across_threads(name, fn, shapes, monkeypatch):
    _threads(monkeypatch, 2)
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s, np.float32) for s in shapes]
    ex = compile_graph(kiln.make_graph(fn)(*[kiln.from_numpy(a) for a in arrays]))
    (k,) = [k for k in ex.program.kernels if "gemm" in " ".join(p.name for p in k.params)]
    assert k.cost >= llvm_backend.PARALLEL_MIN_COST
    assert k.schedule.of(k.body[0].var).parallel, "the GEMM's slot loop is not parallel"
    assert ex.parallel
    m, n = ex.program.buffers[ex._index[ex.program.outputs[0]]].shape
    kk = arrays[0].shape[0] if name.startswith("g.T@x") else arrays[0].shape[1]
    assert gemm.split_tasks(1, m, n, kk, gemm.host_blocking(4), 2).tasks >= 2
    check_gemm(fn, arrays, dt.float32)


@pytest.mark.parametrize("m, k, n", [(64, 128, 64), (64, 64, 128), (1024, 64, 10)])  # 0.5M, 0.5M, 0.66M
def test_small_matmul_stays_on_one_thread(monkeypatch, m, k, n):
    _threads(monkeypatch, 2)
    x, w = kiln.zeros(m, k), kiln.zeros(k, n)
    ex = compile_graph(kiln.make_graph(lambda x, w: x @ w)(x, w))
    assert not ex.parallel
    assert gemm.split_tasks(1, m, n, k, gemm.host_blocking(4), 2).tasks == 1


# -- results over small shapes ----------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.sampled_from(SMALL), k=st.sampled_from(SMALL + [256, 784]), n=st.sampled_from(SMALL),
       batch=st.sampled_from([0, 1, 3]), trans_a=st.booleans(), trans_b=st.booleans(),
       strided=st.booleans(), f64=st.booleans(), threads=st.sampled_from([1, 2]))
def test_small_gemms_match_reference(m, k, n, batch, trans_a, trans_b, strided, f64, threads):
    d = dt.float64 if f64 else dt.float32
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    lead = (batch,) if batch else ()
    a = rng.standard_normal(lead + ((k, m) if trans_a else (m, k))).astype(d.np_dtype)
    b = rng.standard_normal(lead + ((n, k) if trans_b else (k, n))).astype(d.np_dtype)
    step = 2 if strided else 1  # a strided view of a wider operand: read in place by the packing
    a_in = np.repeat(a, step, axis=-1)[..., ::step] if strided else a
    b_in = np.repeat(b, step, axis=-2)[..., ::step, :] if strided else b

    def fn(a, b):
        return (a.transpose(-1, -2) if trans_a else a) @ (b.transpose(-1, -2) if trans_b else b)
    old = native_pool._num_threads
    native_pool._num_threads = threads
    try:
        check_gemm(fn, [a_in, b_in], d)
    finally:
        native_pool._num_threads = old
