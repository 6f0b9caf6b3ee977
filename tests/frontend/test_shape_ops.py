"""Shape ops (reshape view permute transpose t squeeze unsqueeze expand flatten cat stack split chunk
contiguous unflatten unbind narrow movedim repeat flip ...) vs numpy and PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
from frontend_helpers import DTYPE_NAMES, assert_same, random_array

A = np.arange(24.0, dtype=np.float32).reshape(2, 3, 4)


def _x():
    return kiln.tensor(A)


# (kiln/torch-generic function of (module, tensor), numpy reference of A)
CASES = {
    "reshape": (lambda m, x: x.reshape(4, 6), lambda a: a.reshape(4, 6)),
    "reshape-1": (lambda m, x: x.reshape(-1, 4), lambda a: a.reshape(-1, 4)),
    "reshape-tuple": (lambda m, x: x.reshape((3, -1)), lambda a: a.reshape(3, -1)),
    "reshape-fn": (lambda m, x: m.reshape(x, (24,)), lambda a: a.reshape(24)),
    "reshape-0d": (lambda m, x: x[0, 0, :1].reshape(()), lambda a: a[0, 0, :1].reshape(())),
    "view": (lambda m, x: x.view(6, 4), lambda a: a.reshape(6, 4)),
    "view-1": (lambda m, x: x.view(-1), lambda a: a.reshape(-1)),
    "view_as": (lambda m, x: x.view_as(m.zeros(6, 4)), lambda a: a.reshape(6, 4)),
    "reshape_as": (lambda m, x: x.reshape_as(m.zeros(4, 6)), lambda a: a.reshape(4, 6)),
    "permute": (lambda m, x: x.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1)),
    "permute-tuple": (lambda m, x: x.permute((1, 2, 0)), lambda a: a.transpose(1, 2, 0)),
    "permute-neg": (lambda m, x: m.permute(x, (-1, 0, 1)), lambda a: a.transpose(2, 0, 1)),
    "transpose": (lambda m, x: x.transpose(0, 2), lambda a: a.swapaxes(0, 2)),
    "transpose-neg": (lambda m, x: m.transpose(x, -1, -2), lambda a: a.swapaxes(-1, -2)),
    "swapaxes": (lambda m, x: x.swapaxes(0, 1), lambda a: a.swapaxes(0, 1)),
    "t": (lambda m, x: x[0].t(), lambda a: a[0].T),
    "t-1d": (lambda m, x: x[0, 0].t(), lambda a: a[0, 0]),
    "T": (lambda m, x: x[0].T, lambda a: a[0].T),
    "mT": (lambda m, x: x.mT, lambda a: a.swapaxes(-1, -2)),
    "squeeze": (lambda m, x: x.reshape(1, 2, 1, 12).squeeze(), lambda a: a.reshape(2, 12)),
    "squeeze-dim": (lambda m, x: x.reshape(1, 2, 1, 12).squeeze(2), lambda a: a.reshape(1, 2, 12)),
    "squeeze-non1": (lambda m, x: x.reshape(1, 2, 1, 12).squeeze(1), lambda a: a.reshape(1, 2, 1, 12)),
    "squeeze-tuple": (lambda m, x: x.reshape(1, 2, 1, 12).squeeze((0, 2)), lambda a: a.reshape(2, 12)),
    "squeeze-neg": (lambda m, x: x.reshape(1, 2, 1, 12).squeeze(-2), lambda a: a.reshape(1, 2, 12)),
    "squeeze-0d": (lambda m, x: x[0, 0, 0].squeeze(), lambda a: a[0, 0, 0]),
    "unsqueeze": (lambda m, x: x.unsqueeze(0), lambda a: a[None]),
    "unsqueeze-1": (lambda m, x: x.unsqueeze(-1), lambda a: a[..., None]),
    "unsqueeze-3": (lambda m, x: x.unsqueeze(3), lambda a: a[..., None]),
    "unsqueeze-4": (lambda m, x: x.unsqueeze(-4), lambda a: a[None]),
    "unsqueeze-0d": (lambda m, x: x[0, 0, 0].unsqueeze(0), lambda a: a[0, 0, 0][None]),
    "expand": (lambda m, x: x[:, :1].expand(2, 5, 4), lambda a: np.broadcast_to(a[:, :1], (2, 5, 4))),
    "expand-1": (lambda m, x: x[:, :1].expand(-1, 5, -1), lambda a: np.broadcast_to(a[:, :1], (2, 5, 4))),
    "expand-new": (lambda m, x: x[:, :1].expand(3, 2, 5, 4), lambda a: np.broadcast_to(a[:, :1], (3, 2, 5, 4))),
    "expand-tuple": (lambda m, x: x[:, :1].expand((2, 5, 4)), lambda a: np.broadcast_to(a[:, :1], (2, 5, 4))),
    "expand_as": (lambda m, x: x[:, :1].expand_as(x), lambda a: np.broadcast_to(a[:, :1], (2, 3, 4))),
    "broadcast_to": (lambda m, x: m.broadcast_to(x[0], (2, 3, 4)), lambda a: np.broadcast_to(a[0], (2, 3, 4))),
    "flatten": (lambda m, x: x.flatten(), lambda a: a.reshape(-1)),
    "flatten-1": (lambda m, x: x.flatten(1), lambda a: a.reshape(2, 12)),
    "flatten-01": (lambda m, x: x.flatten(0, 1), lambda a: a.reshape(6, 4)),
    "flatten-neg": (lambda m, x: m.flatten(x, -2), lambda a: a.reshape(2, 12)),
    "flatten-0d": (lambda m, x: m.flatten(x[0, 0, 0]), lambda a: a[0, 0, 0].reshape(1)),
    "contiguous": (lambda m, x: x.transpose(0, 1).contiguous(), lambda a: a.swapaxes(0, 1)),
    "clone": (lambda m, x: x.clone(), lambda a: a),
    "unflatten": (lambda m, x: x.unflatten(2, (2, 2)), lambda a: a.reshape(2, 3, 2, 2)),
    "unflatten-neg": (lambda m, x: x.unflatten(-1, (2, -1)), lambda a: a.reshape(2, 3, 2, 2)),
    "narrow": (lambda m, x: x.narrow(2, 1, 2), lambda a: a[:, :, 1:3]),
    "narrow-neg": (lambda m, x: m.narrow(x, -1, -3, 2), lambda a: a[:, :, 1:3]),
    "movedim": (lambda m, x: x.movedim(0, 2), lambda a: np.moveaxis(a, 0, 2)),
    "movedim-neg": (lambda m, x: m.movedim(x, -1, 0), lambda a: np.moveaxis(a, -1, 0)),
    "movedim-tuple": (lambda m, x: m.movedim(x, (0, 1), (2, 0)), lambda a: np.moveaxis(a, (0, 1), (2, 0))),
    "moveaxis": (lambda m, x: x.moveaxis(-1, 1), lambda a: np.moveaxis(a, -1, 1)),
    "repeat": (lambda m, x: x.repeat(2, 1, 3), lambda a: np.tile(a, (2, 1, 3))),
    "repeat-more": (lambda m, x: x.repeat(2, 1, 1, 2), lambda a: np.tile(a, (2, 1, 1, 2))),
    "repeat-tuple": (lambda m, x: x.repeat((1, 2, 1)), lambda a: np.tile(a, (1, 2, 1))),
    "flip": (lambda m, x: x.flip(0), lambda a: a[::-1]),
    "flip-many": (lambda m, x: m.flip(x, (0, 2)), lambda a: a[::-1, :, ::-1]),
    "flip-neg": (lambda m, x: x.flip(-1), lambda a: a[..., ::-1]),
    "flip-list": (lambda m, x: x.flip([1]), lambda a: a[:, ::-1]),
    "tril": (lambda m, x: m.tril(x), lambda a: np.tril(a)),
    "triu1": (lambda m, x: m.triu(x, 1), lambda a: np.triu(a, 1)),
    "tril-1": (lambda m, x: x.tril(-1), lambda a: np.tril(a, -1)),
    "cat": (lambda m, x: m.cat([x, x], 1), lambda a: np.concatenate([a, a], 1)),
    "cat-neg": (lambda m, x: m.cat((x, x[:, :1]), -2), lambda a: np.concatenate([a, a[:, :1]], -2)),
    "cat-default": (lambda m, x: m.cat([x, x]), lambda a: np.concatenate([a, a])),
    "cat-3": (lambda m, x: m.cat([x, x[..., :1], x], 2), lambda a: np.concatenate([a, a[..., :1], a], 2)),
    "cat-empty1d": (lambda m, x: m.cat([x, m.tensor([])]), lambda a: a),
    "stack": (lambda m, x: m.stack([x, x]), lambda a: np.stack([a, a])),
    "stack-1": (lambda m, x: m.stack([x, x], -1), lambda a: np.stack([a, a], -1)),
    "stack-3": (lambda m, x: m.stack([x, x, x], 3), lambda a: np.stack([a, a, a], 3)),
    "hstack": (lambda m, x: m.hstack([x, x]), lambda a: np.hstack([a, a])),
    "vstack": (lambda m, x: m.vstack([x[0], x[1]]), lambda a: np.vstack([a[0], a[1]])),
    "cumsum": (lambda m, x: x.cumsum(1), lambda a: np.cumsum(a, 1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_shape_op_vs_numpy(name):
    fk, fn = CASES[name]
    assert_same(fk(kiln, _x()), np.array(fn(A)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_shape_op_vs_torch(name):
    torch = pytest.importorskip("torch")
    fk, _ = CASES[name]
    assert_same(fk(kiln, _x()), fk(torch, torch.from_numpy(A.copy())))


MULTI = {
    "split": (lambda m, x: x.split(2, 2), lambda a: np.split(a, 2, 2)),
    "split-uneven": (lambda m, x: m.split(x, 3, -1), lambda a: [a[..., :3], a[..., 3:]]),
    "split-sizes": (lambda m, x: x.split([1, 3], 2), lambda a: [a[..., :1], a[..., 1:]]),
    "split-default": (lambda m, x: x.split(1), lambda a: [a[:1], a[1:]]),
    "chunk": (lambda m, x: x.chunk(2, 2), lambda a: np.split(a, 2, 2)),
    "chunk-3of4": (lambda m, x: x.chunk(3, -1), lambda a: [a[..., :2], a[..., 2:]]),
    "chunk-5of4": (lambda m, x: x.chunk(5, 2), lambda a: np.split(a, 4, 2)),
    "chunk-3of3": (lambda m, x: x.chunk(3, 1), lambda a: np.split(a, 3, 1)),
    "chunk-4of6": (lambda m, x: x.reshape(6, 4).chunk(4), lambda a: np.split(a.reshape(6, 4), 3)),
    "unbind": (lambda m, x: x.unbind(1), lambda a: [a[:, i] for i in range(3)]),
    "unbind-neg": (lambda m, x: m.unbind(x, -1), lambda a: [a[..., i] for i in range(4)]),
    "iter": (lambda m, x: list(x), lambda a: list(a)),
    "broadcast_tensors": (lambda m, x: m.broadcast_tensors(x[:, :1], x[0]),
                          lambda a: np.broadcast_arrays(a[:, :1], a[0])),
}


@pytest.mark.parametrize("name", sorted(MULTI))
def test_multi_output_shape_ops(name):
    fk, fn = MULTI[name]
    got, want = fk(kiln, _x()), fn(A)
    assert isinstance(got, (tuple, list)) and len(got) == len(want)
    for g, w in zip(got, want):
        assert_same(g, np.array(w))


@pytest.mark.parametrize("name", sorted(MULTI))
def test_multi_output_shape_ops_vs_torch(name):
    torch = pytest.importorskip("torch")
    fk, _ = MULTI[name]
    got, want = fk(kiln, _x()), fk(torch, torch.from_numpy(A.copy()))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_same(g, w)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_shape_ops_keep_dtype(dtype):
    a = random_array((2, 3), dtype, np.random.default_rng(0))
    x = kiln.tensor(a)
    for y, ref in [(x.t(), a.T), (x.reshape(3, 2), a.reshape(3, 2)), (x.unsqueeze(1), a[:, None]),
                   (kiln.cat([x, x]), np.concatenate([a, a])), (kiln.stack([x, x], 1), np.stack([a, a], 1)),
                   (x.flip(1), a[:, ::-1]), (x.repeat(2, 1), np.tile(a, (2, 1))), (x.expand(4, 2, 3),
                                                                                   np.broadcast_to(a, (4, 2, 3)))]:
        assert_same(y, np.array(ref))


def test_cat_stack_promote_dtypes_like_torch():
    f = kiln.ones(2)
    d = kiln.ones(2, dtype=kiln.float64)
    i = kiln.ones(2, dtype=kiln.int64)
    b = kiln.ones(2, dtype=kiln.bool)
    assert kiln.cat([f, d]).dtype is kiln.float64
    assert kiln.cat([i, f]).dtype is kiln.float32
    assert kiln.cat([b, i]).dtype is kiln.int64
    assert kiln.stack([f, i], 1).dtype is kiln.float32


def test_view_shares_storage_eagerly():
    """Basic views (reshape/view/permute/transpose/slicing) alias their base, like PyTorch."""
    x = kiln.zeros(2, 3)
    v = x.view(6)
    v[1] = 5.0
    assert x[0, 1].item() == 5.0
    t = x.t()
    x.add_(1)
    assert t[1, 0].item() == 6.0


def test_contiguous_and_is_contiguous():
    x = _x().transpose(0, 1)
    assert x.contiguous().is_contiguous()
    assert_same(x.contiguous(), A.swapaxes(0, 1))


def test_shape_op_errors():
    x = kiln.ones(2, 3)
    with pytest.raises(RuntimeError, match=r"shape '\[4, 2\]' is invalid for input of size 6"):
        x.reshape(4, 2)
    with pytest.raises(RuntimeError, match="only one dimension can be inferred"):
        x.view(-1, -1)
    with pytest.raises(RuntimeError, match=r"shape '\[-1, 4\]' is invalid for input of size 6"):
        x.reshape(-1, 4)
    with pytest.raises(RuntimeError, match="number of dimensions in the tensor input does not match"):
        x.permute(0)
    with pytest.raises(RuntimeError, match="duplicate dims are not allowed"):
        x.permute(0, 0)
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        x.permute(0, 2)
    with pytest.raises(IndexError, match="but got 2"):
        x.transpose(0, 2)
    with pytest.raises(RuntimeError, match="t\\(\\) expects a tensor with <= 2 dimensions, but self is 3D"):
        kiln.ones(2, 3, 4).t()
    with pytest.raises(IndexError, match="but got 2"):
        x.squeeze(2)
    with pytest.raises(IndexError, match=r"range of \[-3, 2\], but got 3"):
        x.unsqueeze(3)
    with pytest.raises(RuntimeError, match=r"expanded size of the tensor \(4\) must match the existing size \(2\)"):
        x.expand(4, 3)
    with pytest.raises(RuntimeError, match="number of sizes provided \\(1\\) must be greater or equal"):
        x.expand(3)
    with pytest.raises(RuntimeError, match="start_dim cannot come after end_dim"):
        x.flatten(1, 0)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match except in dimension 0. Expected size 3 but "
                                           "got size 4 for tensor number 1"):
        kiln.cat([x, kiln.ones(2, 4)])
    with pytest.raises(RuntimeError, match="Tensors must have same number of dimensions: got 2 and 1"):
        kiln.cat([x, kiln.ones(2)])
    with pytest.raises(RuntimeError, match=r"zero-dimensional tensor \(at position 1\) cannot be concatenated"):
        kiln.cat([kiln.ones(1), kiln.tensor(1.0)])
    with pytest.raises(TypeError, match="element 1 is list"):
        kiln.cat([kiln.ones(1), [1.0]])
    with pytest.raises(RuntimeError, match="expected a non-empty list of Tensors"):
        kiln.cat([])
    with pytest.raises(IndexError, match="but got 2"):
        kiln.cat([x, x], 2)
    with pytest.raises(RuntimeError, match=r"stack expects each tensor to be equal size, but got \[2, 3\] at entry 0 "
                                           r"and \[3, 2\] at entry 1"):
        kiln.stack([x, kiln.ones(3, 2)])
    with pytest.raises(RuntimeError, match="split_with_sizes expects split_sizes to sum exactly to 3"):
        x.split([1, 1], 1)
    with pytest.raises(RuntimeError, match="chunk expects `chunks` to be greater than 0"):
        x.chunk(0)
    with pytest.raises(RuntimeError, match=r"start \(2\) \+ length \(3\) exceeds dimension size \(3\)"):
        x.narrow(1, 2, 3)
    with pytest.raises(RuntimeError, match=r"shape '\[4, 2\]' is invalid for input of size 3"):
        x.unflatten(1, (4, 2))
    with pytest.raises(RuntimeError, match="Number of dimensions of repeat dims can not be smaller"):
        x.repeat(2)
    with pytest.raises(RuntimeError, match="appears multiple times"):
        x.flip((0, 0))
    with pytest.raises(RuntimeError, match="movedim: Invalid source or destination dims"):
        kiln.movedim(x, (0, 1), (0,))
    with pytest.raises(TypeError, match="shape entries must be ints"):
        x.reshape(2.0, 3)


def test_axis_is_an_alias_of_dim_like_torch():
    a = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    x = kiln.tensor(a)
    assert_same(x.sum(axis=1), a.sum(axis=1))
    assert_same(kiln.mean(x, axis=0, keepdim=True), a.mean(axis=0, keepdims=True))
    assert_same(x.amax(axis=1), a.max(axis=1))
    assert_same(x.argmin(axis=0), a.argmin(axis=0))
    assert_same(x.max(axis=1).values, a.max(axis=1))
    assert_same(kiln.softmax(x, axis=1), np.exp(a) / np.exp(a).sum(1, keepdims=True))
    assert_same(kiln.cat([x, x], axis=1), np.concatenate([a, a], axis=1))
    assert_same(kiln.stack([x, x], axis=1), np.stack([a, a], axis=1))
    assert_same(x.unsqueeze(axis=0), a[None])
    assert_same(x.index_select(axis=1, index=kiln.tensor([2, 0])), a[:, [2, 0]])
    assert_same(kiln.all(x > 0, axis=1), (a > 0).all(axis=1))
    with pytest.raises(TypeError, match="got both 'dim' and its alias 'axis'"):
        x.sum(dim=0, axis=1)


@pytest.mark.parametrize("n", [1, 5, 256, 257, 1000])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "bool"])
def test_cumsum_short_and_long_dims(n, dtype):
    a = random_array((2, n), dtype, np.random.default_rng(n))
    want = np.cumsum(a.astype(np.float64 if dtype.startswith("float") else np.int64), axis=1)
    got = kiln.tensor(a).cumsum(1)
    assert_same(got, want.astype(dtype if dtype.startswith("float") else np.int64), rtol=1e-5, atol=1e-4)
    assert_same(kiln.cumsum(kiln.tensor(a.T.copy()), dim=0), got.numpy().T)
    traced = kiln.compile(lambda t: t.cumsum(-1))(kiln.tensor(a))
    assert_same(traced, got)


def test_cumsum_gradient_long_dim():
    a = np.random.default_rng(0).standard_normal(600)
    x = kiln.tensor(a, requires_grad=True)
    (x.cumsum(0) ** 2).sum().backward()
    c = np.cumsum(a)
    expect = np.cumsum((2 * c)[::-1])[::-1]  # d/dx_i sum_j c_j^2 = sum_{j >= i} 2 c_j
    np.testing.assert_allclose(x.grad.numpy(), expect, rtol=1e-10)
    assert kiln.tensor(3.0).cumsum(0).item() == 3.0
    assert_same(kiln.tensor([1, 2]).cumsum(0, dtype=kiln.float32), np.array([1.0, 3.0], dtype=np.float32))


def test_cumsum_nan_and_inf_only_reach_later_positions_like_torch():
    assert_same(kiln.tensor([1.0, np.nan, 2.0]).cumsum(0), np.array([1.0, np.nan, np.nan], dtype=np.float32))
    assert_same(kiln.tensor([1.0, np.inf, 2.0]).cumsum(0), np.array([1.0, np.inf, np.inf], dtype=np.float32))
    assert_same(kiln.cumprod(kiln.tensor([2.0, np.nan, 3.0]), 0), np.array([2.0, np.nan, np.nan], dtype=np.float32))
    x = kiln.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x.cumsum(0)
    y.backward(kiln.tensor([np.nan, 0.0, 1.0]))  # a nan cotangent at 0 only reaches input 0
    assert_same(x.grad, np.array([np.nan, 1.0, 1.0], dtype=np.float32))
