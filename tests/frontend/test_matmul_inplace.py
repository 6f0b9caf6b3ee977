"""matmul / @ / mm / bmm (1-D, 2-D, batched with broadcasting) and in-place ops with the version
counter behaviour autograd relies on."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
from frontend_helpers import assert_same, random_array

MATMUL_SHAPES = [
    ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)), ((2, 1, 2, 3), (5, 3, 4)), ((3,), (2, 3, 4)), ((2, 2, 3), (3,)), ((1, 2, 3), (4, 3, 2)),
    ((0, 3), (3, 2)), ((2, 0), (0, 3)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32"])
def test_matmul_vs_numpy(sa, sb, dtype):
    rng = np.random.default_rng(0)
    a, b = random_array(sa, dtype, rng), random_array(sb, dtype, rng)
    expect = np.matmul(a, b)
    assert_same(kiln.matmul(kiln.tensor(a), kiln.tensor(b)), np.asarray(expect), rtol=1e-5, atol=1e-5)
    assert_same(kiln.tensor(a) @ kiln.tensor(b), np.asarray(expect), rtol=1e-5, atol=1e-5)
    assert_same(kiln.tensor(a).matmul(kiln.tensor(b)), np.asarray(expect), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=str)
def test_matmul_vs_torch(sa, sb):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    for dtype in ("float32", "float64", "float16", "int64"):
        a, b = random_array(sa, dtype, rng), random_array(sb, dtype, rng)
        tol = dict(rtol=1e-2, atol=1e-2) if dtype == "float16" else dict(rtol=1e-5, atol=1e-5)
        assert_same(kiln.tensor(a) @ kiln.tensor(b), torch.from_numpy(a) @ torch.from_numpy(b), **tol)


def test_mm_bmm_mv_dot():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    assert_same(kiln.mm(kiln.tensor(a), kiln.tensor(b)), a @ b)
    assert_same(kiln.tensor(a).mm(kiln.tensor(b)), a @ b)
    p, q = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 3, 4))
    assert_same(kiln.bmm(kiln.tensor(p), kiln.tensor(q)), p @ q)
    assert_same(kiln.tensor(p).bmm(kiln.tensor(q)), p @ q)
    v = rng.standard_normal(3)
    assert_same(kiln.mv(kiln.tensor(a), kiln.tensor(v)), a @ v)
    assert_same(kiln.dot(kiln.tensor(v), kiln.tensor(v)), np.asarray(v @ v))
    assert_same(kiln.outer(kiln.tensor(v), kiln.tensor(a[0])), np.outer(v, a[0]))
    c = rng.standard_normal((2, 4))
    assert_same(kiln.addmm(kiln.tensor(c), kiln.tensor(a), kiln.tensor(b), beta=0.5, alpha=2), 0.5 * c + 2 * (a @ b))


def test_matmul_errors():
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(2x3 and 4x5\)"):
        kiln.ones(2, 3) @ kiln.ones(4, 5)
    with pytest.raises(RuntimeError, match=r"inconsistent tensor size, expected tensor \[3\] and src \[4\]"):
        kiln.ones(3) @ kiln.ones(4)
    with pytest.raises(RuntimeError, match=r"batch dimensions \(2,\) and \(3,\).*cannot be broadcast"):
        kiln.ones(2, 2, 3) @ kiln.ones(3, 3, 4)
    with pytest.raises(RuntimeError, match="both arguments to matmul need to be at least 1D, but they are 0D and 1D"):
        kiln.ones(()) @ kiln.ones(3)
    with pytest.raises(RuntimeError, match="expected m1 and m2 to have the same dtype, but got: float32 != float64"):
        kiln.ones(2, 3) @ kiln.ones(3, 2, dtype=kiln.float64)
    with pytest.raises(RuntimeError, match="mm: expected 2D tensors, got 3D and 2D"):
        kiln.mm(kiln.ones(2, 2, 3), kiln.ones(3, 4))
    with pytest.raises(RuntimeError, match="bmm: expected 3D tensors, got 2D and 2D"):
        kiln.bmm(kiln.ones(2, 3), kiln.ones(3, 4))
    with pytest.raises(RuntimeError, match="bmm: batch sizes differ: 2 and 3"):
        kiln.bmm(kiln.ones(2, 2, 3), kiln.ones(3, 3, 4))
    with pytest.raises(RuntimeError, match=r"cannot be multiplied \(2x3 and 4x4\)"):
        kiln.bmm(kiln.ones(2, 2, 3), kiln.ones(2, 4, 4))
    with pytest.raises(RuntimeError, match="matmul is not implemented for bool"):
        kiln.ones(2, 2, dtype=kiln.bool) @ kiln.ones(2, 2, dtype=kiln.bool)


# ---------------------------------------------------------------------------------- in-place ops
INPLACE = {
    # name: (args, numpy reference of a)
    "add_": ((2.0,), lambda a: a + 2), "sub_": ((0.5,), lambda a: a - 0.5), "mul_": ((3.0,), lambda a: a * 3),
    "div_": ((4.0,), lambda a: a / 4), "pow_": ((2,), lambda a: a ** 2), "neg_": ((), lambda a: -a),
    "abs_": ((), np.abs), "exp_": ((), np.exp), "sigmoid_": ((), lambda a: 1 / (1 + np.exp(-a))),
    "tanh_": ((), np.tanh), "clamp_": ((-0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5)),
    "clamp_min_": ((0.0,), lambda a: np.maximum(a, 0)), "relu_": ((), lambda a: np.maximum(a, 0)),
    "zero_": ((), np.zeros_like), "fill_": ((1.5,), lambda a: np.full_like(a, 1.5)),
    "floor_": ((), np.floor), "sqrt_": ((), lambda a: np.sqrt(np.abs(a))),
}


@pytest.mark.parametrize("name", sorted(INPLACE))
def test_inplace_ops(name):
    args, ref = INPLACE[name]
    a = np.random.default_rng(3).standard_normal((3, 4))
    if name == "sqrt_":
        a = np.abs(a)
    x = kiln.tensor(a)
    alias = x.detach()
    v0 = x._vc[0]
    out = getattr(x, name)(*args)
    assert out is x
    assert_same(x, ref(a).astype(np.float64))
    assert_same(alias, ref(a).astype(np.float64))  # detach() shares storage
    assert x._vc[0] == v0 + 1 and alias._vc[0] == v0 + 1


def test_inplace_with_tensor_args_and_broadcasting():
    x = kiln.ones(2, 2)
    x.add_(kiln.tensor([1.0, 2.0]))
    x.mul_(kiln.tensor([[2.0], [3.0]]))
    x.sub_(1, alpha=2)
    x.div_(kiln.tensor(2.0))
    assert_same(x, ((np.ones((2, 2)) + [1, 2]) * [[2], [3]] - 2).astype(np.float32) / 2)
    x.copy_(kiln.tensor([5, 6]))  # broadcast + cast
    assert_same(x, np.array([[5.0, 6.0], [5.0, 6.0]], dtype=np.float32))
    x.fill_(kiln.tensor(3))
    assert_same(x, np.full((2, 2), 3.0, dtype=np.float32))
    y = kiln.ones(3)
    y += 1
    y *= kiln.tensor([1.0, 2.0, 3.0])
    y -= 1
    y /= 2
    assert_same(y, np.array([0.5, 1.5, 2.5], dtype=np.float32))
    z = kiln.tensor([1, 2, 3])
    z += 2  # int += int stays int
    assert_same(z, np.array([3, 4, 5]))


def test_inplace_on_views_from_basic_slicing():
    x = kiln.zeros(3, 4)
    x[1].add_(1)
    w = x[:, ::2]
    w.mul_(0)
    w += 2
    x[2:, 1:3].fill_(7)
    x.t()[0].sub_(1)
    x.view(12)[-1] = 9
    expect = np.zeros((3, 4), dtype=np.float32)
    expect[1] += 1
    expect[:, ::2] = 2
    expect[2:, 1:3] = 7
    expect[:, 0] -= 1
    expect[2, 3] = 9
    assert_same(x, expect)


def test_inplace_on_views_vs_torch():
    torch = pytest.importorskip("torch")

    def prog(m):
        x = m.arange(24.0).reshape(2, 3, 4)
        x[0].mul_(2)
        x[:, 1::2, ::3].add_(100)
        x.permute(2, 0, 1)[1].clamp_(max=10)
        x[1, :, 2].zero_()
        x[..., -1].copy_(m.tensor([1.0, 2.0, 3.0]))
        return x

    assert_same(prog(kiln), prog(torch))


def test_version_counter():
    x = kiln.zeros(3)
    v0 = x._vc[0]
    x.add_(1)
    x.mul_(2)
    x[0] = 3
    x.zero_()
    assert x._vc[0] == v0 + 4
    base = kiln.zeros(3, 2)
    view = base[0]
    view.add_(1)
    assert base._vc[0] == view._vc[0] == 1  # views share the counter with their base
    y = base + 1  # out-of-place ops don't bump
    assert base._vc[0] == 1 and y._vc[0] == 0


def test_inplace_modifying_saved_tensor_raises_on_backward():
    w = kiln.ones(3, requires_grad=True)
    y = w.exp()
    y.add_(1)  # exp saved its output
    with pytest.raises(RuntimeError, match="modified by an inplace operation.*is at version 1; expected version 0"):
        y.sum().backward()
    a = kiln.ones(3)
    w2 = kiln.ones(3, requires_grad=True)
    z = w2 * a  # mul saved its input `a`
    a.add_(1)
    with pytest.raises(RuntimeError, match="one of the variables needed for gradient computation has been modified"):
        z.sum().backward()
    w3 = kiln.ones(3, requires_grad=True)
    h = w3 * 2
    q = h * h
    h.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        q.sum().backward()


def test_inplace_on_unsaved_tensor_is_fine():
    a = kiln.ones(3)
    w = kiln.ones(3, requires_grad=True)
    y = w + a  # add saves nothing
    a.add_(1)
    y.sum().backward()
    assert_same(w.grad, np.ones(3, dtype=np.float32))


def test_inplace_on_leaf_requiring_grad_raises():
    w = kiln.ones(3, requires_grad=True)
    for f in (lambda: w.add_(1), lambda: w.mul_(2), lambda: w.zero_(), lambda: w.fill_(1.0),
              lambda: w.copy_(kiln.zeros(3)), lambda: w.__setitem__(0, 2.0), lambda: w.clamp_(0, 1)):
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place "
                                               "operation"):
            f()
    with kiln.no_grad():  # allowed under no_grad (optimizer updates)
        w.add_(1)
        w[0] = 5.0
    assert w.tolist() == [5.0, 2.0, 2.0] and w.requires_grad and w.is_leaf


def test_inplace_matches_torch_with_autograd():
    torch = pytest.importorskip("torch")

    def prog(m):
        w = m.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], dtype=m.float64, requires_grad=True)
        y = w * 2
        y.mul_(3)
        y[1] = w[1] * w[0] + y[0]
        y.add_(w.sum())
        z = y.clone()
        z += 1
        z[:, 0] = 0.0
        (z * z).sum().backward()
        return y.detach(), w.grad

    (ky, kg), (ty, tg) = prog(kiln), prog(torch)
    assert_same(ky, ty)
    assert_same(kg, tg)


def test_saved_view_of_modified_base_raises_like_torch():
    torch = pytest.importorskip("torch")
    for m in (kiln, torch):
        w = m.ones(2, 3, dtype=m.float64, requires_grad=True)
        y = w * 2
        y[1] = y[1] * y[0]  # mul saved views of y; then y is written
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()


def test_inplace_dtype_rules():
    x = kiln.ones(2, 3, dtype=kiln.int64)
    with pytest.raises(RuntimeError, match="result type float32 can't be cast to the desired output type int64"):
        x.add_(1.5)
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type int64"):
        x.sigmoid_()
    x.fill_(2.7)  # fill_ / copy_ / setitem cast like PyTorch
    assert_same(x, np.full((2, 3), 2))
    f = kiln.ones(2)
    f.add_(kiln.tensor([1, 2]))  # int into float: fine
    assert_same(f, np.array([2.0, 3.0], dtype=np.float32))
    with pytest.raises(RuntimeError, match=r"output with shape \[2\] doesn't match the broadcast shape \[2, 2\]"):
        f.add_(kiln.ones(2, 2))


def test_inplace_errors():
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor refers to a single memory"):
        kiln.ones(3).expand(2, 3).add_(1)
    with pytest.raises(RuntimeError, match=r"copy_: the size of src \[2\] cannot be broadcast to \[3\]"):
        kiln.zeros(3).copy_(kiln.ones(2))
    with pytest.raises(TypeError, match="copy_\\(\\): argument 'src' must be Tensor"):
        kiln.zeros(3).copy_([1, 2, 3])
    with pytest.raises(NotImplementedError, match="t_\\(\\) changes the tensor's shape in place"):
        kiln.zeros(2, 3).t_()
    with pytest.raises(NotImplementedError, match="unsqueeze_"):
        kiln.zeros(2, 3).unsqueeze_(0)


def test_inplace_on_view_of_non_leaf_requiring_grad():
    w = kiln.ones(2, 3, requires_grad=True)
    y = w * 1
    y[0].mul_(2)
    y.sum().backward()
    assert w.grad.tolist() == [[2.0, 2.0, 2.0], [1.0, 1.0, 1.0]]


def test_augmented_assignment_is_in_place_like_torch():
    x = kiln.tensor([5, 6, 7])
    alias = x
    x //= 2
    x %= 2
    x **= 2
    assert alias is x and x.tolist() == [0, 1, 1]
    m = kiln.tensor([True, False, True])
    alias = m
    m &= kiln.tensor([True, True, False])
    m |= kiln.tensor([False, True, False])
    m ^= True
    assert alias is m and m.tolist() == [False, False, True]
    f = kiln.tensor([5.0, 6.0])
    view = f[:1]
    f //= 2
    assert view.tolist() == [2.0]
    y = kiln.ones(2, 2)
    z = y
    y @= kiln.ones(2, 2) * 2  # like torch, @= rebinds (no in-place matmul)
    assert z.tolist() == [[1.0, 1.0], [1.0, 1.0]] and y.tolist() == [[4.0, 4.0], [4.0, 4.0]]
