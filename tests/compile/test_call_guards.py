"""The compiled call's fast path (the cache key built inline for positional tensors, the guards
checked in one pass, the argument array patched per call) keeps every guard: a call whose
shapes, dtypes, requires_grad, grad mode, aliasing, captured tensors or Python state differ
retraces (or raises) exactly as a fresh trace would, on the first call and on cache hits."""
from __future__ import annotations

import numpy as np
import pytest

import kiln

BACKENDS = ["reference", "llvm"]


def _traces(fn):
    return fn.cache_info().misses


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_part_of_a_tensor_signature_retraces(backend):
    f = kiln.compile(lambda x: x * 2, backend=backend)
    x = kiln.ones(3)
    for _ in range(3):
        assert f(x).tolist() == [2.0] * 3
    assert _traces(f) == 1
    assert f(kiln.ones(4)).tolist() == [2.0] * 4  # shape
    assert _traces(f) == 2
    out = f(kiln.ones(3, dtype=kiln.float64))  # dtype
    assert out.dtype == kiln.float64 and _traces(f) == 3
    assert f(kiln.ones(3, dtype=kiln.int64)).dtype == kiln.int64 and _traces(f) == 4
    out = f(kiln.ones(3, requires_grad=True))  # requires_grad
    assert out.requires_grad and _traces(f) == 5
    with kiln.no_grad():  # grad mode
        assert not f(kiln.ones(3, requires_grad=True)).requires_grad
    assert _traces(f) == 6
    f(x)
    f(kiln.ones(3, dtype=kiln.float64))
    assert _traces(f) == 6 and f.cache_info().hits == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_positional_keyword_and_container_calls_do_not_mix(backend):
    f = kiln.compile(lambda x, y=None: x + (0 if y is None else y), backend=backend)
    a, b = kiln.ones(2), kiln.full((2,), 2.0)
    assert f(a, b).tolist() == [3.0, 3.0]
    assert f(a, y=b).tolist() == [3.0, 3.0]  # another pytree spec: its own trace
    assert f(a).tolist() == [1.0, 1.0]
    assert _traces(f) == 3
    assert f(a, 5.0).tolist() == [6.0, 6.0]  # a Python number: part of the key
    assert f(a, 7.0).tolist() == [8.0, 8.0]
    assert _traces(f) == 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_aliasing_is_part_of_the_key_on_every_call(backend):
    def add_into(a, b):
        a.add_(b)
        return a * 1

    f = kiln.compile(add_into, backend=backend)
    base = kiln.zeros(4)
    f(kiln.zeros(2), kiln.ones(2))  # independent arguments
    f(base[:2], base[2:])  # two views of one base: another program
    assert _traces(f) == 2
    x = kiln.zeros(2)
    with pytest.raises(RuntimeError, match="passed twice"):
        f(x, x)
    with pytest.raises(RuntimeError, match="passed twice"):
        f(x, x.detach())
    y = kiln.ones(4)
    f(y[:2], y[:2])  # two views of one region: read through the base
    np.testing.assert_array_equal(y.numpy(), [2.0, 2.0, 1.0, 1.0])


def test_a_captured_parameter_of_another_shape_retraces():
    lin = kiln.nn.Linear(3, 2)
    f = kiln.compile(lambda x: lin(x))
    assert tuple(f(kiln.ones(1, 3)).shape) == (1, 2)
    lin.weight = kiln.nn.Parameter(kiln.ones(4, 3))  # a module attribute rebound: another shape
    lin.bias = kiln.nn.Parameter(kiln.zeros(4))
    np.testing.assert_array_equal(f(kiln.ones(1, 3)).detach().numpy(), np.full((1, 4), 3.0))
    assert _traces(f) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_python_value_read_by_the_trace_is_checked_on_every_hit(backend):
    class Cfg:
        scale = 2.0

    f = kiln.compile(lambda x: x * Cfg.scale, backend=backend)
    x = kiln.ones(2)
    assert f(x).tolist() == [2.0, 2.0] and f(x).tolist() == [2.0, 2.0]
    Cfg.scale = 3.0
    assert f(x).tolist() == [3.0, 3.0]
    assert _traces(f) == 2


def test_a_rebound_global_tensor_retraces():
    global _W
    _W = kiln.ones(3)
    f = kiln.compile(lambda x: x * _W)
    assert f(kiln.ones(3)).tolist() == [1.0] * 3
    _W.mul_(2)  # in place: the same graph input, read at the call
    assert f(kiln.ones(3)).tolist() == [2.0] * 3 and _traces(f) == 1
    _W = kiln.full((3,), 5.0)  # rebound: another tensor object
    assert f(kiln.ones(3)).tolist() == [5.0] * 3 and _traces(f) == 2
    _W = kiln.full((1,), 7.0, dtype=kiln.float64)
    out = f(kiln.ones(3))
    assert out.dtype == kiln.float64 and out.tolist() == [7.0] * 3 and _traces(f) == 3


_W = None


def test_a_tensor_of_a_running_trace_is_refused():
    inner = kiln.compile(lambda x: x + 1)
    leaked = []

    def outer(x):
        leaked.append(x * 2)
        return x

    kiln.compile(outer)(kiln.ones(2))
    with pytest.raises(RuntimeError, match="trace"):
        inner(leaked[0])


def test_bad_input_to_an_executable_names_the_input():
    from kiln.runtime.backend import executable
    f = kiln.compile(lambda x: x + 1, backend="llvm")
    f(kiln.ones(3))
    ex = executable(f.graph_for(kiln.ones(3)), "llvm")
    with pytest.raises(ValueError, match=r"expects float32\[3\], got float64\[3\]"):
        ex.run([np.ones(3)])
    with pytest.raises(ValueError, match="takes 1 inputs, got 2"):
        ex.run([np.ones(3, np.float32)] * 2)
    assert ex.run([np.arange(6, dtype=np.float32)[::2]])[0].tolist() == [1.0, 3.0, 5.0]  # strided: read in place


def test_data_pointer_matches_numpy():
    from kiln.runtime.llvm_backend import data_pointer
    for a in (np.empty(5, np.float32), np.arange(12.0).reshape(3, 4)[1:, ::2], np.zeros(()), np.empty(0)):
        assert data_pointer(a) == a.__array_interface__["data"][0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_returned_tensors_are_fresh_on_every_call(backend):
    f = kiln.compile(lambda x: x + 1, backend=backend)
    x = kiln.zeros(3)
    a, b = f(x), f(x)
    a.add_(5)
    assert b.tolist() == [1.0] * 3 and not np.shares_memory(a.numpy(), b.numpy())


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_set_by_a_compiled_step_are_their_own_memory(backend):
    lin = kiln.nn.Linear(3, 2)
    opt = kiln.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)

    def step(x):
        opt.zero_grad()
        loss = lin(x).sum()
        loss.backward()
        opt.step()
        return loss

    f = kiln.compile(step, backend=backend)
    x = kiln.ones(4, 3)
    f(x)
    g1 = lin.weight.grad
    f(x)
    g2 = lin.weight.grad
    assert g1 is not g2 and not np.shares_memory(g1.numpy(), g2.numpy())
    assert not np.shares_memory(g2.numpy(), lin.weight.detach().numpy())
    np.testing.assert_allclose(g2.numpy(), np.full((2, 3), 4.0))
