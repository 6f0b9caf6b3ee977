"""Autodiff as a graph transform: kiln.grad / value_and_grad / vjp, and compiled backward."""
import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.frontend.tensor import apply
from kiln.ir import parse_graph
from kiln.passes.autodiff import split_joint, vjp_graph

from helpers import CASES, _numeric_grad

rng = np.random.default_rng(1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_graph_grad_matches_finite_differences_per_primitive(name):
    arrays, attrs = CASES[name]
    diff = [k for k, a in enumerate(arrays) if np.asarray(a).dtype.kind == "f"]
    probe = apply(name, *[kiln.from_numpy(np.array(a)) for a in arrays], **attrs)
    ct = rng.normal(size=tuple(probe.shape))
    ct_t = kiln.from_numpy(ct)

    def f(*xs):
        return (apply(name, *xs, **attrs) * ct_t).sum()

    tensors = [kiln.from_numpy(np.array(a)) for a in arrays]
    grads = kiln.grad(f, argnums=tuple(diff))(*tensors)
    for k, g in zip(diff, grads):
        num = _numeric_grad(name, [np.array(a) for a in arrays], attrs, k, ct)
        np.testing.assert_allclose(g.numpy(), num, rtol=1e-5, atol=1e-6, err_msg=f"{name} input {k}")


def _check_fd(f, *args, eps=1e-6, rtol=1e-5, atol=1e-6):
    args = [a.double() for a in args]
    grads = kiln.grad(f, argnums=tuple(range(len(args))))(*args)
    for k, (a, g) in enumerate(zip(args, grads)):
        x = a.numpy()
        num = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[i] += eps
            xm[i] -= eps
            ap = list(args); ap[k] = kiln.from_numpy(xp)
            am = list(args); am[k] = kiln.from_numpy(xm)
            num[i] = (f(*ap).item() - f(*am).item()) / (2 * eps)
        np.testing.assert_allclose(g.numpy(), num, rtol=rtol, atol=atol, err_msg=f"argument {k}")


def test_composites_softmax_layernorm_cross_entropy():
    x = kiln.randn(4, 5)
    w = kiln.randn(5)
    target = kiln.tensor([1, 0, 4, 2])

    def softmax_loss(x, w):
        return (x.softmax(-1) * w).sum()

    def layer_norm(x, w):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (((x - mu) / (var + 1e-5).sqrt()) * w).sum()

    def cross_entropy(x, w):
        logp = (x * w).log_softmax(-1)
        return -logp.gather(1, target.unsqueeze(1)).mean()

    for f in (softmax_loss, layer_norm, cross_entropy):
        _check_fd(f, x, w)


def test_lstm_cell_gradient():
    H, I, B = 3, 2, 2
    x, h, c = kiln.randn(B, I), kiln.randn(B, H), kiln.randn(B, H)
    wi, wh, b = kiln.randn(4 * H, I), kiln.randn(4 * H, H), kiln.randn(4 * H)

    def cell(x, h, c, wi, wh, b):
        gates = x @ wi.t() + h @ wh.t() + b
        i, f, g, o = gates.chunk(4, 1)
        c2 = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h2 = o.sigmoid() * c2.tanh()
        return (h2 * h2).sum() + c2.sum()

    _check_fd(cell, x, h, c, wi, wh, b)


def test_conv_gradient():
    x, w = kiln.randn(1, 2, 5, 5), kiln.randn(3, 2, 3, 3)
    _check_fd(lambda x, w: F.conv2d(x, w, padding=1, stride=2).tanh().sum(), x, w, rtol=1e-4, atol=1e-5)


def test_value_and_grad_has_aux_and_errors():
    x = kiln.randn(3, dtype=kiln.float64)
    (v, aux), g = kiln.value_and_grad(lambda x: ((x * x).sum(), x.shape[0]), has_aux=True)(x)
    assert aux == 3
    np.testing.assert_allclose(v.item(), (x.numpy() ** 2).sum())
    np.testing.assert_allclose(g.numpy(), 2 * x.numpy())
    with pytest.raises(TypeError, match="scalar floating-point output"):
        kiln.grad(lambda x: x * 2)(x)
    with pytest.raises(TypeError, match="argument 1 must be a Tensor"):
        kiln.grad(lambda x, n: x.sum() * n, argnums=1)(x, 2.0)


def test_unused_gradients_are_zero_and_pruned():
    x, y = kiln.randn(3), kiln.randn(3)
    gx, gy = kiln.grad(lambda x, y: (x * 2).sum(), argnums=(0, 1))(x, y)
    assert gx.tolist() == [2.0, 2.0, 2.0] and gy.tolist() == [0.0, 0.0, 0.0]
    g = kiln.make_graph(lambda x, y: (x * 2).sum() + (y.exp() * 0).sum())(x, y)
    j = vjp_graph(g, [0], seed_ones=True)
    assert "exp" in [n.op for n in j.nodes]  # y.exp() is forward work
    j1 = vjp_graph(kiln.make_graph(lambda x, y: (x * 2).sum())(x, y), [0], seed_ones=True)
    assert all(n.op != "exp" for n in j1.nodes)


def test_vjp_matches_eager_backward():
    x = kiln.randn(3, 4, dtype=kiln.float64)
    w = kiln.randn(4, 2, dtype=kiln.float64)
    out, f = kiln.vjp(lambda x, w: (x @ w).sin(), x, w)
    ct = kiln.randn(3, 2, dtype=kiln.float64)
    gx, gw = f(ct)
    xe, we = x.clone().requires_grad_(), w.clone().requires_grad_()
    (xe @ we).sin().backward(ct)
    np.testing.assert_allclose(gx.numpy(), xe.grad.numpy())
    np.testing.assert_allclose(gw.numpy(), we.grad.numpy())
    with pytest.raises(ValueError, match="cotangent 0 has shape"):
        f(kiln.ones(2, 2))


def test_split_joint_saves_only_what_backward_needs():
    text = """graph f(%x: f32[4], %y: f32[4]) {
  %0: f32[4] = mul(%x, %y)
  %1: f32[4] = exp(%0)
  %2: f32[4] = sin(%x)
  %3: f32[] = reduce_sum(%1) {axes=(0,), keepdims=False}
  return (%3, %2)
}
"""
    g = parse_graph(text)
    joint = vjp_graph(g, [0], outputs=[0])
    split = split_joint(joint, 2, 2)
    fwd_out = [o.name for o in split.forward.outputs]
    assert fwd_out[:2] == ["3", "2"]
    saved = fwd_out[2:]
    # d/dx sum(exp(x*y)) = exp(x*y) * y: the backward reads exp's output and y, nothing else
    assert sorted(saved) == ["1", "y"]
    assert [n.name for n in split.backward.inputs] == ["saved_y", "saved_1", "ct0"]
    assert all(n.op != "exp" and n.op != "sin" for n in split.backward.nodes)


def test_compiled_function_inside_eager_autograd():
    w = kiln.randn(4, 3, requires_grad=True)
    b = kiln.randn(3, requires_grad=True)
    x = kiln.randn(5, 4, requires_grad=True)

    @kiln.compile
    def f(x):
        return (x @ w + b).tanh().sum(), x * 2

    loss, y = f(x)
    assert loss.grad_fn.name() == "CompiledFunctionBackward" and y._output_nr == 1
    (loss + y.sum()).backward()
    got = [w.grad.numpy().copy(), b.grad.numpy().copy(), x.grad.numpy().copy()]
    w.grad = b.grad = x.grad = None
    ((x @ w + b).tanh().sum() + (x * 2).sum()).backward()
    for a, e in zip(got, [w.grad, b.grad, x.grad]):
        np.testing.assert_allclose(a, e.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss, _ = f(x)
        loss.backward()
        loss.backward()
    with kiln.no_grad():
        assert f(x)[0].grad_fn is None


def test_detach_stops_gradients_in_graph_autodiff():
    x = kiln.tensor([1.0, 2.0, 3.0], dtype=kiln.float64)
    g = kiln.grad(lambda x: (x * x.detach()).sum())(x)
    assert g.tolist() == [1.0, 2.0, 3.0]
    w = kiln.tensor([1.0, 2.0], requires_grad=True)

    @kiln.compile
    def f(w):
        return (w * w.data).sum() + (w.detach() ** 2).sum()

    f(w).backward()
    assert w.grad.tolist() == [1.0, 2.0]
    assert "stop_gradient" in str(kiln.make_graph(lambda x: x.detach() * x)(x))
