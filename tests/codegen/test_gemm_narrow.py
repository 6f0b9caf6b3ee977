"""The narrow GEMM tile for products of at most one vector of columns (`gemm.gemm_blocking`:
`matmul[1024, 10]`, a classifier's logits): one vector wide, twice as tall, against the
reference interpreter over row counts with edges, primes, transposed / strided operands,
batches, float32 / float64 and 1 or 2 threads; its microkernel in registers."""
from __future__ import annotations

import re

import numpy as np
import pytest

import kiln
from kiln.codegen import gemm
from kiln.ir import dtypes as dt
from helpers import check_gemm


def test_narrow_blocking_is_one_vector_wide_and_taller():
    lanes = gemm.host_info().lanes(4)
    wide = gemm.host_blocking(4)
    blk = gemm.gemm_blocking(4, 10)
    if wide.nr != 2 * lanes or 10 > lanes:
        assert blk == wide
        return
    assert blk.nr == lanes and blk.mr > wide.mr and blk.mr <= gemm.host_info().vector_registers - 4
    assert blk.mc % blk.mr == 0 and blk.nc % blk.nr == 0
    assert gemm.gemm_blocking(4, lanes + 1) == wide  # wider products keep the two-vector tile
    with gemm.override_blocking(gemm.Blocking(3, 16, 5, 6, 32)):
        assert gemm.gemm_blocking(4, 4) == gemm.Blocking(3, 16, 5, 6, 32)  # tests' blockings kept


@pytest.mark.parametrize("m, k, n", [(1024, 64, 10), (1031, 64, 16), (997, 127, 13), (2048, 64, 8), (600, 1000, 11)])
@pytest.mark.parametrize("f64", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_narrow_products_match_reference(m, k, n, f64, trans_b, monkeypatch):
    d = dt.float64 if f64 else dt.float32
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k)).astype(d.np_dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(d.np_dtype)
    text = check_gemm((lambda a, b: a @ b.T) if trans_b else (lambda a, b: a @ b), [a, b], d, 1, monkeypatch)
    blk = gemm.gemm_blocking(d.itemsize, n)
    assert f"x{blk.nr} " in re.search(r"tile_mma \d+x\d+ ", text).group(0)


@pytest.mark.parametrize("threads", [1, 2])
def test_narrow_batched_strided_and_threaded_match_reference(threads, monkeypatch):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 2 * 401, 96)).astype(np.float32)[:, ::2]   # a strided view, 401 rows
    b = rng.standard_normal((3, 96, 10)).astype(np.float32)
    check_gemm(lambda a, b: a @ b, [a, b], dt.float32, threads, monkeypatch)
    x = rng.standard_normal((4096, 256)).astype(np.float32)                 # 10.5M MACs: split on 2 threads
    w = rng.standard_normal((10, 256)).astype(np.float32)
    text = check_gemm(lambda x, w: (x @ w.T).relu(), [x, w], dt.float32, threads, monkeypatch)
    assert ("# parallel" in text) == (threads > 1)


@pytest.mark.skipif(not (gemm.host_info().has_fma and gemm.host_info().vector_bits >= 256
                          and __import__("platform").machine() in ("x86_64", "AMD64")),
                    reason="reads x86 AVX assembly")
def test_narrow_microkernel_keeps_its_tile_in_vector_registers():
    f = kiln.compile(lambda a, b: a @ b)
    lo = f.lower(kiln.ShapeDtype((1024, 64)), kiln.ShapeDtype((64, 10)))
    asm = lo.as_text("asm")
    blk = gemm.gemm_blocking(4, 10)
    rows = int(re.search(r"tile_mma (\d+)x", lo.as_text("kernels")).group(1))  # 16: covers 1024, A in place
    loops = re.findall(r"(\.LBB\d+_\d+):\n((?:(?!\.LBB).*\n)*?)\s*j\w+\s+\1\n", asm)
    best = max((body for _, body in loops), key=lambda b: len(re.findall(r"vfmadd\w+", b)), default="")
    fmas = re.findall(r"vfmadd\w+\s+[^\n]*", best)
    assert max(4, blk.mr // 2) <= rows <= blk.mr and 1024 % rows == 0
    assert len(fmas) == rows * blk.nr // gemm.host_info().lanes(4), best
    reg = "zmm" if gemm.host_info().vector_bits == 512 else "ymm"
    assert all(reg in f for f in fmas), fmas
    assert not re.search(r"\(%rsp\)", best), "the microkernel's loop spills to the stack"
