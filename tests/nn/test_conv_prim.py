"""The `conv` primitive: float64 finite-difference VJP checks, shape-rule errors, tracing; pooling gradients."""
import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.frontend.tensor import apply
from kiln.ir import PRIMITIVES
from kiln.ir.primitives import ShapeError

rng = np.random.default_rng(3)


def _numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


CONV_CASES = [
    # x shape, w shape, strides, padding, dilation, groups
    ((2, 3, 7), (4, 3, 3), (2,), ((1, 2),), (1,), 1),
    ((1, 4, 6, 5), (6, 2, 3, 2), (1, 2), ((1, 1), (0, 1)), (2, 1), 2),
    ((2, 2, 5, 5), (3, 2, 2, 2), (3, 2), ((0, 0), (2, 1)), (1, 2), 1),
    ((1, 2, 4, 4, 3), (2, 1, 2, 2, 2), (1, 1, 2), ((1, 0), (0, 1), (1, 1)), (1, 2, 1), 2),
]


@pytest.mark.parametrize("xs,ws,st,pad,dil,g", CONV_CASES)
def test_conv_vjp_matches_finite_differences(xs, ws, st, pad, dil, g):
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    attrs = dict(strides=st, padding=pad, dilation=dil, groups=g)
    out_shape, _ = PRIMITIVES["conv"].abstract_eval([kiln.from_numpy(x), kiln.from_numpy(w)], attrs)
    ct = rng.standard_normal(out_shape)

    def f():
        return float((PRIMITIVES["conv"].impl(x, w, **attrs) * ct).sum())

    kx, kw = kiln.from_numpy(x.copy()).requires_grad_(True), kiln.from_numpy(w.copy()).requires_grad_(True)
    out = apply("conv", kx, kw, **attrs)
    assert tuple(out.shape) == tuple(out_shape)
    out.backward(kiln.from_numpy(ct))
    np.testing.assert_allclose(kx.grad.numpy(), _numeric_grad(f, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(kw.grad.numpy(), _numeric_grad(f, w), rtol=1e-6, atol=1e-7)


def test_conv_second_order_gradient():
    x = kiln.from_numpy(rng.standard_normal((1, 2, 5, 5))).requires_grad_(True)
    w = kiln.from_numpy(rng.standard_normal((3, 2, 3, 3))).requires_grad_(True)
    out = F.conv2d(x, w, stride=2, padding=1)
    (gx,) = kiln.autograd.grad(out.pow(2).sum(), [x], create_graph=True)
    gx.sum().backward()  # d/dw of sum(d out^2 / dx)
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x.detach().numpy(), requires_grad=True)
    tw = torch.tensor(w.detach().numpy(), requires_grad=True)
    (tgx,) = torch.autograd.grad(torch.nn.functional.conv2d(tx, tw, stride=2, padding=1).pow(2).sum(), [tx],
                                 create_graph=True)
    tgx.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-10)


def test_conv_matches_torch_large_float32():
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    got = F.conv2d(kiln.from_numpy(x), kiln.from_numpy(w), padding=1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("xs,ws,attrs,msg", [
    ((2, 3, 5, 5), (4, 2, 3, 3), {}, r"has 3 channels, but weight \(4, 2, 3, 3\) with groups=1 expects 2"),
    ((2, 4, 5, 5), (3, 2, 3, 3), {"groups": 2}, "out_channels 3 .* not divisible by groups=2"),
    ((2, 3, 5), (4, 3, 3, 3), {}, "same rank"),
    ((3, 5), (4, 3), {"strides": (), "padding": (), "dilation": ()}, "at least one spatial dim"),
    ((1, 1, 2, 2), (1, 1, 3, 3), {}, "smaller than the dilated kernel size 3"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"strides": (1,)}, "one entry per spatial dimension"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"strides": (0, 1)}, "strides must be positive"),
])
def test_conv_shape_rule_errors(xs, ws, attrs, msg):
    nsp = len(xs) - 2
    full = dict(strides=(1,) * nsp, padding=((0, 0),) * nsp, dilation=(1,) * nsp, groups=1)
    full.update(attrs)
    with pytest.raises(ShapeError, match=msg):
        apply("conv", kiln.zeros(*xs), kiln.zeros(*ws), **full)


def test_conv_rejects_mixed_dtypes():
    with pytest.raises(ShapeError, match="float64 .* float32|float32 .* float64"):
        apply("conv", kiln.zeros(1, 1, 3, 3, dtype=kiln.float64), kiln.zeros(1, 1, 2, 2), strides=(1, 1),
              padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1)


def test_conv_traces_and_round_trips():
    x = kiln.randn(2, 3, 6, 6)
    w = kiln.randn(4, 3, 3, 3)

    def f(x, w):
        return F.conv2d(x, w, stride=2, padding=1).sum()

    compiled = kiln.compile(f)
    np.testing.assert_allclose(compiled(x, w).numpy(), f(x, w).numpy(), rtol=1e-5)
    g = kiln.make_graph(f)(x, w)
    text = str(g)
    assert "conv(" in text and "padding=((1, 1), (1, 1))" in text
    assert str(kiln.parse_graph(text)) == text


def test_conv_compiled_gradients_match_eager():
    x = kiln.randn(2, 3, 6, 6)
    w = kiln.randn(4, 3, 3, 3, requires_grad=True)

    def step(x):
        w.grad = None
        loss = F.conv2d(x, w, padding=1).pow(2).mean()
        loss.backward()
        return loss

    eager_loss = step(x)
    eager_grad = w.grad.numpy().copy()
    compiled = kiln.compile(step)
    c_loss = compiled(x)
    np.testing.assert_allclose(c_loss.numpy(), eager_loss.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(w.grad.numpy(), eager_grad, rtol=1e-5, atol=1e-6)


# ---- pooling (compositions of primitives) against finite differences -------------------------

POOLS = [
    (F.max_pool2d, dict(kernel_size=2)),
    (F.max_pool2d, dict(kernel_size=3, stride=2, padding=1)),
    (F.max_pool2d, dict(kernel_size=2, stride=1, dilation=2, ceil_mode=True)),
    (F.avg_pool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (F.avg_pool2d, dict(kernel_size=2, count_include_pad=False, padding=1)),
    (F.adaptive_avg_pool2d, dict(output_size=(3, 2))),
    (F.max_pool1d, dict(kernel_size=3, stride=2)),
]


@pytest.mark.parametrize("fn,kw", POOLS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_pooling_gradients_finite_differences(fn, kw):
    shape = (2, 2, 7) if fn is F.max_pool1d else (2, 2, 7, 5)
    x = rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) / 10.0  # distinct values
    ct = rng.standard_normal(fn(kiln.from_numpy(x), **kw).shape)

    def f():
        return float((fn(kiln.from_numpy(x), **kw).numpy() * ct).sum())

    kx = kiln.from_numpy(x.copy()).requires_grad_(True)
    fn(kx, **kw).backward(kiln.from_numpy(ct))
    np.testing.assert_allclose(kx.grad.numpy(), _numeric_grad(f, x, 1e-4), rtol=1e-6, atol=1e-8)


def test_max_pool_gradient_goes_to_first_max_like_torch():
    torch = pytest.importorskip("torch")
    x = np.array([[[[1.0, 1.0, 0.0], [1.0, 0.5, 2.0], [2.0, 2.0, 2.0]]]], dtype=np.float32)
    for kw in (dict(kernel_size=2, stride=1), dict(kernel_size=2, stride=2, ceil_mode=True)):
        kx, tx = kiln.from_numpy(x.copy()).requires_grad_(True), torch.tensor(x, requires_grad=True)
        F.max_pool2d(kx, **kw).sum().backward()
        torch.nn.functional.max_pool2d(tx, **kw).sum().backward()
        np.testing.assert_array_equal(kx.grad.numpy(), tx.grad.numpy())


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=2, dilation=2, stride=1)])
def test_max_pool_return_indices(kw):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    kv, ki = F.max_pool2d(kiln.from_numpy(x), return_indices=True, **kw)
    tv, ti = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    np.testing.assert_array_equal(kv.numpy(), tv.numpy())
    np.testing.assert_array_equal(ki.numpy(), ti.numpy())
    assert ki.dtype == kiln.int64
