"""Indexing: basic slicing, integer / list / bool-mask indexing, gather / scatter / index_select and
__setitem__ with every kind of key, vs numpy and PyTorch (shapes AND values)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import kiln
from frontend_helpers import DTYPE_NAMES, assert_same, random_array

A = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
I = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731

# Keys on A (shape (2, 3, 4, 5)). numpy arrays stand for index tensors (converted per library).
BASIC_KEYS = [
    0, -1, 1, (1, 2), (slice(None), 1), (Ellipsis, 0), (None,), (None, 0, None), (slice(1, None, 2),),
    (slice(None, None, 3), slice(1, 3)), (0, Ellipsis, None, 1), (slice(-2, None), -1, slice(None, None, 2)),
    (Ellipsis,), (Ellipsis, None), (slice(5, 10),), (slice(-100, 100),), (slice(3, 1),), (1, 2, 3, 4),
    (-2, -3, -4, -5), (slice(None), slice(None), slice(None), slice(None, None, 2)), (None, Ellipsis, None),
    (0, None, slice(1, 3), None, Ellipsis), (slice(None, -1), Ellipsis, slice(1, None, 3)),
]
ADVANCED_KEYS = [
    I(0, 1, 1), (I(0, 1), I(2, 0)), (slice(None), I(0, 2)), (slice(None), I(0, 2), I(1, 3)),
    (I(0, 1), slice(None), I(1, 3)),                              # non-adjacent: index dims go first
    (slice(None), I(0, 2), slice(None), I(1, 3)),                 # non-adjacent after a slice
    (I([[0], [1]]), I([0, 1, 2])),                                # broadcasting index tensors
    (Ellipsis, I(0, -1)), (None, I(0, 1), None), (I(-1, -2),), (slice(None), None, I(0, 1)),
    (I([[0, 1], [1, 0]]),), (slice(None), I([[0, 1], [2, 0]]), slice(1, 3)), (I(0, 1), Ellipsis, I(1, 2)),
    (None, Ellipsis, None, I(0,)), (slice(None), np.zeros(0, dtype=np.int64)), (I(1),), (slice(None), I(1)),
    (slice(None, None, 2), I(2, 0), slice(1, None, 2)), (I(1, 0), I(2, 1), I(3, 3), I(4, 0)),
    ([0, 1, 1],), (slice(None), [0, 2]), ([0, 1], [2, 0]), ([[0, 1]], slice(None), [[1], [2]]),
    (np.array(1),),
]
MASK_KEYS = [
    (A.sum((2, 3)) > 200,), (slice(None), A[0, :, :, 0] > 20), (A[..., 0] > 50,), (Ellipsis, A[0, 0, 0] > 2),
    (A > 60,), (np.zeros((2, 3, 4, 5), dtype=bool),), (A[:, 0, 0, 0] > 50, slice(None), I(0, 2)),
    (slice(None), A[0, :, 0, 0] > 10, slice(None), I(1, 2)),
]
# ints mixed with index tensors: PyTorch treats the int as basic indexing, numpy as advanced,
# so the result dim order can differ from numpy's; compare these with torch only.
TORCH_ONLY_KEYS = [
    (0, I(0, 2)), (I(1,), 0, I(2, 3)), (0, slice(None), I(1, 2), I(0, 4)), (I(0, 1), 1, I(1, 2)),
    (0, A[0, :, 0, 0] > 10, 1), (slice(None), np.array(1), I(0, 1)), (True,), (False,), (None, True),
    (0, True, slice(None), False),
]


def _conv(key, mod):
    if isinstance(key, tuple):
        return tuple(_conv(k, mod) for k in key)
    if isinstance(key, np.ndarray):
        return mod.tensor(key) if mod is not None else key
    return key


def _tuple(key):
    return key if isinstance(key, tuple) else (key,)


def _ids(keys):
    return [repr(k).replace("\n", "")[:60] for k in keys]


@pytest.mark.parametrize("key", BASIC_KEYS + ADVANCED_KEYS + MASK_KEYS, ids=_ids(BASIC_KEYS + ADVANCED_KEYS + MASK_KEYS))
def test_getitem_vs_numpy(key):
    key = _tuple(key)
    expect = A[tuple(np.asarray(k) if isinstance(k, list) else k for k in key)]
    got = kiln.tensor(A)[_conv(key, kiln)]
    assert_same(got, np.asarray(expect))
    # lists and numpy arrays work as keys directly too
    assert_same(kiln.tensor(A)[key], np.asarray(expect))


@pytest.mark.parametrize("key", BASIC_KEYS + ADVANCED_KEYS + MASK_KEYS + TORCH_ONLY_KEYS,
                         ids=_ids(BASIC_KEYS + ADVANCED_KEYS + MASK_KEYS + TORCH_ONLY_KEYS))
def test_getitem_vs_torch(key):
    torch = pytest.importorskip("torch")
    key = _tuple(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expect = torch.from_numpy(A.copy())[_conv(key, torch)]
    assert_same(kiln.tensor(A)[_conv(key, kiln)], expect)


def test_int_and_index_tensor_mix_follows_torch_not_numpy():
    # x[0, :, idx1, idx2]: torch keeps the index dims in place (the int is basic indexing);
    # numpy moves them to the front. kiln follows PyTorch.
    got = kiln.tensor(A)[0, :, kiln.tensor([1, 2]), kiln.tensor([0, 4])]
    assert got.shape == (3, 2)
    assert_same(got, A[0][:, [1, 2], [0, 4]])


def test_bool_scalar_keys():
    x = kiln.tensor(A)
    assert x[True].shape == (1, 2, 3, 4, 5)
    assert x[False].shape == (0, 2, 3, 4, 5)
    assert x[None, True].shape == (1, 1, 2, 3, 4, 5)
    assert x[kiln.tensor(True)].shape == (1, 2, 3, 4, 5)
    assert_same(x[0, True, 1], A[0, None, 1])


def test_basic_slicing_returns_views():
    x = kiln.tensor(A)
    v = x[1, :, ::2]
    assert v._base is x or v._base is x._base
    v.fill_(-1)
    assert (x.numpy()[1, :, ::2] == -1).all() and (x.numpy()[0] != -1).all()


def test_empty_and_zero_dim_keys():
    x = kiln.ones(3, 2)
    assert x[[]].shape == (0, 2)
    assert x[kiln.tensor([], dtype=kiln.int64)].shape == (0, 2)
    y = kiln.ones(3)
    y[[]] = 5.0
    assert y.tolist() == [1.0, 1.0, 1.0]
    s = kiln.tensor(3.0)
    assert s[()].shape == () and s[None].shape == (1,) and s[...].shape == () and s[None, ..., None].shape == (1, 1)
    assert s[kiln.tensor(True)].shape == (1,)
    s[...] = 5.0
    assert s.item() == 5.0
    with pytest.raises(IndexError, match="too many indices for tensor of dimension 0"):
        s[0]
    z = kiln.ones(0, 2)
    assert z[:, 1].shape == (0,) and z[z > 0].shape == (0,)


def test_index_dtypes():
    x = kiln.tensor(A)
    assert_same(x[kiln.tensor([0, 1], dtype=kiln.int32)], A[[0, 1]])
    assert_same(x[:, kiln.tensor([True, False, True])], A[:, [True, False, True]])
    assert_same(x[kiln.tensor(1)], A[1])  # 0-d integer tensor acts like an int
    assert_same(x[np.int64(1), np.int32(2)], A[1, 2])
    assert_same(x[np.array([1, 0], dtype=np.uint8)], A[[1, 0]])  # numpy integer arrays of any width
    assert_same(x[:, np.array([2], dtype=np.int16)], A[:, [2]])
    with pytest.raises(IndexError, match="arrays used as indices must be of integer or boolean type, got float64"):
        x[np.array([0.5])]
    with pytest.raises(IndexError, match="tensors used as indices must be long, int or bool tensors"):
        x[[0.5]]


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_getitem_keeps_dtype(dtype):
    a = random_array((3, 4), dtype, np.random.default_rng(0))
    x = kiln.tensor(a)
    assert_same(x[1:, ::2], a[1:, ::2])
    assert_same(x[[2, 0]], a[[2, 0]])
    assert_same(x[a.astype(bool) if dtype == "bool" else a > 0], a[a.astype(bool) if dtype == "bool" else a > 0])


def test_getitem_errors():
    x = kiln.ones(2, 3)
    with pytest.raises(IndexError, match="index 2 is out of bounds for dimension 0 with size 2"):
        x[2]
    with pytest.raises(IndexError, match="index -4 is out of bounds for dimension 1 with size 3"):
        x[:, -4]
    with pytest.raises(IndexError, match="too many indices for tensor of dimension 2"):
        x[0, 0, 0]
    with pytest.raises(IndexError, match="index 2 is out of bounds for dimension 0 with size 2"):
        x[kiln.tensor([0, 2])]
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 1 with size 3"):
        x[:, [0, 3]]
    with pytest.raises(IndexError, match="index -3 is out of bounds"):
        x[[-3]]
    with pytest.raises(IndexError, match="tensors used as indices must be long, int or bool tensors"):
        x[kiln.tensor([0.0])]
    with pytest.raises(IndexError, match=r"only integers, slices .* are valid indices \(got float\)"):
        x[1.0]
    with pytest.raises(IndexError, match=r"valid indices \(got str\)"):
        x["a"]
    with pytest.raises(IndexError, match=r"The shape of the mask \[3\] at index 0 does not match"):
        x[kiln.tensor([True, False, True])]
    with pytest.raises(IndexError, match="an index can only have a single ellipsis"):
        x[..., 0, ...]
    with pytest.raises(ValueError, match="step must be greater than zero"):
        x[::-1]
    with pytest.raises(ValueError, match="slice step cannot be zero"):
        x[::0]
    with pytest.raises(IndexError, match=r"indexing tensors could not be broadcast together with shapes \[2\], \[3\]"):
        kiln.ones(4, 5)[kiln.tensor([0, 1]), kiln.tensor([0, 1, 2])]


# ---------------------------------------------------------------------------------- __setitem__
SET_KEYS = [
    0, -1, (1, 2), (slice(None), 1), (Ellipsis, 0), (None, 0), (slice(1, None, 2),), (slice(None, None, 3), slice(1, 3)),
    (0, Ellipsis, None, 1), (slice(-2, None), -1, slice(None, None, 2)), (Ellipsis,), (1, 2, 3, 4),
    I(0, 1), (I(0, 1), I(2, 0)), (slice(None), I(0, 2)), (slice(None), I(0, 2), I(1, 3)),
    (I(0, 1), slice(None), I(1, 3)), (slice(None), I(0, 2), slice(None), I(1, 3)), (I([[0], [1]]), I([0, 1, 2])),
    (Ellipsis, I(0, -1)), ([0, 1],), (slice(None), [0, 2]), (A.sum((2, 3)) > 200,), (slice(None), A[0, :, :, 0] > 20),
    (A[..., 0] > 50,), (Ellipsis, A[0, 0, 0] > 2), (A > 60,), (slice(5, 10),),
]


def _values(shape, rng):
    vals = [7.0, -1, True, np.array(3.5, dtype=np.float32)]
    if len(shape) >= 1:
        vals.append(rng.standard_normal(shape[-1:]).astype(np.float32))          # broadcast over leading dims
        vals.append(rng.standard_normal((1,) + shape).astype(np.float32))        # extra leading 1 (dropped)
    if len(shape) >= 2:
        vals.append(rng.standard_normal((shape[0], 1) + shape[2:]).astype(np.float32))
    vals.append(rng.standard_normal(shape).astype(np.float64))                   # cast to the target dtype
    vals.append(rng.integers(0, 5, shape))
    return vals


@pytest.mark.parametrize("key", SET_KEYS, ids=_ids(SET_KEYS))
def test_setitem_vs_numpy(key):
    key = _tuple(key)
    npkey = tuple(np.asarray(k) if isinstance(k, list) else k for k in key)
    shape = A[npkey].shape
    for v in _values(shape, np.random.default_rng(1)):
        expect = A.copy()
        vv = np.asarray(v)
        if vv.ndim > len(shape):
            vv = vv.reshape(vv.shape[vv.ndim - len(shape):])
        expect[npkey] = vv
        x = kiln.tensor(A)
        version = x._vc[0]
        x[_conv(key, kiln)] = kiln.tensor(v) if isinstance(v, np.ndarray) else v
        assert_same(x, expect)
        assert x._vc[0] == version + 1


SET_TORCH_ONLY = [(0, I(0, 2)), (0, A[0, :, 0, 0] > 10, 1), (True,), (0, slice(None), [1, 2], [0, 4]),
                  (1, [2, 0]), (False, 0), (0, [True, False, True]), (slice(None), 1, [[0], [3]], [1, 2])]


@pytest.mark.parametrize("key", SET_KEYS + SET_TORCH_ONLY, ids=_ids(SET_KEYS + SET_TORCH_ONLY))
def test_setitem_vs_torch(key):
    torch = pytest.importorskip("torch")
    key = _tuple(key)
    shape = tuple(torch.from_numpy(A.copy())[_conv(key, torch)].shape)
    for v in _values(shape, np.random.default_rng(2)):
        t = torch.from_numpy(A.copy())
        tv = torch.from_numpy(np.asarray(v)).to(torch.float32) if isinstance(v, np.ndarray) else v
        t[_conv(key, torch)] = tv
        x = kiln.tensor(A)
        x[_conv(key, kiln)] = kiln.tensor(v) if isinstance(v, np.ndarray) else v
        assert_same(x, t)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_setitem_other_dtypes(dtype):
    a = random_array((3, 4), dtype, np.random.default_rng(3))
    x = kiln.tensor(a)
    x[1] = 1
    x[:, 0] = kiln.tensor([0, 1, 0])
    x[x == 0] = 1  # mask built from the tensor itself
    e = a.copy()
    e[1] = 1
    e[:, 0] = np.array([0, 1, 0]).astype(dtype)
    e[e == 0] = 1
    assert_same(x, e)


def test_setitem_writes_through_views_and_from_numpy():
    base = np.zeros((3, 4), dtype=np.float32)
    x = kiln.from_numpy(base)
    row = x[1]
    row[2] = 5.0
    x[0, ::2] = kiln.tensor([1.0, 2.0])
    assert base[1, 2] == 5.0 and base[0, 0] == 1.0 and base[0, 2] == 2.0


def test_setitem_errors():
    x = kiln.ones(2, 3)
    with pytest.raises(RuntimeError, match=r"value tensor of shape \[2\] cannot be broadcast to indexing result of "
                                           r"shape \[3\]"):
        x[0] = kiln.ones(2)
    with pytest.raises(RuntimeError, match=r"value tensor of shape \[3\] cannot be broadcast to indexing result of "
                                           r"shape \[2\]"):
        x[:, 0] = kiln.ones(3)
    with pytest.raises(IndexError, match="index 5 is out of bounds"):
        x[0, 5] = 1.0
    with pytest.raises(IndexError, match="index 2 is out of bounds for dimension 0"):
        x[kiln.tensor([2])] = 1.0
    with pytest.raises(TypeError, match="can't assign a list to a kiln tensor"):
        x[0] = [1.0, 2.0, 3.0]
    with pytest.raises(TypeError, match="can't assign a ndarray to a kiln tensor"):
        x[0] = np.ones(3)
    w = kiln.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad is being used in an in-place operation"):
        w[0] = 2.0
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor refers to a single memory"):
        kiln.ones(3).expand(2, 3)[0] = 2.0


# ---------------------------------------------------------------------------------- gather / scatter / index_select
def _np_gather(a, dim, idx):
    return np.take_along_axis(a[tuple(slice(0, s) if d != dim else slice(None) for d, s in enumerate(idx.shape))],
                              idx, axis=dim)


def _np_scatter(a, dim, idx, src, add=False):
    out = a.copy()
    for pos in np.ndindex(*idx.shape):
        tgt = list(pos)
        tgt[dim] = idx[pos]
        if add:
            out[tuple(tgt)] += src[pos]
        else:
            out[tuple(tgt)] = src[pos]
    return out


@pytest.mark.parametrize("dim", [0, 1, -1, -2])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32"])
def test_gather_vs_numpy(dim, dtype):
    rng = np.random.default_rng(4)
    a = random_array((4, 5), dtype, rng)
    idx = rng.integers(0, a.shape[dim], size=(3, 2))
    assert_same(kiln.gather(kiln.tensor(a), dim, kiln.tensor(idx)), _np_gather(a, dim % 2, idx))
    assert_same(kiln.tensor(a).gather(dim, kiln.tensor(idx)), _np_gather(a, dim % 2, idx))
    assert_same(kiln.take_along_dim(kiln.tensor(a), kiln.tensor(idx[:, :1]), dim),
                _np_gather(a, dim % 2, idx[:, :1]))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_scatter_scatter_add_vs_numpy(dim):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((4, 5))
    d = dim % 2
    # scatter: distinct targets per slice so the result does not depend on write order
    idx = np.stack([rng.permutation(a.shape[d])[:3] for _ in range(2)], axis=1 - d) if d == 0 else \
        np.stack([rng.permutation(a.shape[d])[:3] for _ in range(2)], axis=0)
    src = rng.standard_normal(idx.shape)
    assert_same(kiln.scatter(kiln.tensor(a), dim, kiln.tensor(idx), kiln.tensor(src)), _np_scatter(a, d, idx, src))
    assert_same(kiln.tensor(a).scatter(dim, kiln.tensor(idx), 2.5),
                _np_scatter(a, d, idx, np.full(idx.shape, 2.5)))
    dup = rng.integers(0, a.shape[d], size=(3, 4) if d == 0 else (4, 3))
    src2 = rng.standard_normal(dup.shape)
    assert_same(kiln.scatter_add(kiln.tensor(a), dim, kiln.tensor(dup), kiln.tensor(src2)),
                _np_scatter(a, d, dup, src2, add=True))
    # src larger than index: only the index-shaped corner is used (torch semantics)
    big = rng.standard_normal((5, 6))
    assert_same(kiln.tensor(a).scatter_add(dim, kiln.tensor(dup), kiln.tensor(big)),
                _np_scatter(a, d, dup, big[:dup.shape[0], :dup.shape[1]], add=True))
    # in-place forms
    y = kiln.tensor(a)
    y.scatter_add_(dim, kiln.tensor(dup), kiln.tensor(src2))
    assert_same(y, _np_scatter(a, d, dup, src2, add=True))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_index_select_vs_numpy(dim):
    rng = np.random.default_rng(6)
    a = rng.standard_normal((3, 4, 5)).astype(np.float32)
    idx = rng.integers(0, a.shape[dim], size=7)
    assert_same(kiln.index_select(kiln.tensor(a), dim, kiln.tensor(idx)), np.take(a, idx, axis=dim))
    assert_same(kiln.tensor(a).index_select(dim, kiln.tensor(idx[:1].reshape(()))),
                np.take(a, idx[:1], axis=dim))
    assert_same(kiln.index_select(kiln.tensor(a), dim, kiln.tensor(idx, dtype=kiln.int32)), np.take(a, idx, axis=dim))


def test_gather_scatter_index_select_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    for dtype in ("float32", "float64", "int64"):
        a = random_array((4, 5, 3), dtype, rng)
        for dim in (0, 1, 2, -1):
            idx = rng.integers(0, a.shape[dim], size=(3, 2, 2))
            src = random_array(idx.shape, dtype, rng)
            ta, ti, ts = torch.from_numpy(a), torch.from_numpy(idx), torch.from_numpy(src)
            ka, ki, ks = kiln.tensor(a), kiln.tensor(idx), kiln.tensor(src)
            assert_same(kiln.gather(ka, dim, ki), torch.gather(ta, dim, ti))
            assert_same(kiln.scatter_add(ka, dim, ki, ks), torch.scatter_add(ta, dim, ti, ts))
            v = rng.integers(0, a.shape[dim], size=6)
            assert_same(kiln.index_select(ka, dim, kiln.tensor(v)), torch.index_select(ta, dim, torch.from_numpy(v)))
            uniq = np.argsort(rng.random(a.shape), axis=dim).take(range(2), axis=dim)  # distinct along dim
            tu = torch.from_numpy(np.ascontiguousarray(uniq))
            su = random_array(uniq.shape, dtype, rng)
            assert_same(kiln.scatter(ka, dim, kiln.tensor(uniq), kiln.tensor(su)),
                        torch.scatter(ta, dim, tu, torch.from_numpy(su)))


def test_gather_zero_dim():
    assert_same(kiln.gather(kiln.tensor(2.5), 0, kiln.tensor(0)), np.array(2.5, dtype=np.float32))


def test_gather_scatter_errors():
    x = kiln.ones(2, 3)
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 1 with size 3"):
        kiln.gather(x, 1, kiln.tensor([[0, 3]]))
    with pytest.raises(RuntimeError, match="gather\\(\\): Expected dtype int64 for index, got float32"):
        kiln.gather(x, 1, kiln.tensor([[0.0, 1.0]]))
    with pytest.raises(RuntimeError, match="gather: index has 1 dims, input has 2"):
        kiln.gather(x, 1, kiln.tensor([0, 1]))
    with pytest.raises(IndexError, match="Dimension out of range"):
        kiln.gather(x, 2, kiln.tensor([[0, 1]]))
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 1 with size 3"):
        kiln.index_select(x, 1, kiln.tensor([0, 5]))
    with pytest.raises(IndexError, match="index_select\\(\\): Index is supposed to be a vector"):
        kiln.index_select(x, 1, kiln.tensor([[0]]))
    with pytest.raises(IndexError, match="scatter: index 3 is out of bounds for dimension 1 with size 3"):
        x.scatter(1, kiln.tensor([[0, 3]]), kiln.ones(1, 2))
    with pytest.raises(IndexError, match="scatter_add: index -1 is out of bounds"):
        x.scatter_add(1, kiln.tensor([[0, -1]]), kiln.ones(1, 2))
    with pytest.raises(RuntimeError, match=r"Expected index \(1, 3\) to be smaller than src \(1, 2\)"):
        x.scatter(1, kiln.tensor([[0, 1, 2]]), kiln.ones(1, 2))


# ---------------------------------------------------------------------------------- gradients through indexing
@pytest.mark.parametrize("key", BASIC_KEYS + ADVANCED_KEYS + MASK_KEYS, ids=_ids(BASIC_KEYS + ADVANCED_KEYS + MASK_KEYS))
def test_getitem_gradient_numpy(key):
    """d/dx sum(x[key] * c) scatters c back, adding where an element is picked repeatedly (np.add.at)."""
    key = _tuple(key)
    npkey = tuple(np.asarray(k) if isinstance(k, list) else k for k in key)
    a = A.astype(np.float64)
    x = kiln.tensor(a, requires_grad=True)
    y = x[_conv(key, kiln)]
    cot = np.random.default_rng(0).standard_normal(tuple(y.shape))
    (y * kiln.tensor(cot)).sum().backward()
    expect = np.zeros_like(a)
    np.add.at(expect, npkey, cot)
    assert_same(x.grad, expect)


@pytest.mark.parametrize("key", BASIC_KEYS + ADVANCED_KEYS + MASK_KEYS + TORCH_ONLY_KEYS,
                         ids=_ids(BASIC_KEYS + ADVANCED_KEYS + MASK_KEYS + TORCH_ONLY_KEYS))
def test_getitem_gradient_vs_torch(key):
    torch = pytest.importorskip("torch")
    key = _tuple(key)
    a = A.astype(np.float64)
    t, k = torch.tensor(a, requires_grad=True), kiln.tensor(a, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ty = t[_conv(key, torch)]
    cot = np.random.default_rng(0).standard_normal(tuple(ty.shape))
    (ty * torch.tensor(cot)).sum().backward()
    (k[_conv(key, kiln)] * kiln.tensor(cot)).sum().backward()
    assert_same(k.grad, t.grad)


@pytest.mark.parametrize("key", SET_KEYS + SET_TORCH_ONLY, ids=_ids(SET_KEYS + SET_TORCH_ONLY))
def test_setitem_gradient_vs_torch(key):
    """x * 2 with y[key] = v * 3: gradients reach x (outside the key) and v (summed over broadcasting)."""
    torch = pytest.importorskip("torch")
    key = _tuple(key)
    a = A.astype(np.float64)
    shape = tuple(torch.from_numpy(a)[_conv(key, torch)].shape)
    vnp = np.random.default_rng(1).standard_normal(shape[-1:] if shape else ())
    cot = np.random.default_rng(2).standard_normal(a.shape)
    grads = []
    for m in (torch, kiln):
        x = m.tensor(a, requires_grad=True)
        v = m.tensor(vnp, requires_grad=True)
        y = x * 2
        y[_conv(key, m)] = v * 3
        (y * m.tensor(cot)).sum().backward()
        grads.append((x.grad, v.grad))
    assert_same(grads[1][0], grads[0][0])
    assert_same(grads[1][1], grads[0][1])
