"""The LLVM backend against the reference interpreter: random graphs over every primitive and
dtype, a walk of the primitive table, the optimized IR (vector ops), native bounds checks,
threads, backend choice and the stages `lower().as_text` shows."""
from __future__ import annotations

import re

import numpy as np
import pytest
from graph_gen import graph_inputs, random_graphs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln
from kiln.codegen.lower import lowerable_primitives
from kiln.ir import PRIMITIVES, Graph, get_primitive
from kiln.ir import dtypes as dt
from kiln.passes import optimize
from kiln.runtime import native_pool
from kiln.runtime.interpreter import run_graph
from kiln.runtime.llvm_backend import compile_graph

ALL_INPUT_DTYPES = (dt.float32, dt.float64, dt.float16, dt.int32, dt.int64, dt.bool_)
# sizes 0, 1, primes
odd_shapes = st.lists(st.sampled_from([0, 1, 1, 2, 3, 5, 7]), min_size=0, max_size=3).map(tuple)


def assert_matches_reference(g: Graph, args, rtol=1e-4, atol=1e-5):
    ref = run_graph(g, args)
    got = compile_graph(g).run(args)
    for k, (a, b) in enumerate(zip(ref, got)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"output {k}: {b.dtype}{b.shape} != {a.dtype}{a.shape}"
        if a.dtype.kind == "f":
            tol = (5e-3, 5e-3) if a.dtype == np.float16 else (rtol, atol)
            assert (np.isnan(a) == np.isnan(b)).all(), f"output {k}: nan positions differ\n{g}"
            fin = np.isfinite(a)
            assert (a[~fin & ~np.isnan(a)] == b[~fin & ~np.isnan(a)]).all(), f"output {k}: infinities differ\n{g}"
            np.testing.assert_allclose(b[fin], a[fin], rtol=tol[0], atol=tol[1], err_msg=f"output {k}\n{g}")
        else:
            np.testing.assert_array_equal(b, a, err_msg=f"output {k}\n{g}")


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(random_graphs(input_dtypes=ALL_INPUT_DTYPES), st.integers(0, 2 ** 16))
def test_random_graphs_match_reference(g, seed):
    assert_matches_reference(g, graph_inputs(g, seed))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(random_graphs(input_shapes=odd_shapes), st.integers(0, 2 ** 16))
def test_random_optimized_graphs_with_odd_sizes_match_reference(g, seed):
    assert_matches_reference(optimize(g), graph_inputs(g, seed))


# -- every primitive lowers natively ------------------------------------------------------------

def _one_op_graph(name: str) -> tuple[Graph, list]:
    """A small graph applying primitive `name` (with representative attributes)."""
    rng = np.random.default_rng(0)
    g = Graph(f"walk_{name}")
    p = get_primitive(name)
    f32 = dt.float32

    def inp(shape, d=f32):
        return g.add_input(shape, d)

    def add(op, ins, **attrs):
        shape, d = get_primitive(op).abstract_eval(list(ins), attrs)
        return g.add_node(op, list(ins), attrs, shape, d)

    if name in ("logical_not",):
        out = add(name, [inp((3, 4), dt.bool_)])
    elif name in ("logical_and", "logical_or", "logical_xor"):
        out = add(name, [inp((3, 4), dt.bool_), inp((3, 4), dt.bool_)])
    elif name == "select":
        out = add(name, [inp((3, 4), dt.bool_), inp((3, 4)), inp((3, 4))])
    elif name == "cast":
        out = add(name, [inp((3, 4))], dtype=dt.int32)
    elif p.kind == "elementwise" and p.arity == 1:
        out = add(name, [inp((3, 4))])
    elif p.kind == "elementwise":
        out = add(name, [inp((3, 4)), inp((3, 4))])
    elif name in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod"):
        out = add(name, [inp((3, 4, 5))], axes=(0, 2), keepdims=False)
    elif name in ("argmax", "argmin"):
        out = add(name, [inp((3, 4))], axis=1, keepdims=True)
    elif name == "reshape":
        out = add(name, [inp((3, 4))], shape=(2, 6))
    elif name == "permute":
        out = add(name, [inp((2, 3, 4))], perm=(2, 0, 1))
    elif name == "broadcast_to":
        out = add(name, [inp((3, 1))], shape=(2, 3, 4))
    elif name == "slice":
        out = add(name, [inp((5, 6))], starts=(1, 0), stops=(5, 6), steps=(2, 3))
    elif name == "pad":
        out = add(name, [inp((3, 4))], lo=(1, 0), hi=(0, 2), interior=(1, 0), value=-1.0)
    elif name == "concat":
        out = add(name, [inp((2, 3)), inp((2, 1))], axis=1)
    elif name == "gather":
        idx = add("constant", [], value=[0, 2, 1, 1, 0, 2], shape=(3, 2), dtype=dt.int64)
        out = add(name, [inp((3, 3)), idx], axis=1)
    elif name in ("scatter", "scatter_add"):
        idx = add("constant", [], value=[0, 2, 2, 1], shape=(2, 2), dtype=dt.int64)
        out = add(name, [inp((2, 3)), idx, inp((2, 2))], axis=1)
    elif name == "matmul":
        out = add(name, [inp((2, 3, 4)), inp((2, 4, 5))])
    elif name == "conv":
        out = add(name, [inp((2, 4, 7, 6)), inp((6, 2, 3, 2))], strides=(2, 1), padding=((1, 1), (0, 1)),
                  dilation=(1, 2), groups=2)
    elif name == "constant":
        out = add(name, [], value=[1.0, 2.0, 3.0], shape=(3,), dtype=f32)
    elif name == "iota":
        out = add(name, [], shape=(3, 4), axis=1, dtype=dt.int64)
    elif name == "random_uniform":
        s = add("constant", [], value=7, shape=(), dtype=dt.int64)
        o = add("constant", [], value=100, shape=(), dtype=dt.int64)
        out = add(name, [s, o], shape=(5, 3), dtype=f32)
    else:
        raise AssertionError(f"no example graph for primitive {name!r}: add one to this walk")
    g.set_outputs([out])
    args = []
    for n in g.inputs:
        if n.dtype.is_bool:
            args.append(rng.integers(0, 2, n.shape).astype(bool))
        else:
            args.append(rng.uniform(0.1, 2, n.shape).astype(n.dtype.np_dtype))
    return g, args


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_every_primitive_lowers_natively(name):
    assert name in lowerable_primitives(), f"primitive {name} has no native lowering"
    g, args = _one_op_graph(name)
    ex = compile_graph(g)
    text = ex.stages("kernels")
    assert "kernel " in text
    assert_matches_reference(g, args)


def test_random_uniform_gives_the_reference_bits():
    for d in (dt.float32, dt.float64):
        g = Graph("rng")
        s, o = g.add_input((), dt.int64), g.add_input((), dt.int64)
        g.set_outputs([g.add_node("random_uniform", [s, o], {"shape": (1000,), "dtype": d}, (1000,), d)])
        args = [np.array(12345), np.array(2 ** 40 + 3)]
        np.testing.assert_array_equal(compile_graph(g).run(args)[0], run_graph(g, args)[0])


# -- the optimized IR -------------------------------------------------------------------------

def _opt_ir(fn, *args) -> str:
    return kiln.compile(fn, backend="llvm").lower(*args).as_text("llvm-opt")


def test_elementwise_and_reduction_kernels_vectorize():
    x = kiln.ShapeDtype((256, 1024))
    assert re.search(r"<(8|16) x float>", _opt_ir(lambda x: x * 2.0 + 1.0, x))
    assert re.search(r"<(8|16) x float>", _opt_ir(lambda x: x.sum(dim=1), x))
    assert re.search(r"<(8|16) x float>", _opt_ir(lambda x: (x * 1.5).tanh(), x))


def test_no_libm_calls_in_math_kernels():
    x = kiln.ShapeDtype((64, 256))
    for fn in (lambda x: x.exp(), lambda x: x.log(), lambda x: x.tanh(), lambda x: x.sigmoid(), lambda x: x.erf(),
               lambda x: x.sin() + x.cos(), lambda x: x.rsqrt(), lambda x: x.log1p(), lambda x: x.pow(x),
               lambda x: x.softmax(dim=1)):
        calls = set(re.findall(r"call [^@]*@\"?([\w.]+)", _opt_ir(fn, x)))
        assert all(c.startswith("llvm.") for c in calls), calls


# -- native bounds checks -----------------------------------------------------------------------

def test_out_of_range_gather_index_raises_index_error_and_process_stays_usable():
    f = kiln.compile(lambda x, i: x.gather(1, i))
    x = kiln.randn(6, 5)
    good = kiln.tensor([[0, 4], [1, 1], [2, 3], [4, 0], [3, 3], [0, 0]])
    bad = good.clone()
    bad[3, 1] = 5
    with pytest.raises(IndexError, match=r"gather: index 5 is out of bounds for dimension 1 with size 5.*test_llvm"):
        f(x, bad)
    bad[3, 1] = -1
    with pytest.raises(IndexError, match="index -1"):
        f(x, bad)
    np.testing.assert_array_equal(f(x, good).numpy(), np.take_along_axis(x.numpy(), good.numpy(), 1))


def test_out_of_range_scatter_and_embedding_indices_raise():
    sc = kiln.compile(lambda x, i, s: x.scatter_add(0, i, s))
    x, s = kiln.zeros(4), kiln.ones(3)
    with pytest.raises(IndexError, match="scatter_add: index 9"):
        sc(x, kiln.tensor([0, 9, 1]), s)
    np.testing.assert_array_equal(sc(x, kiln.tensor([0, 3, 0]), s).numpy(), [2, 0, 0, 1])
    emb = kiln.nn.Embedding(10, 3)
    f = kiln.compile(lambda i: emb(i))
    with pytest.raises(IndexError, match="out of bounds"):
        f(kiln.tensor([1, 10]))
    np.testing.assert_allclose(f(kiln.tensor([1, 9])).detach().numpy(), emb.weight.detach().numpy()[[1, 9]])


# -- threads ----------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_kernels_match_reference(threads, monkeypatch):
    monkeypatch.setattr(native_pool, "_num_threads", threads)
    x = np.random.default_rng(0).standard_normal((700, 513)).astype(np.float32)

    def fn(x):
        return (x * 1.5 + 0.25).tanh().softmax(dim=1) + x.sum(dim=0, keepdim=True)
    got = kiln.compile(fn)(kiln.from_numpy(x)).numpy()
    ref = kiln.compile(fn, backend="reference")(kiln.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=3e-4)  # column sums of 700 floats: summation order
    ex = compile_graph(kiln.make_graph(fn)(kiln.from_numpy(x)))
    assert ex.parallel


# -- backend choice and stages ------------------------------------------------------------------

def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match=r"unknown backend 'gpu'; known backends: cuda, llvm, reference"):
        kiln.compile(lambda x: x, backend="gpu")


def test_default_backend_is_llvm_and_reference_stays_available():
    f = kiln.compile(lambda x: x * 2)
    g = kiln.compile(lambda x: x * 2, backend="reference")
    x = kiln.randn(3)
    np.testing.assert_array_equal(f(x).numpy(), g(x).numpy())
    with kiln.config.override(backend="reference"):
        assert kiln.runtime.backend.default_backend_name() == "reference"
    assert kiln.runtime.backend.default_backend_name() == "llvm"


def test_lower_shows_every_stage():
    f = kiln.compile(lambda x, w: (x @ w).relu().sum(dim=1))
    lo = f.lower(kiln.ShapeDtype((8, 16)), kiln.ShapeDtype((16, 4), kiln.float32))
    assert "matmul" in lo.as_text("traced") and "matmul" in lo.as_text("optimized")
    assert "kernel 0 [matmul]" in lo.as_text("plan")
    assert "for i" in lo.as_text("kernels")
    assert "define" in lo.as_text("llvm") and "define" in lo.as_text("llvm-opt")
    assert re.search(r"\bretq?\b", lo.as_text("asm"))
    with pytest.raises(ValueError, match="unknown stage"):
        lo.as_text("ptx")
    x, w = kiln.randn(8, 16), kiln.randn(16, 4)
    np.testing.assert_allclose(lo.compile()(x, w).numpy(), (x.numpy() @ w.numpy()).clip(0).sum(1), rtol=1e-5)


def test_non_contiguous_inputs_are_read_in_place_through_their_strides():
    from kiln.runtime.backend import executable
    rng = np.random.default_rng(3)
    base = rng.standard_normal((12, 10)).astype(np.float32)

    def fn(x):
        return (x * 2).softmax(dim=1) + x.sum(dim=0)
    f, ref = kiln.compile(fn), kiln.compile(fn, backend="reference")
    views = {"transpose": np.ascontiguousarray(base[:10, :10].T).T, "reversed": base[:6, ::-1][:, :10],
             "strided": base[::2], "offset": base[3:9, 2:]}
    shapes = {name: v.shape for name, v in views.items()}
    for name, v in views.items():
        assert not v.flags.c_contiguous, name
        x = kiln.from_numpy(v)
        assert x._cell.value.base is not None and not x._cell.value.flags.c_contiguous
        np.testing.assert_allclose(f(x).numpy(), ref(x).numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    for name, shape in shapes.items():
        ex = executable(f.graph_for(kiln.zeros(*shape)))
        assert ex._variants, f"{name}: no strided variant was compiled (the input was copied)"


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_threaded_program_runs_in_a_forked_child(monkeypatch):
    import os
    monkeypatch.setattr(native_pool, "_num_threads", 2)
    x = kiln.randn(1 << 20)
    f = kiln.compile(lambda x: (x * 2 + 1).tanh())
    want = f(x).numpy()  # the parent starts its worker threads
    assert compile_graph(kiln.make_graph(lambda x: (x * 2 + 1).tanh())(x)).parallel
    pid = os.fork()
    if pid == 0:  # the child has the pool object but none of its threads
        ok = np.allclose(f(x).numpy(), want)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_renderer_refuses_math_that_was_not_decomposed():
    from kiln.codegen.kir import BufferParam, Const, KernelFunc, Load, Loop, Store, Var, op
    from kiln.codegen.llvm_render import render_program
    i = Var("i", dt.int64)
    k = KernelFunc("k", [BufferParam("a", dt.float32, 4), BufferParam("o", dt.float32, 4, "w")],
                   [Loop(i, Const(4, dt.int64), [Store("o", i, op("tanh", Load("a", i, dt.float32)))])])
    with pytest.raises(NotImplementedError, match="composite op tanh left in kernel k; .*decompose"):
        render_program("p", [k], [("k", [0, 1])])


def test_executable_names_the_input_it_rejects():
    g, args = _one_op_graph("add")
    ex = compile_graph(g)
    with pytest.raises(ValueError, match="takes 2 inputs, got 1"):
        ex.run(args[:1])
    with pytest.raises(ValueError, match=r"input b0 expects float32\[3, 4\], got float64\[3, 4\]"):
        ex.run([args[0].astype(np.float64), args[1]])
    with pytest.raises(ValueError, match=r"input b1 expects float32\[3, 4\], got float32\[4, 3\]"):
        ex.run([args[0], args[1].T.copy()])
    with pytest.raises(TypeError, match="unsupported dtype 'float13'"):
        kiln.ShapeDtype((2,), "float13")
