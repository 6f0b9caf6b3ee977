"""An in-place update that overwrites a tensor needing grad with values that do not (zero_, fill_,
copy_ from a constant): the tensor still requires grad and its old history gets a zero
gradient, as in PyTorch, eagerly and compiled (the compiled program decides which outputs need
grad from the program as traced, not from its optimized form, where the dependence is folded)."""
from __future__ import annotations

import numpy as np
import pytest

import kiln

OVERWRITES = {
    "zero_": lambda y: y.zero_(),
    "fill_": lambda y: y.fill_(2.5),
    "copy_": lambda y: y.copy_(kiln.ones(3)),
    "slice_zero_": lambda y: y[1:].zero_(),
}


def _program(overwrite):
    def program(x):
        y = x.clone() * 1.5
        overwrite(y)
        return (y * 2,)
    return program


def _grad(fn, x0):
    x = kiln.tensor(x0, requires_grad=True)
    (out,) = fn(x)
    assert out.requires_grad, "the overwritten tensor lost requires_grad"
    (out * kiln.tensor(np.array([1.0, 2.0, 3.0], np.float32))).sum().backward()
    return out.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("name", sorted(OVERWRITES))
def test_eager_matches_torch(name):
    torch = pytest.importorskip("torch")
    x0 = np.array([1.0, -2.0, 4.0], np.float32)
    out, grad = _grad(_program(OVERWRITES[name]), x0)
    t = torch.tensor(x0, requires_grad=True)
    y = t.clone() * 1.5
    {"zero_": lambda: y.zero_(), "fill_": lambda: y.fill_(2.5), "copy_": lambda: y.copy_(torch.ones(3)),
     "slice_zero_": lambda: y[1:].zero_()}[name]()
    (y * 2 * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(out, (y * 2).detach().numpy())
    np.testing.assert_array_equal(grad, t.grad.numpy())


@pytest.mark.parametrize("backend", ["reference", "llvm"])
@pytest.mark.parametrize("name", sorted(OVERWRITES))
def test_compiled_matches_eager(name, backend):
    x0 = np.array([1.0, -2.0, 4.0], np.float32)
    program = _program(OVERWRITES[name])
    want = _grad(program, x0)
    got = _grad(kiln.compile(program, backend=backend), x0)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_overwrite_without_grad_mode_drops_nothing():
    """Under no_grad an overwrite records no history and changes no requires_grad flag."""
    x = kiln.tensor(np.ones(3, np.float32), requires_grad=True)
    y = x * 2
    with kiln.no_grad():
        y.zero_()
    assert y.requires_grad
    np.testing.assert_array_equal(y.detach().numpy(), np.zeros(3, np.float32))
