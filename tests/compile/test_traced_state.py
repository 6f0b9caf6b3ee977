"""State a module stores or re-derives while kiln.compile traces it is real after the call."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
import kiln.nn as nn


class CachedMask(nn.Module):
    """Builds a causal mask on first use (or for a new length) and keeps it on `self`."""

    def __init__(self):
        super().__init__()
        self.mask = None

    def forward(self, x):
        n = x.shape[0]
        if self.mask is None or self.mask.shape[0] != n:
            self.mask = kiln.ones(n, n).triu(1)
        return self.mask @ x


def _x(n):
    return kiln.tensor(np.arange(n * 2, dtype=np.float32).reshape(n, 2))


def _mask(n):
    return np.triu(np.ones((n, n), np.float32), 1)


def test_tensor_stored_on_module_becomes_real():
    m = CachedMask()
    f = kiln.compile(lambda x: m(x))
    for _ in range(3):
        np.testing.assert_allclose(f(_x(3)).numpy(), _mask(3) @ _x(3).numpy())
        assert not m.mask.is_tracer
        np.testing.assert_allclose(m.mask.numpy(), _mask(3))
    # eager use afterwards, and a new trace for another length
    np.testing.assert_allclose(m(_x(3)).numpy(), _mask(3) @ _x(3).numpy())
    np.testing.assert_allclose(f(_x(4)).numpy(), _mask(4) @ _x(4).numpy())
    np.testing.assert_allclose(m.mask.numpy(), _mask(4))
    # first call builds the mask (trace 1), later calls read it (trace 2); length 4 builds again
    assert f.cache_info().misses == 3


def test_python_counter_on_module_counts_every_call():
    class Count(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x * self.calls

    m = Count()
    f = kiln.compile(lambda x: m(x))
    outs = [float(f(kiln.ones(1))) for _ in range(3)]
    assert m.calls == 3 and outs == [1.0, 2.0, 3.0]  # the graph used the count as a constant: each is a trace
    assert f.cache_info().misses == 3


def test_tensor_stored_every_call_is_the_latest_value():
    class Keep(nn.Module):
        def forward(self, x):
            self.last = x * 2
            return x + 1

    m = Keep()
    f = kiln.compile(lambda x: m(x))
    for k in range(4):
        f(kiln.full((2,), float(k)))
        np.testing.assert_allclose(m.last.numpy(), [2.0 * k, 2.0 * k])
    assert f.cache_info().misses == 2  # attribute absent at the first trace, a tensor at the second


def test_storing_an_argument_keeps_the_argument_itself():
    class Keep(nn.Module):
        def forward(self, x):
            self.seen = x
            return x + 1

    m = Keep()
    f = kiln.compile(lambda x: m(x))
    for _ in range(3):
        x = kiln.ones(2)
        f(x)
        assert m.seen is x


def test_view_buffer_rederived_in_trace_stays_a_real_view():
    class PositionalTable(nn.Module):
        def __init__(self):
            super().__init__()
            table = kiln.tensor(np.arange(40, dtype=np.float32).reshape(10, 4))
            self.register_buffer("pe", table[:6])  # a view of a longer table

        def forward(self, x):
            return x + self.pe[: x.shape[0]]

    m = PositionalTable()
    m.load_state_dict({"pe": np.ones((6, 4), np.float32)})  # written through the view
    f = kiln.compile(lambda x: m(x))
    np.testing.assert_allclose(f(kiln.zeros(3, 4)).numpy(), np.ones((3, 4)))
    assert not m.pe.is_tracer
    np.testing.assert_allclose(m(kiln.zeros(2, 4)).numpy(), np.ones((2, 4)))  # eager use
    np.testing.assert_allclose(f(kiln.zeros(2, 4)).numpy(), np.ones((2, 4)))  # another trace
    m.load_state_dict({"pe": np.full((6, 4), 3.0, np.float32)})
    np.testing.assert_allclose(f(kiln.zeros(2, 4)).numpy(), np.full((2, 4), 3.0))


def test_module_zero_grad_inside_compiled_step_traces_once():
    lin = nn.Linear(3, 2)

    @kiln.compile
    def step(x):
        lin.zero_grad()
        loss = lin(x).sum()
        loss.backward()
        return loss

    for _ in range(3):
        step(kiln.ones(4, 3))
    assert step.cache_info().misses == 1
    np.testing.assert_allclose(lin.weight.grad.numpy(), np.full((2, 3), 4.0))


def test_module_zero_grad_keeps_torch_semantics():
    lin = nn.Linear(3, 2)
    lin(kiln.ones(1, 3)).sum().backward()
    lin.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(lin.weight.grad.numpy(), np.zeros((2, 3)))
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None


def test_tensor_escaping_to_a_global_names_where_it_was_made():
    kept = []

    @kiln.compile
    def leak(x):
        kept.append(x * 2)  # not a module, optimizer or param group: kiln cannot write it back
        return x + 1

    @kiln.compile
    def use(x):
        return x + kept[0]

    leak(kiln.ones(2))
    with pytest.raises(RuntimeError, match=r"another kiln.compile trace was used here \(it was created at "
                                           r".*test_traced_state.py:\d+\)"):
        use(kiln.ones(2))


def test_module_built_inside_the_trace_is_not_state():
    @kiln.compile
    def f(x):
        return nn.Softmax(dim=0)(x)

    for _ in range(3):
        f(kiln.ones(3))
    assert f.cache_info().misses == 1


def test_state_carried_on_a_module_attribute_is_read_back_at_every_call():
    """`m.h = m.h + x` in a compiled step: the next call reads the written-back tensor (as eagerly),
    also for a tuple of tensors and when the step reads the attribute through detach()."""
    class M(kiln.nn.Module):
        pass

    def make():
        m = M()
        m.t = kiln.zeros(2)
        m.h = (kiln.zeros(2), kiln.ones(2))

        def step(x):
            m.t = m.t + x
            h, c = (v.detach() for v in m.h)
            m.h = (h + x, c * 2)
            return m.t.sum() + h.sum() + c.sum()
        return m, step
    x = kiln.ones(2)
    me, eager = make()
    mc, step = make()
    compiled = kiln.compile(step)
    want = [eager(x).item() for _ in range(4)]
    got = [compiled(x).item() for _ in range(4)]
    assert got == want
    np.testing.assert_array_equal(mc.t.numpy(), me.t.numpy())
    np.testing.assert_array_equal(mc.h[1].numpy(), me.h[1].numpy())
    assert compiled.cache_info().misses == 1
