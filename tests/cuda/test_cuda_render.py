"""The CUDA C renderer's choices (stages, grid mapping, vector loads) and its errors."""
import pytest

import kiln
import kiln.nn.functional as F
from kiln.codegen.cuda_render import CudaRenderError, render_kernel, split_stages
from kiln.codegen.kir import BufferParam, KernelFunc, Let, Loop, Store, Var, const, idx
from kiln.ir import dtypes as dt


def _program(fn, *specs):
    (ex,) = kiln.compile(fn, backend="cuda").lower(*[kiln.ShapeDtype(*s) for s in specs])._executables()
    return ex.cuda


def test_softmax_is_one_kernel_one_block_per_row():
    cp = _program(lambda x: F.softmax(x, dim=-1), ((512, 1000),))
    (ln,) = cp.launches
    assert ln.mode == "rows" and ln.grid == 512 and ln.block == 256
    assert cp.source.count("kiln_block_reduce(") >= 2  # max and sum combined across the block


def test_elementwise_grid_stride_with_vector_loads():
    cp = _program(lambda x, y: x * y + 1, ((1 << 20,),), ((1 << 20,),))
    (ln,) = cp.launches
    assert ln.mode == "threads" and ln.block == 256 and ln.grid == (1 << 18) // 256
    src = cp.kernels[0].source
    assert "reinterpret_cast<const float4*>(in0)" in src and "reinterpret_cast<float4*>(out0)" in src
    assert "& 15ULL" in src  # alignment checked at run time, scalar path otherwise


def test_matmul_is_one_tiled_gemm_stage():
    cp = _program(lambda a, b: kiln.relu(a @ b), ((64, 128),), ((128, 32),))
    assert [(ln.mode, ln.grid, ln.block) for ln in cp.launches] == [("gemm", 1, 256)]
    src = cp.kernels[0].source
    assert "kiln_block_reduce" not in src and "gemm (simt)" in src and "kiln_wmma" not in src


def test_whole_array_reduction_is_one_block():
    cp = _program(lambda x: x.sum(), ((10000,),))
    assert [(ln.mode, ln.grid) for ln in cp.launches] == [("block", 1)]


def test_scatter_updates_run_in_order():
    cp = _program(lambda b, i, s: kiln.scatter_add(b, 0, i, s), ((5, 3),), ((7, 3), "int64"), ((7, 3),))
    assert [ln.mode for ln in cp.launches] == ["serial", "serial"]


def test_stages_keep_what_they_need():
    x, y = Var("i0", dt.int64), Var("i1", dt.int64)
    a = Var("a", dt.float32)
    body = [Let(a, const(2.0, dt.float32)),
            Loop(x, idx(4), [Store("out0", x, a)]),
            Loop(y, idx(4), [Store("out1", y, const(1.0, dt.float32))])]
    k = KernelFunc("k", [BufferParam("out0", dt.float32, 4, "w"), BufferParam("out1", dt.float32, 4, "w")], body)
    s0, s1 = split_stages(k)
    assert s0 == body[:2] and s1 == body[2:]


def test_unknown_construct_is_named():
    class Shuffle:  # a statement kind the renderer does not know
        pass
    k = KernelFunc("k_odd", [BufferParam("out0", dt.float32, 4, "w")],
                   [Loop(Var("i", dt.int64), idx(4), [Store("out0", Var("i", dt.int64), const(0.0, dt.float32)),
                                                      Shuffle()])])
    with pytest.raises(CudaRenderError, match="k_odd.*Shuffle"):
        render_kernel(k)


def test_unknown_expression_is_named():
    from dataclasses import dataclass

    from kiln.codegen.kir import Expr

    @dataclass(frozen=True)
    class VectorLoad(Expr):  # an expression kind the renderer does not know
        buf: str
        dtype: object = dt.float32
    i = Var("i", dt.int64)
    k = KernelFunc("k_vec", [BufferParam("in0", dt.float32, 4), BufferParam("out0", dt.float32, 4, "w")],
                   [Loop(i, idx(4), [Store("out0", i, VectorLoad("in0"))])])
    with pytest.raises(CudaRenderError, match="k_vec.*VectorLoad"):
        render_kernel(k)
