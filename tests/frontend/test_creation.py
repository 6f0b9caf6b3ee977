"""dtypes, tensor creation, random numbers, conversions and repr."""
from __future__ import annotations

import math

import numpy as np
import pytest

import kiln
from frontend_helpers import DTYPE_NAMES, assert_same, dtype_name


# ---------------------------------------------------------------------------------- dtypes
def test_dtype_objects():
    assert kiln.float32.name == "float32" and kiln.float is kiln.float32
    assert kiln.float64 is kiln.double and kiln.float16 is kiln.half
    assert kiln.int64 is kiln.long and kiln.int32 is kiln.int
    assert kiln.bool.name == "bool"
    assert repr(kiln.float32) == "kiln.float32"
    assert kiln.float32.is_floating_point and not kiln.int64.is_floating_point
    assert isinstance(kiln.float32, kiln.dtype)
    assert [getattr(kiln, n).itemsize for n in DTYPE_NAMES] == [4, 8, 2, 4, 8, 1]
    assert kiln.get_default_dtype() is kiln.float32


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_every_dtype_roundtrips_through_numpy(name):
    d = getattr(kiln, name)
    t = kiln.zeros(2, 3, dtype=d)
    assert t.dtype is d
    assert t.numpy().dtype == np.dtype(name if name != "bool" else np.bool_)
    assert kiln.tensor(t.numpy()).dtype is d
    assert kiln.zeros(2, dtype=name).dtype is d  # dtype by name, as in torch.zeros(..., dtype=...)


@pytest.mark.parametrize("data,expect", [
    (3, "int64"), (3.0, "float32"), (True, "bool"), ([1, 2.0], "float32"), ([True, 2], "int64"),
    ([True, False], "bool"), ([[1, 2], [3, 4]], "int64"), ([], "float32"),
    (np.float64(2.5), "float64"), ([np.float64(2.5), 1.0], "float64"), (np.float32(1), "float32"),
    (np.int32(3), "int32"), (np.array([1.0]), "float64"), (np.array([1], dtype=np.int32), "int32"),
    (np.array([1.0], dtype=np.float16), "float16"), (np.array([True]), "bool"),
])
def test_tensor_dtype_inference(data, expect):
    t = kiln.tensor(data)
    assert t.dtype.name == expect
    assert t.shape == np.asarray(data).shape


def test_tensor_dtype_inference_vs_torch():
    torch = pytest.importorskip("torch")
    cases = [3, 3.5, True, [1, 2], [1, 2.5], [[True], [False]], [True, 1], [1.0, True], np.float64(1.0),
             [np.float64(1.0), 2.0], np.array([1, 2], dtype=np.int32), np.array(2.0), [[1.0, 2.0]], [],
             np.array([1.0, 2.0], dtype=np.float16), [np.int32(1), np.int32(2)]]
    for c in cases:
        assert_same(kiln.tensor(c), torch.tensor(c))
    for tens in ([torch.tensor(1.0, dtype=torch.float64)] * 2, [torch.tensor([1, 2], dtype=torch.int32)] * 3):
        k = kiln.tensor([kiln.tensor(t.numpy()) for t in tens])
        assert_same(k, torch.stack(tens))


def test_tensor_from_tensors_keeps_their_dtype():
    t = kiln.tensor([kiln.tensor(1.0, dtype=kiln.float64), kiln.tensor(2.0, dtype=kiln.float64)])
    assert_same(t, np.array([1.0, 2.0]))
    assert kiln.tensor([kiln.tensor([1, 2], dtype=kiln.int32)]).dtype is kiln.int32


def test_zero_dim_tensor_keeps_rank():
    assert kiln.tensor(3.0).shape == () and kiln.tensor(3.0).dim() == 0
    assert kiln.tensor(np.array(2)).shape == ()
    assert kiln.tensor(np.float32(2)).shape == ()
    assert kiln.as_tensor(2.5).shape == ()


def test_tensor_with_float64_dtype_keeps_python_float_precision():
    assert kiln.tensor([0.1], dtype=kiln.float64).item() == 0.1
    assert kiln.tensor(1 / 3, dtype=kiln.float64).item() == 1 / 3
    assert kiln.tensor([[0.1, 0.2]], dtype="float64").tolist() == [[0.1, 0.2]]
    assert kiln.tensor([2 ** 53 + 1], dtype=kiln.int64).item() == 2 ** 53 + 1


def test_tensor_with_dtype_argument():
    assert_same(kiln.tensor([1.7, -1.2], dtype=kiln.int64), np.array([1, -1]))
    assert_same(kiln.tensor([1, 0, 2], dtype=kiln.bool), np.array([True, False, True]))
    assert_same(kiln.tensor([1, 2], dtype=kiln.float64), np.array([1.0, 2.0]))
    assert_same(kiln.tensor([0.1], dtype=kiln.float16), np.array([0.1], dtype=np.float16))


def test_tensor_copies_its_input():
    a = np.array([1.0, 2.0])
    t = kiln.tensor(a)
    a[0] = 100
    assert t.tolist() == [1.0, 2.0]
    src = kiln.tensor([1.0, 2.0])
    cp = kiln.tensor(src)
    src.add_(1)
    assert cp.tolist() == [1.0, 2.0]


def test_unsupported_numpy_dtypes():
    # Integer dtypes kiln lacks are converted (value preserving), like data PyTorch would widen.
    for npd in (np.uint8, np.int8, np.int16, np.uint16, np.uint32):
        t = kiln.tensor(np.array([1, 2, 255 if npd in (np.uint8, np.uint16, np.uint32) else 7], dtype=npd))
        assert t.dtype is kiln.int64
        assert t.tolist() == [1, 2, 255 if npd in (np.uint8, np.uint16, np.uint32) else 7]
    assert kiln.tensor(np.array([1.5], dtype=np.longdouble)).dtype is kiln.float64
    big_endian = np.array([1.5, -2.0], dtype=">f4")
    assert_same(kiln.tensor(big_endian), np.array([1.5, -2.0], dtype=np.float32))
    assert kiln.as_tensor(big_endian).dtype is kiln.float32
    with pytest.raises(TypeError, match="complex64"):
        kiln.tensor(np.array([1 + 2j], dtype=np.complex64))
    with pytest.raises(TypeError, match="uint64"):
        kiln.tensor(np.array([2 ** 64 - 1], dtype=np.uint64))
    with pytest.raises(TypeError, match="uint8.*shares memory"):
        kiln.from_numpy(np.array([1], dtype=np.uint8))
    with pytest.raises(TypeError, match="unsupported dtype 'complex64'"):
        kiln.zeros(2, dtype="complex64")
    with pytest.raises(TypeError, match="unsupported dtype"):
        kiln.ones(2, dtype=np.complex128)
    with pytest.raises(TypeError, match="invalid data type 'str'"):
        kiln.tensor("abc")
    with pytest.raises(ValueError, match="rectangular"):
        kiln.tensor([[1, 2], [3]])
    with pytest.raises(TypeError, match="could not infer a dtype.*dict"):
        kiln.tensor([{}])


# ---------------------------------------------------------------------------------- from_numpy / as_tensor
def test_from_numpy_shares_memory():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = kiln.from_numpy(a)
    assert t.dtype is kiln.float32 and t.shape == (2, 3)
    a[0, 0] = 42
    assert t[0, 0].item() == 42
    t.mul_(2)
    assert a[0, 0] == 84 and a[1, 2] == 10
    assert t.numpy() is a or np.shares_memory(t.numpy(), a)
    with pytest.raises(TypeError, match="expected np.ndarray"):
        kiln.from_numpy([1, 2])
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.warns(UserWarning, match="not writable"):
        r = kiln.from_numpy(ro)
    assert r.tolist() == [1.0, 1.0, 1.0]


def test_as_tensor():
    a = np.array([1.0, 2.0])
    t = kiln.as_tensor(a)
    a[0] = 5
    assert t[0].item() == 5  # shares memory when no conversion is needed
    assert kiln.as_tensor(a, dtype=kiln.float32).dtype is kiln.float32
    x = kiln.ones(2)
    assert kiln.as_tensor(x) is x
    assert kiln.as_tensor(x, dtype=kiln.float64).dtype is kiln.float64
    assert kiln.as_tensor([1, 2]).dtype is kiln.int64


# ---------------------------------------------------------------------------------- factories
@pytest.mark.parametrize("fn,val", [("zeros", 0), ("ones", 1), ("empty", None)])
def test_zeros_ones_empty(fn, val):
    f = getattr(kiln, fn)
    for args in [(2, 3), ((2, 3),), ([2, 3],)]:
        t = f(*args)
        assert t.shape == (2, 3) and t.dtype is kiln.float32
        if val is not None:
            assert_same(t, np.full((2, 3), val, dtype=np.float32))
    assert f(()).shape == () and f(0).shape == (0,)
    assert f(2, dtype=kiln.int32).dtype is kiln.int32
    t = f(2, requires_grad=True)
    assert t.requires_grad and t.is_leaf
    with pytest.raises(RuntimeError, match="negative dimension -1"):
        f(2, -1)
    with pytest.raises(TypeError, match="shape entries must be ints"):
        f(2.5)


def test_full():
    assert_same(kiln.full((2, 2), 3), np.full((2, 2), 3, dtype=np.int64))
    assert_same(kiln.full((2,), 1.5), np.full((2,), 1.5, dtype=np.float32))
    assert_same(kiln.full((2,), True), np.array([True, True]))
    assert_same(kiln.full((2,), 7, dtype=kiln.float64), np.full((2,), 7.0))
    assert_same(kiln.full([3], -1.0), np.full((3,), -1.0, dtype=np.float32))


def test_like_functions():
    x = kiln.tensor([[1, 2, 3]], dtype=kiln.int32)
    assert_same(kiln.zeros_like(x), np.zeros((1, 3), dtype=np.int32))
    assert_same(kiln.ones_like(x), np.ones((1, 3), dtype=np.int32))
    assert_same(kiln.ones_like(x, dtype=kiln.float64), np.ones((1, 3)))
    assert_same(kiln.full_like(x, 2.7), np.full((1, 3), 2, dtype=np.int32))
    assert kiln.empty_like(x).shape == (1, 3) and kiln.empty_like(x).dtype is kiln.int32
    f = kiln.ones(2, 3, dtype=kiln.float64)
    r = kiln.rand_like(f)
    assert r.shape == (2, 3) and r.dtype is kiln.float64
    assert kiln.randn_like(f).dtype is kiln.float64
    ri = kiln.randint_like(f, 5)
    assert ri.dtype is kiln.float64 and ri.shape == (2, 3)
    assert ((ri.numpy() >= 0) & (ri.numpy() < 5)).all() and (ri.numpy() == np.floor(ri.numpy())).all()
    with pytest.raises(RuntimeError, match="floating-point dtype"):
        kiln.randn_like(x)


@pytest.mark.parametrize("args,kw", [((5,), {}), ((2, 7), {}), ((0, 1, 0.1), {}), ((1, 2.5, 0.5), {}),
                                     ((5, 0, -1.5), {}), ((10,), dict(dtype="float32")), ((-3, 3), {}),
                                     ((0, 10, 3), {}), ((1.0, 4), {}), ((0,), {})])
def test_arange_vs_numpy(args, kw):
    t = kiln.arange(*args, **kw)
    ints = all(isinstance(a, int) for a in args) and "dtype" not in kw
    expect = np.arange(*args).astype(np.int64 if ints else np.float32)
    assert_same(t, expect)


def test_arange_vs_torch():
    torch = pytest.importorskip("torch")
    for args in [(5,), (2, 7), (0, 1, 0.1), (1, 2.5, 0.5), (5, 0, -1.5), (-3, 3), (0, 10, 3), (0.5, 3)]:
        assert_same(kiln.arange(*args), torch.arange(*args))
    assert_same(kiln.arange(0, 1, 0.1, dtype=kiln.float64), torch.arange(0, 1, 0.1, dtype=torch.float64))
    assert_same(kiln.arange(kiln.tensor(3)), torch.arange(torch.tensor(3)))  # 0-d int tensors count as ints
    assert_same(kiln.arange(kiln.tensor(0.5), 3), torch.arange(torch.tensor(0.5), 3))
    with pytest.raises(RuntimeError, match="upper bound and lower bound inconsistent with step sign"):
        kiln.arange(0, 5, -1)
    with pytest.raises(RuntimeError, match="step must be nonzero"):
        kiln.arange(0, 5, 0)


def test_linspace():
    assert_same(kiln.linspace(0, 1, 5), np.linspace(0, 1, 5).astype(np.float32))
    assert_same(kiln.linspace(-2, 3, 7, dtype=kiln.float64), np.linspace(-2, 3, 7))
    assert_same(kiln.linspace(2, 3, 1), np.array([2.0], dtype=np.float32))
    assert kiln.linspace(2, 3, 0).shape == (0,)
    end = kiln.linspace(0, 0.3, 4, dtype=kiln.float64)
    assert end[-1].item() == 0.3  # the end point is exact


def test_linspace_vs_torch():
    torch = pytest.importorskip("torch")
    for a, b, n in [(0, 1, 5), (-1, 1, 11), (3, -3, 4), (0, 10, 5)]:
        assert_same(kiln.linspace(a, b, n), torch.linspace(a, b, n))
        assert_same(kiln.linspace(a, b, n, dtype=kiln.float64), torch.linspace(a, b, n, dtype=torch.float64))
    assert_same(kiln.linspace(0, 10, 5, dtype=kiln.int64), torch.linspace(0, 10, 5, dtype=torch.int64))


def test_eye():
    assert_same(kiln.eye(3), np.eye(3, dtype=np.float32))
    assert_same(kiln.eye(2, 4), np.eye(2, 4, dtype=np.float32))
    assert_same(kiln.eye(3, dtype=kiln.int64), np.eye(3, dtype=np.int64))
    assert_same(kiln.eye(2, dtype=kiln.bool), np.eye(2, dtype=bool))


# ---------------------------------------------------------------------------------- random
def test_manual_seed_reproducible():
    kiln.manual_seed(123)
    a = (kiln.rand(5), kiln.randn(2, 3), kiln.randint(0, 10, (4,)))
    kiln.manual_seed(123)
    b = (kiln.rand(5), kiln.randn(2, 3), kiln.randint(0, 10, (4,)))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    kiln.manual_seed(124)
    assert not np.array_equal(kiln.rand(5).numpy(), a[0].numpy())
    # successive draws differ
    assert not np.array_equal(kiln.rand(5).numpy(), kiln.rand(5).numpy())


def test_generator_object():
    g1 = kiln.Generator().manual_seed(7)
    g2 = kiln.Generator().manual_seed(7)
    np.testing.assert_array_equal(kiln.rand(4, generator=g1).numpy(), kiln.rand(4, generator=g2).numpy())
    assert g1.initial_seed() == 7


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_rand_statistics(dtype):
    kiln.manual_seed(0)
    u = kiln.rand(100_000, dtype=getattr(kiln, dtype))
    assert u.dtype.name == dtype and u.shape == (100_000,)
    a = u.numpy().astype(np.float64)
    assert a.min() >= 0.0 and a.max() < 1.0 or (dtype == "float16" and a.max() <= 1.0)
    assert abs(a.mean() - 0.5) < 0.005
    assert abs(a.std() - math.sqrt(1 / 12)) < 0.005
    hist = np.histogram(a, bins=10, range=(0, 1))[0] / a.size
    assert np.all(np.abs(hist - 0.1) < 0.01)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_randn_statistics(dtype):
    kiln.manual_seed(1)
    z = kiln.randn(100_000, dtype=getattr(kiln, dtype))
    assert z.dtype.name == dtype
    a = z.numpy().astype(np.float64)
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02
    assert abs(np.mean(np.abs(a) < 1) - 0.6827) < 0.01  # 1-sigma mass
    assert abs(np.mean(a ** 3)) < 0.05  # symmetric
    assert np.isfinite(a).all()


def test_randint_statistics_and_range():
    kiln.manual_seed(2)
    r = kiln.randint(-3, 7, (100_000,))
    assert r.dtype is kiln.int64
    a = r.numpy()
    assert a.min() == -3 and a.max() == 6
    counts = np.bincount(a + 3, minlength=10) / a.size
    assert np.all(np.abs(counts - 0.1) < 0.01)
    assert kiln.randint(5, (2, 3)).shape == (2, 3)
    assert kiln.randint(0, 5, (3,), dtype=kiln.int32).dtype is kiln.int32
    assert ((kiln.randint(1, 2, (50,)).numpy()) == 1).all()
    with pytest.raises(RuntimeError, match="from=5 >= to=5"):
        kiln.randint(5, 5, (2,))


def test_random_sizes():
    assert kiln.rand(2, 3).shape == (2, 3) and kiln.rand((2, 3)).shape == (2, 3)
    assert kiln.randn([4]).shape == (4,) and kiln.randn(()).shape == ()
    assert kiln.rand(2, requires_grad=True).requires_grad
    with pytest.raises(RuntimeError, match="floating-point dtype.*int64"):
        kiln.randn(2, dtype=kiln.int64)


# ---------------------------------------------------------------------------------- conversions
def test_numpy_item_tolist_array():
    x = kiln.tensor([[1.5, 2.0]])
    a = x.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert x.tolist() == [[1.5, 2.0]]
    assert kiln.tensor(2).tolist() == 2
    assert kiln.tensor([2.5]).item() == 2.5 and isinstance(kiln.tensor([2.5]).item(), float)
    assert isinstance(kiln.tensor(3).item(), int) and isinstance(kiln.tensor(True).item(), bool)
    assert np.asarray(x).dtype == np.float32
    assert np.asarray(x, dtype=np.float64).dtype == np.float64
    assert np.array(kiln.tensor([1, 2])).tolist() == [1, 2]
    assert (np.add(x, 1) == np.array([[2.5, 3.0]])).all()  # __array__ lets numpy consume tensors
    with pytest.raises(RuntimeError, match="a Tensor with 2 elements cannot be converted to Scalar"):
        x.item()
    y = kiln.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="Can't call numpy\\(\\) on Tensor that requires grad"):
        y.numpy()
    assert y.detach().numpy().tolist() == [1.0, 1.0]
    assert float(kiln.tensor([2.5])) == 2.5 and int(kiln.tensor(3.9)) == 3 and bool(kiln.tensor([1]))
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(kiln.ones(2))


def test_shape_size_dim_device():
    x = kiln.zeros(2, 3, 4)
    assert x.shape == (2, 3, 4) and isinstance(x.shape, tuple) and isinstance(x.shape, kiln.Size)
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.size(-1) == 4
    assert x.dim() == 3 and x.ndim == 3 and x.numel() == 24 and len(x) == 2
    assert repr(x.shape) == "kiln.Size([2, 3, 4])" and x.shape.numel() == 24
    assert x.itemsize == 4 and x.nbytes == 96 and x.element_size() == 4
    assert kiln.ones(3, dtype=kiln.float64).nbytes == 24 and kiln.ones(3, dtype=kiln.bool).itemsize == 1
    assert x.device == kiln.device("cpu") and str(x.device) == "cpu" and x.device.type == "cpu"
    assert x.device == "cpu"
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-3, 2\], but got 3\)"):
        x.size(3)
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(kiln.tensor(1.0))


def test_to_and_casts():
    x = kiln.tensor([1.7, -1.7, 0.0])
    assert x.to(kiln.float64).dtype is kiln.float64
    assert x.to("cpu") is x and x.to(kiln.float32) is x
    assert x.to("cpu", kiln.float64).dtype is kiln.float64
    assert x.to(device="cpu", dtype=kiln.int32).dtype is kiln.int32
    assert x.to(kiln.tensor([1])).dtype is kiln.int64
    assert x.to(kiln.float32, copy=True) is not x
    assert_same(x.long(), np.array([1, -1, 0]))  # truncation toward zero, like torch
    assert_same(x.int(), np.array([1, -1, 0], dtype=np.int32))
    assert_same(x.bool(), np.array([True, True, False]))
    assert_same(x.double(), np.array([1.7, -1.7, 0.0], dtype=np.float32).astype(np.float64))
    assert_same(x.half(), np.array([1.7, -1.7, 0.0], dtype=np.float16))
    assert_same(kiln.tensor([1, 2]).float(), np.array([1.0, 2.0], dtype=np.float32))
    assert_same(kiln.tensor([True, False]).float(), np.array([1.0, 0.0], dtype=np.float32))
    assert x.type() == "kiln.FloatTensor"
    with pytest.raises(RuntimeError, match="cuda"):
        x.to("cuda")
    with pytest.raises(RuntimeError, match="Expected one of cpu, cuda device type"):
        x.to(device="tpu")


def test_casts_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(20) * 5).astype(np.float32)
    a[:3] = [0.0, -0.5, 0.5]
    for src in DTYPE_NAMES:
        arr = a.astype(src) if src != "bool" else a > 0
        for dst in DTYPE_NAMES:
            assert_same(kiln.tensor(arr).to(getattr(kiln, dst)), torch.from_numpy(arr).to(getattr(torch, dst)))


# ---------------------------------------------------------------------------------- repr
@pytest.mark.parametrize("make,text", [
    (lambda: kiln.tensor([1.0, 2.0]), "tensor([1., 2.])"),
    (lambda: kiln.tensor([1.5, 2.25]), "tensor([1.5000, 2.2500])"),
    (lambda: kiln.tensor([1, 2]), "tensor([1, 2])"),
    (lambda: kiln.tensor([True, False]), "tensor([ True, False])"),
    (lambda: kiln.tensor(3.0), "tensor(3.)"),
    (lambda: kiln.tensor(3), "tensor(3)"),
    (lambda: kiln.tensor([1.0, 2.0], dtype=kiln.float64), "tensor([1., 2.], dtype=kiln.float64)"),
    (lambda: kiln.tensor([1, 2], dtype=kiln.int32), "tensor([1, 2], dtype=kiln.int32)"),
    (lambda: kiln.tensor([1.0, 2.0], dtype=kiln.float16), "tensor([1., 2.], dtype=kiln.float16)"),
    (lambda: kiln.tensor([1.0, 2.0], requires_grad=True), "tensor([1., 2.], requires_grad=True)"),
    (lambda: kiln.tensor([1.0, 2.0], requires_grad=True) * 2, "tensor([2., 4.], grad_fn=<MulBackward0>)"),
    (lambda: kiln.tensor([[1.0, 2.0], [3.0, 4.0]]), "tensor([[1., 2.],\n        [3., 4.]])"),
    (lambda: kiln.zeros(0), "tensor([])"),
    (lambda: kiln.zeros(2, 0), "tensor([], size=(2, 0))"),
    (lambda: kiln.tensor([-1.0, 2.0]), "tensor([-1.,  2.])"),
    (lambda: kiln.tensor(3.5, dtype=kiln.float64), "tensor(3.5000, dtype=kiln.float64)"),
    (lambda: kiln.tensor([0.1, 0.2], dtype=kiln.float64, requires_grad=True),
     "tensor([0.1000, 0.2000], dtype=kiln.float64, requires_grad=True)"),
    (lambda: kiln.tensor([1e-5, 1.0]), "tensor([1.0000e-05, 1.0000e+00])"),
])
def test_repr(make, text):
    assert repr(make()) == text
    assert str(make()) == text


def test_repr_matches_torch():
    torch = pytest.importorskip("torch")
    for data, kw in [([1.0, 2.0], {}), ([1.5, -2.25], {}), ([[1, 2], [3, 4]], {}), ([True, False], {}),
                     (2.0, {}), ([0.1, 0.2], dict(dtype="float64")), ([1, 2], dict(dtype="int32"))]:
        k = kiln.tensor(data, **{n: getattr(kiln, v) for n, v in kw.items()})
        t = torch.tensor(data, **{n: getattr(torch, v) for n, v in kw.items()})
        assert repr(k) == repr(t).replace("torch.", "kiln.")


def test_repr_grad_fn_names_the_op():
    x = kiln.ones(2, requires_grad=True)
    assert "grad_fn=<" in repr(x.sum()) and repr(x.sum()).endswith("Backward0>)")
    assert repr(x + 1) == "tensor([2., 2.], grad_fn=<AddBackward0>)"


def test_repr_scientific_like_torch():
    assert repr(kiln.tensor([1e10, 1.0])) == "tensor([1.0000e+10, 1.0000e+00])"


def test_repr_nan_inf_like_torch():
    assert repr(kiln.tensor([float("nan"), float("inf"), 1.0])) == "tensor([nan, inf, 1.])"


def test_repr_all_true_like_torch():
    assert repr(kiln.tensor([True])) == "tensor([True])"


def test_dtype_name_helper_agrees():
    # sanity check of the helper the other tests rely on
    assert dtype_name(kiln.ones(1, dtype=kiln.bool)) == "bool"
    assert dtype_name(np.zeros(1, dtype=np.float16)) == "float16"


def test_python_protocols_like_torch():
    t = kiln.tensor([[1, 2], [3, 4]])
    assert 2 in t and 7 not in t and kiln.tensor([1, 2]) in t
    assert f"{kiln.tensor(2.5):.3f}" == "2.500"
    assert f"{kiln.tensor([1.0, 2.0])}" == "tensor([1., 2.])"
    with pytest.raises(TypeError, match="unsupported format string"):
        f"{kiln.tensor([1.0, 2.0]):.2f}"
    assert [v.item() for v in reversed(kiln.tensor([1, 2, 3]))] == [3, 2, 1]
    assert reversed(t).tolist() == [[3, 4], [1, 2]]
    assert [row.tolist() for row in t] == [[1, 2], [3, 4]]
    assert len(t) == 2 and hash(t) == hash(t)
    assert [0, 1, 2][kiln.tensor(1)] == 1  # __index__
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        iter(kiln.tensor(1.0))


def test_inplace_random_initialisers_statistics():
    kiln.manual_seed(3)
    u = kiln.empty(100_000).uniform_(-1, 2).numpy()
    assert u.min() >= -1 and u.max() < 2 and abs(u.mean() - 0.5) < 0.02
    n = kiln.empty(100_000, dtype=kiln.float64).normal_(3, 2)
    assert n.dtype is kiln.float64
    assert abs(n.numpy().mean() - 3) < 0.03 and abs(n.numpy().std() - 2) < 0.03
    b = kiln.empty(100_000).bernoulli_(0.3).numpy()
    assert set(np.unique(b)) == {0.0, 1.0} and abs(b.mean() - 0.3) < 0.01
    p = kiln.bernoulli(kiln.full((100_000,), 0.25))
    assert p.dtype is kiln.float32 and abs(p.mean().item() - 0.25) < 0.01
    assert sorted(kiln.randperm(10).tolist()) == list(range(10))


def test_python_float_type_as_dtype_is_float64():
    assert kiln.zeros(2, dtype=float).dtype is kiln.float64
    assert kiln.ones(2).to(float).dtype is kiln.float64


def test_python_int_and_bool_types_as_dtypes():
    assert kiln.zeros(2, dtype=int).dtype is kiln.int64
    assert kiln.zeros(2, dtype=bool).dtype is kiln.bool


def test_python_floats_keep_full_precision_with_float64_dtype():
    assert kiln.tensor(0.1, dtype=kiln.float64).item() == 0.1
    assert kiln.tensor([[0.1], [0.2]], dtype=kiln.float64).tolist() == [[0.1], [0.2]]
