"""Eager gradients of every differentiable op: kiln's `.backward()` vs PyTorch (float64, tight
tolerance) and, without torch, vs central finite differences."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import kiln

# name -> (fn(module, *inputs), input specs); a spec is (shape, domain) with domain in
# "any" (uniform [-2, 2] away from 0), "pos" (uniform [0.5, 2]), "unit" (uniform [-0.9, 0.9]).
S = (3, 4)
CASES = {
    # elementwise unary
    "exp": (lambda m, x: m.exp(x), [(S, "any")]),
    "log": (lambda m, x: m.log(x), [(S, "pos")]),
    "log1p": (lambda m, x: m.log1p(x), [(S, "pos")]),
    "sqrt": (lambda m, x: m.sqrt(x), [(S, "pos")]),
    "rsqrt": (lambda m, x: m.rsqrt(x), [(S, "pos")]),
    "sin": (lambda m, x: m.sin(x), [(S, "any")]),
    "cos": (lambda m, x: m.cos(x), [(S, "any")]),
    "tanh": (lambda m, x: m.tanh(x), [(S, "any")]),
    "sigmoid": (lambda m, x: m.sigmoid(x), [(S, "any")]),
    "relu": (lambda m, x: m.relu(x), [(S, "any")]),
    "gelu": (lambda m, x: m.nn.functional.gelu(x) if m.__name__ == "torch" else m.gelu(x), [(S, "any")]),
    "gelu_tanh": (lambda m, x: m.nn.functional.gelu(x, approximate="tanh") if m.__name__ == "torch"
                  else m.gelu(x, approximate="tanh"), [(S, "any")]),
    "erf": (lambda m, x: m.erf(x), [(S, "any")]),
    "abs": (lambda m, x: m.abs(x), [(S, "any")]),
    "neg": (lambda m, x: -x, [(S, "any")]),
    "sign": (lambda m, x: m.sign(x) * x, [(S, "any")]),
    "square": (lambda m, x: m.square(x), [(S, "any")]),
    "reciprocal": (lambda m, x: m.reciprocal(x), [(S, "pos")]),
    "pow_scalar": (lambda m, x: m.pow(x, 3), [(S, "any")]),
    "pow_frac": (lambda m, x: x ** 1.7, [(S, "pos")]),
    "pow_half": (lambda m, x: x ** 0.5, [(S, "pos")]),
    "rpow": (lambda m, x: 2.0 ** x, [(S, "any")]),
    "pow_tensor": (lambda m, x, y: m.pow(x, y), [(S, "pos"), (S, "any")]),
    "clamp": (lambda m, x: m.clamp(x, -1.0, 1.0), [(S, "any")]),
    "clamp_min": (lambda m, x: x.clamp(min=0.3), [(S, "any")]),
    "clamp_tensor": (lambda m, x, lo: m.clamp(x, min=lo), [(S, "any"), ((4,), "any")]),
    # elementwise binary with broadcasting
    "add": (lambda m, x, y: x + y, [(S, "any"), ((4,), "any")]),
    "add_alpha": (lambda m, x, y: m.add(x, y, alpha=2.5), [(S, "any"), ((3, 1), "any")]),
    "sub": (lambda m, x, y: x - y, [((3, 1), "any"), ((1, 4), "any")]),
    "mul": (lambda m, x, y: x * y, [(S, "any"), ((4,), "any")]),
    "div": (lambda m, x, y: x / y, [(S, "any"), ((3, 1), "pos")]),
    "rdiv": (lambda m, x: 1.5 / x, [(S, "pos")]),
    "rsub": (lambda m, x: 1.5 - x, [(S, "any")]),
    "maximum": (lambda m, x, y: m.maximum(x, y), [(S, "any"), ((4,), "any")]),
    "minimum": (lambda m, x, y: m.minimum(x, y), [(S, "any"), (S, "any")]),
    "where": (lambda m, x, y: m.where(x > 0, x, y), [(S, "any"), ((4,), "any")]),
    "where_scalar": (lambda m, x: m.where(x > 0, x * 2, 0.0), [(S, "any")]),
    "zero_dim": (lambda m, x, y: x * y + y, [(S, "any"), ((), "any")]),
    # reductions
    "sum": (lambda m, x: x.sum(), [((2, 3, 4), "any")]),
    "sum_dim": (lambda m, x: x.sum(1), [((2, 3, 4), "any")]),
    "sum_tuple_keepdim": (lambda m, x: x.sum((0, -1), keepdim=True), [((2, 3, 4), "any")]),
    "mean": (lambda m, x: x.mean(-1), [((2, 3, 4), "any")]),
    "mean_all": (lambda m, x: x.mean(), [((2, 3, 4), "any")]),
    "var": (lambda m, x: x.var(1), [((2, 3, 4), "any")]),
    "var_biased": (lambda m, x: x.var((0, 2), unbiased=False, keepdim=True), [((2, 3, 4), "any")]),
    "std": (lambda m, x: x.std(-1), [((2, 3, 4), "any")]),
    "std_all": (lambda m, x: x.std(), [((2, 3, 4), "any")]),
    "prod": (lambda m, x: x.prod(1), [((2, 3, 4), "any")]),
    "prod_all": (lambda m, x: x.prod(), [((2, 3), "any")]),
    "max_dim": (lambda m, x: m.max(x, 1)[0], [((2, 3, 4), "any")]),
    "min_dim_keepdim": (lambda m, x: m.min(x, -1, keepdim=True).values, [((2, 3, 4), "any")]),
    "max_all": (lambda m, x: m.max(x), [((2, 3, 4), "any")]),
    "min_all": (lambda m, x: x.min(), [((2, 3, 4), "any")]),
    "amax": (lambda m, x: m.amax(x, (0, 2)), [((2, 3, 4), "any")]),
    "amin": (lambda m, x: m.amin(x, 1, keepdim=True), [((2, 3, 4), "any")]),
    "logsumexp": (lambda m, x: m.logsumexp(x, 1), [((2, 3, 4), "any")]),
    "logsumexp_tuple": (lambda m, x: m.logsumexp(x, (0, 2), keepdim=True), [((2, 3, 4), "any")]),
    "softmax": (lambda m, x: m.softmax(x, -1), [((2, 3, 4), "any")]),
    "softmax0": (lambda m, x: m.softmax(x, 0), [((2, 3, 4), "any")]),
    "log_softmax": (lambda m, x: m.log_softmax(x, 1), [((2, 3, 4), "any")]),
    # shape ops
    "reshape": (lambda m, x: x.reshape(4, 6) * 1.0, [((2, 3, 4), "any")]),
    "view": (lambda m, x: x.view(-1, 2), [((2, 3, 4), "any")]),
    "permute": (lambda m, x: x.permute(2, 0, 1), [((2, 3, 4), "any")]),
    "transpose": (lambda m, x: x.transpose(0, -1), [((2, 3, 4), "any")]),
    "t": (lambda m, x: x.t(), [(S, "any")]),
    "squeeze": (lambda m, x: x.squeeze(1), [((3, 1, 4), "any")]),
    "unsqueeze": (lambda m, x: x.unsqueeze(-1), [(S, "any")]),
    "expand": (lambda m, x: x.expand(2, 3, 4), [((3, 1), "any")]),
    "flatten": (lambda m, x: x.flatten(1), [((2, 3, 4), "any")]),
    "unflatten": (lambda m, x: x.unflatten(1, (2, 2)), [(S, "any")]),
    "cat": (lambda m, x, y: m.cat([x, y, x], 1), [(S, "any"), ((3, 2), "any")]),
    "stack": (lambda m, x, y: m.stack([x, y], -1), [(S, "any"), (S, "any")]),
    "split": (lambda m, x: x.split([1, 3], 1)[1] * x.split(2, 1)[0].sum(), [(S, "any")]),
    "chunk": (lambda m, x: x.chunk(2, 0)[1], [((4, 3), "any")]),
    "unbind": (lambda m, x: x.unbind(1)[2] * 3, [(S, "any")]),
    "narrow": (lambda m, x: x.narrow(1, 1, 2), [(S, "any")]),
    "movedim": (lambda m, x: m.movedim(x, 0, -1), [((2, 3, 4), "any")]),
    "repeat": (lambda m, x: x.repeat(2, 1, 3), [(S, "any")]),
    "flip": (lambda m, x: x.flip((0, 1)), [(S, "any")]),
    "contiguous": (lambda m, x: x.t().contiguous(), [(S, "any")]),
    "clone": (lambda m, x: x.clone() * 2, [(S, "any")]),
    # indexing
    "getitem_basic": (lambda m, x: x[1:, ::2, None, -1], [((3, 4, 5), "any")]),
    "getitem_int": (lambda m, x: x[1], [((3, 4, 5), "any")]),
    "getitem_adv": (lambda m, x: x[m.tensor([0, 2, 0]), :, m.tensor([1, 1, 3])], [((3, 4, 5), "any")]),
    "getitem_adv_adjacent": (lambda m, x: x[:, m.tensor([[0, 3], [1, 1]])], [((3, 4, 5), "any")]),
    "getitem_mask": (lambda m, x: x[x > 0], [((3, 4), "any")]),
    "gather": (lambda m, x: m.gather(x, 1, m.tensor([[0, 0, 3], [2, 1, 1], [3, 3, 3]])), [(S, "any")]),
    "scatter": (lambda m, x, s: m.scatter(x, 1, m.tensor([[0, 2], [1, 3], [3, 0]]), s), [(S, "any"), ((3, 2), "any")]),
    "scatter_add": (lambda m, x, s: m.scatter_add(x, 0, m.tensor([[0, 0, 2, 1], [0, 2, 2, 1]]), s),
                    [(S, "any"), ((2, 4), "any")]),
    "index_select": (lambda m, x: m.index_select(x, 1, m.tensor([3, 0, 3])), [(S, "any")]),
    "setitem": (lambda m, x, v: _setitem(m, x, v), [(S, "any"), ((4,), "any")]),
    # matrix products
    "matmul_2d": (lambda m, a, b: a @ b, [((2, 3), "any"), ((3, 4), "any")]),
    "matmul_1d_2d": (lambda m, a, b: a @ b, [((3,), "any"), ((3, 4), "any")]),
    "matmul_2d_1d": (lambda m, a, b: m.matmul(a, b), [((2, 3), "any"), ((3,), "any")]),
    "matmul_1d_1d": (lambda m, a, b: a @ b, [((3,), "any"), ((3,), "any")]),
    "matmul_bcast": (lambda m, a, b: a @ b, [((2, 1, 2, 3), "any"), ((5, 3, 4), "any")]),
    "mm": (lambda m, a, b: m.mm(a, b), [((2, 3), "any"), ((3, 4), "any")]),
    "bmm": (lambda m, a, b: m.bmm(a, b), [((2, 2, 3), "any"), ((2, 3, 4), "any")]),
    # casts and compositions
    "to_float32_and_back": (lambda m, x: x.float().double() * x, [(S, "any")]),
    "composite": (lambda m, x, y: m.softmax(x @ y.t(), -1).log().mean(0), [(S, "any"), ((5, 4), "any")]),
}


def _setitem(m, x, v):
    y = x * 1.0
    y[1] = v * 2
    y[:, 0] = 0.0
    return y


def _inputs(specs, seed):
    rng = np.random.default_rng(seed)
    out = []
    for shape, dom in specs:
        if dom == "pos":
            a = rng.uniform(0.5, 2.0, shape)
        elif dom == "unit":
            a = rng.uniform(-0.9, 0.9, shape)
        else:
            a = rng.uniform(0.2, 2.0, shape) * rng.choice([-1.0, 1.0], size=shape)
        out.append(np.asarray(a, dtype=np.float64))
    return out


def _kiln_grads(fn, arrays, cot_seed=0):
    xs = [kiln.tensor(a, requires_grad=True) for a in arrays]
    out = fn(kiln, *xs)
    cot = np.random.default_rng(cot_seed).standard_normal(tuple(out.shape))
    out.backward(kiln.tensor(cot))
    return out, cot, [x.grad for x in xs]


@pytest.mark.parametrize("name", sorted(CASES))
def test_grad_vs_torch(name):
    torch = pytest.importorskip("torch")
    fn, specs = CASES[name]
    arrays = _inputs(specs, seed=zlib.crc32(name.encode()))
    out, cot, kgrads = _kiln_grads(fn, arrays)
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    tout = fn(torch, *ts)
    assert tuple(out.shape) == tuple(tout.shape) and out.dtype.name == "float64"
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    tout.backward(torch.tensor(cot))
    for k, (kg, t) in enumerate(zip(kgrads, ts)):
        assert kg is not None, f"input {k} got no gradient"
        assert kg.dtype is kiln.float64 and tuple(kg.shape) == tuple(t.shape)
        np.testing.assert_allclose(kg.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"gradient of input {k}")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_grad_low_precision_vs_torch(name, dtype):
    """float32/float16 inputs: outputs and gradients have PyTorch's dtypes and values (loose tolerance)."""
    torch = pytest.importorskip("torch")
    fn, specs = CASES[name]
    arrays = [a.astype(dtype) for a in _inputs(specs, seed=zlib.crc32(name.encode()) + 2)]
    ks = [kiln.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    kout, tout = fn(kiln, *ks), fn(torch, *ts)
    assert kout.dtype.name == str(tout.dtype).replace("torch.", "")
    cot = np.random.default_rng(0).standard_normal(tuple(tout.shape))
    kout.backward(kiln.tensor(cot, dtype=kout.dtype))
    tout.backward(torch.tensor(cot, dtype=tout.dtype))
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == "float16" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(kout.detach().numpy().astype(np.float64), tout.detach().numpy().astype(np.float64),
                               **tol)
    for k, (kx, tx) in enumerate(zip(ks, ts)):
        assert kx.grad.dtype.name == str(tx.grad.dtype).replace("torch.", ""), f"gradient dtype of input {k}"
        np.testing.assert_allclose(kx.grad.numpy().astype(np.float64), tx.grad.numpy().astype(np.float64),
                                   err_msg=f"gradient of input {k}", **tol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_grad_vs_finite_differences(name):
    fn, specs = CASES[name]
    arrays = _inputs(specs, seed=zlib.crc32(name.encode()) + 1)
    out, cot, kgrads = _kiln_grads(fn, arrays, cot_seed=1)

    def f(*arrs):
        with kiln.no_grad():
            return float((fn(kiln, *[kiln.tensor(a) for a in arrs]).numpy() * cot).sum())

    # a float32 round trip makes tiny steps meaningless: use a coarser step and tolerance there
    eps, rtol = (1e-3, 2e-3) if name == "to_float32_and_back" else (1e-6, 1e-5)
    for k, a in enumerate(arrays):
        num = np.zeros_like(a)
        for idx in np.ndindex(*a.shape):
            hi = [b.copy() for b in arrays]
            lo = [b.copy() for b in arrays]
            hi[k][idx] += eps
            lo[k][idx] -= eps
            num[idx] = (f(*hi) - f(*lo)) / (2 * eps)
        assert kgrads[k] is not None, f"input {k} got no gradient"
        np.testing.assert_allclose(kgrads[k].numpy(), num, rtol=rtol, atol=1e-6, err_msg=f"gradient of input {k}")


def test_grad_accumulates_and_dtype_follows_input():
    w = kiln.tensor([1.0, 2.0], requires_grad=True)  # float32
    (w * w).sum().backward()
    (w * 3).sum().backward()
    assert w.grad.dtype is kiln.float32
    np.testing.assert_allclose(w.grad.numpy(), [5.0, 7.0])
    h = kiln.tensor([1.0, 2.0], dtype=kiln.float64, requires_grad=True)
    (h.float() * 2).sum().backward()  # gradient flows back through a cast
    assert h.grad.dtype is kiln.float64
    np.testing.assert_allclose(h.grad.numpy(), [2.0, 2.0])


def test_non_differentiable_outputs():
    w = kiln.tensor([1.0, -2.0, 3.0], requires_grad=True)
    assert not (w > 0).requires_grad
    assert not w.argmax().requires_grad
    assert not kiln.max(w, 0).indices.requires_grad
    assert kiln.max(w, 0).values.requires_grad
    assert not w.long().requires_grad
    assert (w.detach() * 2).grad_fn is None


def test_max_ties_split_gradient_like_torch():
    torch = pytest.importorskip("torch")
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    for fn in (lambda m, x: m.amax(x, 1), lambda m, x: m.max(x), lambda m, x: m.maximum(x, m.ones_like(x) * 2.0),
               lambda m, x: m.max(x, 1)[0]):
        k = kiln.tensor(a, requires_grad=True)
        t = torch.tensor(a, requires_grad=True)
        fn(kiln, k).sum().backward()
        fn(torch, t).sum().backward()
        np.testing.assert_allclose(k.grad.numpy(), t.grad.numpy())


EDGE_CASES = {
    "sqrt_at_0": (lambda m, x: x.sqrt().sum(), [0.0, 4.0]),
    "abs_at_0": (lambda m, x: x.abs().sum(), [0.0, -4.0]),
    "pow_base_0": (lambda m, x: (x ** 2.5).sum(), [0.0, 4.0]),
    "pow_exponent_grad_base_0": (lambda m, x: m.pow(m.tensor([0.0, 2.0], dtype=m.float64), x).sum(), [2.0, 3.0]),
    "clamp_at_bounds": (lambda m, x: x.clamp(0.0, 1.0).sum(), [0.0, 1.0, 0.5, 2.0]),
    "relu_at_0": (lambda m, x: m.relu(x).sum(), [0.0, 1.0]),
    "logsumexp_neg_inf": (lambda m, x: m.logsumexp(x, 0), [-np.inf, 0.0, 1.0]),
    "softmax_neg_inf": (lambda m, x: (m.softmax(x, 0) * m.tensor([1.0, 2.0, 3.0], dtype=m.float64)).sum(),
                        [-np.inf, 0.0, 1.0]),
    "min_ties": (lambda m, x: x.min(), [1.0, 1.0, 2.0]),
    "max_ties": (lambda m, x: x.max(), [2.0, 1.0, 2.0, 2.0]),
    "max_dim_ties": (lambda m, x: (m.max(x.reshape(2, 3), 1)[0] * m.tensor([1.0, 3.0], dtype=m.float64)).sum(),
                     [2.0, 2.0, 1.0, 0.0, 5.0, 5.0]),
    "min_dim_ties": (lambda m, x: m.min(x.reshape(2, 3), 0)[0].sum(), [1.0, 2.0, 3.0, 1.0, 0.0, 3.0]),
    "amax_ties": (lambda m, x: m.amax(x.reshape(2, 2), 1).sum(), [4.0, 4.0, -1.0, 2.0]),
    "pow_negative_base_int_exponent": (lambda m, x: (x ** 3).sum() + (x ** 2).sum(), [-2.0, -0.5, 0.0, 1.5]),
    "pow_negative_base_fractional": (lambda m, x: (x ** 0.5).sum(), [-4.0, 0.0, 9.0]),
    "pow_zero_base_negative_exponent": (lambda m, x: (x ** -1.0).sum(), [0.0, 2.0, -2.0]),
    "pow_tensor_exponent_negative_base": (lambda m, x: m.pow(m.tensor([-2.0, -3.0], dtype=m.float64), x).sum(),
                                          [2.0, 3.0]),
    "cast_round_trip": (lambda m, x: (x.float().double() * x).sum() + x.half().double().sum(), [0.1, -3.25, 7.0]),
    "minimum_ties": (lambda m, x: m.minimum(x, m.ones_like(x)).sum(), [1.0, 0.0, 2.0]),
    "std_of_constant": (lambda m, x: x.std(), [1.0, 1.0, 1.0]),
    "std_dim_one_constant_row": (lambda m, x: x.reshape(2, 3).std(1).sum(), [1.0, 2.0, 4.0, 3.0, 3.0, 3.0]),
    "where_nan_in_other_branch": (lambda m, x: m.where(x > 0, x, m.log(x)).sum(), [-1.0, 2.0]),
    "sigmoid_saturated": (lambda m, x: m.sigmoid(x).sum(), [-800.0, 800.0]),
    "tanh_saturated": (lambda m, x: m.tanh(x).sum(), [-800.0, 800.0]),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_grad_edge_cases_vs_torch(name):
    torch = pytest.importorskip("torch")
    fn, data = EDGE_CASES[name]
    grads = []
    for m in (torch, kiln):
        x = m.tensor(data, dtype=m.float64, requires_grad=True)
        with np.errstate(all="ignore"):
            fn(m, x).backward()
        grads.append(x.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12, equal_nan=True)


def test_std_of_constant_has_zero_gradient():
    x = kiln.tensor([2.0, 2.0, 2.0], dtype=kiln.float64, requires_grad=True)
    s = x.std()
    assert s.item() == 0.0
    s.backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


def test_prod_gradient_with_zeros():
    x = kiln.tensor([0.0, 2.0, 3.0], dtype=kiln.float64, requires_grad=True)
    x.prod().backward()
    assert x.grad.tolist() == [6.0, 0.0, 0.0]
    y = kiln.tensor([0.0, 2.0, 0.0], dtype=kiln.float64, requires_grad=True)
    y.prod().backward()
    assert y.grad.tolist() == [0.0, 0.0, 0.0]


def test_backward_casts_gradient_to_output_dtype():
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    y = x.double() * x.double()
    y.backward(kiln.ones(2))  # float32 gradient for a float64 output
    assert x.grad.dtype is kiln.float32 and x.grad.tolist() == [2.0, 4.0]
