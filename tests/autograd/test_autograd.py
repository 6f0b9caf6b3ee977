"""Eager autograd semantics (PyTorch's)."""
import numpy as np
import pytest

import kiln


def test_scalar_backward_and_accumulation():
    x = kiln.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0, 6.0]
    (x * 3).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0, 9.0]
    x.grad = None
    x.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_backward_with_gradient_argument():
    x = kiln.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * 2
    y.backward(kiln.tensor([[1.0, 0.0], [0.5, 2.0]]))
    assert x.grad.tolist() == [[2.0, 0.0], [1.0, 4.0]]
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        (x * 2).backward(kiln.ones(3))


def test_shared_gradient_buffers_do_not_alias():
    a = kiln.ones(2, requires_grad=True)
    b = kiln.ones(2, requires_grad=True)
    (a + b).sum().backward()
    (a * 1).sum().backward()
    assert a.grad.tolist() == [2.0, 2.0] and b.grad.tolist() == [1.0, 1.0]


def test_no_grad_enable_grad_and_flags():
    x = kiln.ones(2, requires_grad=True)
    with kiln.no_grad():
        y = x * 2
        with kiln.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf
    assert z.requires_grad and z.grad_fn is not None and not z.is_leaf
    assert kiln.is_grad_enabled()

    @kiln.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    with pytest.raises(RuntimeError, match="only Tensors of floating point dtype can require gradients"):
        kiln.ones(2, dtype=kiln.int64).requires_grad_()
    with pytest.raises(RuntimeError, match="leaf variables"):
        (x * 2).requires_grad_(False)


def test_backward_twice_raises_unless_retained():
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward()


def test_inplace_modified_saved_tensor_raises():
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    z = y.exp()  # saves its output
    z.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()
    # modifying a tensor the backward does not need is fine (as in PyTorch)
    a = x * 1
    b = a + 1  # add saves nothing
    a.mul_(3)
    b.sum().backward()


def test_inplace_on_leaf_requiring_grad_raises():
    x = kiln.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place operation"):
        x.add_(1)
    with kiln.no_grad():
        x.add_(1)
    assert x.tolist() == [2.0, 2.0]


def test_inplace_on_nonleaf_rebases_history():
    x = kiln.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = x * 2
    y.relu_()
    y.mul_(3)
    y.sum().backward()
    assert x.grad.tolist() == [6.0, 0.0, 6.0]


def test_setitem_gradient():
    x = kiln.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    v = kiln.tensor([10.0, 20.0], requires_grad=True)
    y = x * 1
    y[1:3] = v * v
    (y * kiln.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 0.0, 4.0]
    assert v.grad.tolist() == [40.0, 120.0]


def test_autograd_grad_and_double_backward():
    x = kiln.tensor([1.0, 2.0], dtype=kiln.float64, requires_grad=True)
    y = (x ** 3).sum()
    (g,) = kiln.autograd.grad(y, x, create_graph=True)
    assert g.tolist() == [3.0, 12.0]
    assert x.grad is None
    (g2,) = kiln.autograd.grad(g.sum(), x)
    assert g2.tolist() == [6.0, 12.0]
    z = kiln.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="appears to not have been used"):
        kiln.autograd.grad((x * 2).sum(), [x, z])
    gx, gz = kiln.autograd.grad((x * 2).sum(), [x, z], allow_unused=True)
    assert gz is None and gx.tolist() == [2.0, 2.0]


def test_retain_grad_and_backward_inputs():
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    (y * y).sum().backward()
    assert y.grad.tolist() == [6.0, 12.0]
    w = kiln.ones(2, requires_grad=True)
    (x * w).sum().backward(inputs=[w])
    assert w.grad.tolist() == [1.0, 2.0]


def test_broadcast_gradients_reduce_to_input_shape():
    a = kiln.randn(3, 1, dtype=kiln.float64, requires_grad=True)
    b = kiln.randn(4, dtype=kiln.float64, requires_grad=True)
    (a * b + 1.0).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.full((3, 1), b.detach().numpy().sum()))
    np.testing.assert_allclose(b.grad.numpy(), np.full(4, a.detach().numpy().sum()))


def test_grad_fn_names():
    x = kiln.ones(2, requires_grad=True)
    assert (x.exp()).grad_fn.name() == "ExpBackward0"
    assert "grad_fn=<MulBackward0>" in repr(x * 2)


def test_inplace_on_views_rebases_the_base():
    x = kiln.zeros(2, 3, requires_grad=True)
    y = x * 1
    y[:, 0] += 1  # in place on a view of a non-leaf
    (y * kiln.arange(6.0).reshape(2, 3)).sum().backward()
    assert y[:, 0].tolist() == [1.0, 1.0]
    assert x.grad.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    w = kiln.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad"):
        w[0:2].mul_(2)
    with kiln.no_grad():
        w[0:2].mul_(2)
    assert w.tolist() == [2.0, 2.0, 1.0]


def test_views_see_base_updates_inside_compile():
    @kiln.compile
    def f(a):
        b = a.clone()
        row = b[1]
        flat = b.reshape(-1)
        b.add_(1)
        row.mul_(10)
        return b, row, flat

    a = kiln.arange(6.0).reshape(2, 3)
    b, row, flat = f(a)
    eb = a.clone()
    erow, eflat = eb[1], eb.reshape(-1)
    eb.add_(1)
    erow.mul_(10)
    assert b.tolist() == eb.tolist() and row.tolist() == erow.tolist() and flat.tolist() == eflat.tolist()


def test_grad_fn_names_follow_pytorch():
    x = kiln.ones(2, 2, requires_grad=True)
    assert x.sum().grad_fn.name() == "SumBackward0"
    assert x.sigmoid().grad_fn.name() == "SigmoidBackward0"
    assert kiln.where(x > 0, x, 0.0).grad_fn.name() == "WhereBackward0"
    assert (x @ x).grad_fn.name() == "MmBackward0"


def test_legacy_tensor_constructor():
    t = kiln.Tensor([1, 2])
    assert t.dtype is kiln.float32 and t.tolist() == [1.0, 2.0]
    assert kiln.Tensor(2, 3).shape == (2, 3)


def test_register_hook_on_leaf_and_intermediate():
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    h = x.register_hook(lambda g: g * 10)
    y = x * 3
    y.register_hook(lambda g: seen.append(g.tolist()))
    y.sum().backward()
    assert seen == [[1.0, 1.0]] and x.grad.tolist() == [30.0, 30.0]
    h.remove()
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        kiln.ones(2).register_hook(lambda g: g)


def test_cuda_namespace_reports_no_device():
    assert kiln.cuda.is_available() is False and kiln.cuda.device_count() == 0
    device = "cuda" if kiln.cuda.is_available() else "cpu"
    assert kiln.zeros(2, device=device).device == kiln.device("cpu")
