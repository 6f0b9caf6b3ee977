"""A compiled backward that saved a graph input the call updates in place reads the input's
values from before the update (found by the fuzzer: `v3 = stack([v0, v1]); v1[1:].mul_(3);
v3 @ v2` gave v2 the gradient of the updated v1 when compiled)."""
from __future__ import annotations

import numpy as np
import pytest

import kiln


def _program(stack):
    def program(a, b, w):
        s = stack([a, b], -3)
        b[1:].mul_(3)
        return s @ w
    return program


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_backward_reads_the_input_from_before_the_write_back(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a0, b0 = rng.standard_normal((7, 1, 2)).astype(np.float32), rng.standard_normal((7, 1, 2)).astype(np.float32)
    w0 = rng.standard_normal((2, 1)).astype(np.float32)
    f = kiln.compile(_program(kiln.stack), backend=backend)
    for _ in range(2):
        a, b, w = kiln.tensor(a0), kiln.tensor(b0), kiln.tensor(w0, requires_grad=True)
        f(a, b, w).sum().backward()
        ta, tb, tw = torch.tensor(a0), torch.tensor(b0), torch.tensor(w0, requires_grad=True)
        _program(torch.stack)(ta, tb, tw).sum().backward()
        np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-6)
        np.testing.assert_array_equal(b.numpy(), tb.numpy())  # the update is still written back


def test_vjp_backward_reads_the_input_from_before_the_write_back():
    def program(a, w):
        s = kiln.stack([a], 0)
        a.mul_(3)
        return (s * w).sum()
    a0, w0 = np.array([1.0, 2.0], np.float32), np.array([[0.5, -1.0]], np.float32)
    a, w = kiln.tensor(a0), kiln.tensor(w0)
    out, vjp_fn = kiln.vjp(program, a, w)
    grads = vjp_fn(kiln.tensor(np.float32(1.0)))
    np.testing.assert_array_equal(grads[1].numpy(), a0[None])  # d/dw = a before the update
    np.testing.assert_array_equal(a.numpy(), 3 * a0)
