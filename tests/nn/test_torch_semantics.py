"""Behaviours that used to differ from PyTorch (issue 9, item 4), each checked against PyTorch."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.nn.functional as F

torch = pytest.importorskip("torch")


def _net(lib):
    class Net(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = lib.nn.Conv2d(1, 2, 3)
            self.conv2 = lib.nn.Conv2d(2, 2, 3)
            self.fc = lib.nn.Linear(4, 2)

    return Net()


def test_reassigned_child_keeps_its_place():
    k, t = _net(kiln), _net(torch)
    k.conv1 = nn.Conv2d(1, 2, 5)
    t.conv1 = torch.nn.Conv2d(1, 2, 5)
    assert [n for n, _ in k.named_children()] == [n for n, _ in t.named_children()] == ["conv1", "conv2", "fc"]
    assert list(k.state_dict()) == list(t.state_dict())
    assert [type(m).__name__ for m in list(k.children())[:-1]] == ["Conv2d", "Conv2d"]
    assert tuple(k.conv1.weight.shape) == (2, 1, 5, 5)


def test_reassigned_parameter_and_buffer_keep_their_place():
    def build(lib):
        m = lib.nn.Module()
        m.a = lib.nn.Parameter(lib.zeros(1))
        m.b = lib.nn.Parameter(lib.zeros(1))
        m.register_buffer("x", lib.zeros(1))
        m.register_buffer("y", lib.zeros(1), persistent=False)
        m.a = lib.nn.Parameter(lib.ones(2))
        m.x = lib.ones(2)
        m.y = lib.ones(3)
        return m

    k, t = build(kiln), build(torch)
    assert [n for n, _ in k.named_parameters()] == [n for n, _ in t.named_parameters()] == ["a", "b"]
    assert [n for n, _ in k.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert list(k.state_dict()) == list(t.state_dict()) == ["a", "b", "x"]  # y stays non-persistent


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_gradient_is_finite_at_0_and_1(reduction):
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.3, 1e-30], np.float32)
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.5, 1.0], np.float32)
    w = np.array([1.0, 2.0, 0.5, 1.0, 3.0, 1.0], np.float32)
    xk = kiln.tensor(x, requires_grad=True)
    yk = kiln.tensor(y, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y, requires_grad=True)
    lk = F.binary_cross_entropy(xk, yk, weight=kiln.tensor(w), reduction=reduction)
    lt = torch.nn.functional.binary_cross_entropy(xt, yt, weight=torch.tensor(w), reduction=reduction)
    np.testing.assert_allclose(lk.detach().numpy(), lt.detach().numpy(), rtol=1e-6)
    lk.sum().backward()
    lt.sum().backward()
    assert np.isfinite(xk.grad.numpy()).all()
    np.testing.assert_allclose(xk.grad.numpy(), xt.grad.numpy(), rtol=1e-5)
    # The target's gradient is PyTorch's where finite (at x = 0 or 1 PyTorch's is infinite, kiln's the
    # clamped logs' difference: see docs/compatibility.md).
    inside = (x > 0) & (x < 1)
    np.testing.assert_allclose(yk.grad.numpy()[inside], yt.grad.numpy()[inside], rtol=1e-5)


def test_binary_cross_entropy_compiled_gradient_matches_torch():
    x = np.array([0.0, 1.0, 0.25], np.float32)
    y = np.array([1.0, 1.0, 0.0], np.float32)
    xk = kiln.tensor(x, requires_grad=True)

    @kiln.compile
    def step(x, y):
        loss = F.binary_cross_entropy(x, y)
        loss.backward()
        return loss

    step(xk, kiln.tensor(y))
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.binary_cross_entropy(xt, torch.tensor(y)).backward()
    np.testing.assert_allclose(xk.grad.numpy(), xt.grad.numpy(), rtol=1e-5)


def _warnings_of(fn):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message).split(",")[0] for w in got]


@pytest.mark.parametrize("shape", [(40, 50), (6, 7, 30)])
def test_dropout2d_on_other_ranks_warns_and_proceeds(shape):
    x = np.ones(shape, np.float32)
    out_k, warn_k = _warnings_of(lambda: F.dropout2d(kiln.tensor(x), p=0.5))
    out_t, warn_t = _warnings_of(lambda: torch.nn.functional.dropout2d(torch.tensor(x), p=0.5))
    assert warn_k == warn_t and warn_k
    for out in (out_k.numpy(), out_t.numpy()):
        assert set(np.unique(out)) <= {0.0, 2.0}
        # the mask covers the first two dims: constant along the rest
        assert (out == out[(...,) + (slice(0, 1),) * (len(shape) - 2)]).all()
    assert 0.3 < (out_k.numpy() == 0).mean() < 0.7


def test_dropout2d_module_and_eval_on_2d():
    x = kiln.ones(4, 5)
    m = nn.Dropout2d(0.5).eval()
    with pytest.warns(UserWarning, match="Received a 2-D input to dropout2d"):
        np.testing.assert_array_equal(m(x).numpy(), np.ones((4, 5)))
    with pytest.raises(RuntimeError, match=r"at least 2 dimensions.*\[5\]"):
        with pytest.warns(UserWarning):
            F.dropout2d(kiln.ones(5))
