"""Bad input gives a clear error of PyTorch's type whose message names what is wrong.

(Op-specific error cases also live next to each op's tests; this module covers the issue's
list in one place: wrong shapes, unsupported dtypes, out-of-range dims and indices.)
"""
from __future__ import annotations

import numpy as np
import pytest

import kiln

WRONG_SHAPES = [
    (lambda: kiln.ones(3, 4) + kiln.ones(4, 3), RuntimeError,
     r"The size of tensor a \(4\) must match the size of tensor b \(3\) at non-singleton dimension 1"),
    (lambda: kiln.ones(3, 4) * kiln.ones(4, 3), RuntimeError, r"shapes \(3, 4\) and \(4, 3\) cannot be broadcast"),
    (lambda: kiln.ones(2, 3) - kiln.ones(2), RuntimeError, r"tensor a \(3\) must match the size of tensor b \(2\)"),
    (lambda: kiln.where(kiln.ones(2) > 0, kiln.ones(3), 0.0), RuntimeError, r"must match the size of tensor"),
    (lambda: kiln.maximum(kiln.ones(2, 5), kiln.ones(3, 1, 4)), RuntimeError, r"non-singleton dimension 2"),
    (lambda: kiln.ones(2, 3) @ kiln.ones(4, 5), RuntimeError,
     r"mat1 and mat2 shapes cannot be multiplied \(2x3 and 4x5\)"),
    (lambda: kiln.mm(kiln.ones(2, 3), kiln.ones(2, 3)), RuntimeError, r"cannot be multiplied \(2x3 and 2x3\)"),
    (lambda: kiln.cat([kiln.ones(2, 3), kiln.ones(2, 4)]), RuntimeError,
     "Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for tensor number 1"),
    (lambda: kiln.cat([kiln.ones(2, 3), kiln.ones(3, 3)], 1), RuntimeError,
     "Sizes of tensors must match except in dimension 1. Expected size 2 but got size 3"),
    (lambda: kiln.stack([kiln.ones(2), kiln.ones(3)]), RuntimeError, "stack expects each tensor to be equal size"),
    (lambda: kiln.ones(2, 3).view(4), RuntimeError, r"shape '\[4\]' is invalid for input of size 6"),
    (lambda: kiln.ones(2, 3).expand(3, 3), RuntimeError, r"expanded size of the tensor \(3\) must match"),
    (lambda: kiln.ones(3).copy_(kiln.ones(4)), RuntimeError, r"size of src \[4\] cannot be broadcast to \[3\]"),
    (lambda: kiln.ones(3).add_(kiln.ones(2, 3)), RuntimeError, r"output with shape \[3\] doesn't match the broadcast"),
    (lambda: kiln.ones(2, 3).__setitem__(0, kiln.ones(4)), RuntimeError,
     r"value tensor of shape \[4\] cannot be broadcast to indexing result of shape \[3\]"),
    (lambda: kiln.ones(2).masked_fill(kiln.ones(3) > 0, 0.0), RuntimeError, r"cannot be broadcast"),
]


@pytest.mark.parametrize("fn,exc,msg", WRONG_SHAPES, ids=[m[:40] for _, _, m in WRONG_SHAPES])
def test_wrong_shapes(fn, exc, msg):
    with pytest.raises(exc, match=msg):
        fn()


UNSUPPORTED_DTYPES = [
    (lambda: kiln.zeros(2, dtype="complex64"), "unsupported dtype 'complex64'; kiln supports bool, int32, int64"),
    (lambda: kiln.ones(2, dtype=np.complex128), "unsupported dtype complex128"),
    (lambda: kiln.tensor([1], dtype="int8"), "unsupported dtype 'int8'"),
    (lambda: kiln.ones(2).to("uint8"), "unsupported dtype 'uint8'"),
    (lambda: kiln.tensor(np.array([1 + 1j])), "can't convert numpy data of dtype complex128"),
    (lambda: kiln.from_numpy(np.array([1], dtype=np.uint8)), "can't convert np.ndarray of type uint8"),
    (lambda: kiln.tensor(np.array(["a"])), "can't convert numpy data of dtype <U1"),
    (lambda: kiln.tensor("abc"), "invalid data type 'str'"),
    (lambda: kiln.tensor([1, None]), "could not infer a dtype for element of type NoneType"),
    (lambda: kiln.tensor([1, 2]) & kiln.tensor([1, 0]), "bitwise operators on int64 tensors are not supported"),
    (lambda: kiln.ones(2) + np.ones(2), r"got ndarray \(convert it with kiln.from_numpy"),
    (lambda: kiln.ones(2) * [1, 2], "expected a Tensor or a Python number, got list"),
]


@pytest.mark.parametrize("fn,msg", UNSUPPORTED_DTYPES, ids=[m[:40] for _, m in UNSUPPORTED_DTYPES])
def test_unsupported_dtypes(fn, msg):
    with pytest.raises(TypeError, match=msg):
        fn()


def test_uint8_data_is_converted_not_rejected():
    # decision: kiln.tensor converts integer dtypes it lacks to int64 (values preserved),
    # while from_numpy (which must share memory) rejects them with a TypeError.
    t = kiln.tensor(np.array([0, 255], dtype=np.uint8))
    assert t.dtype is kiln.int64 and t.tolist() == [0, 255]


DTYPE_MISUSE = [
    (lambda: kiln.mean(kiln.tensor([1, 2])), RuntimeError, "mean\\(\\): could not infer output dtype.*int64"),
    (lambda: kiln.ones(2, dtype=kiln.int64).requires_grad_(), RuntimeError,
     "only Tensors of floating point dtype can require gradients"),
    (lambda: kiln.randn(2, dtype=kiln.int32), RuntimeError, "expected a floating-point dtype for random numbers"),
    (lambda: kiln.ones(2, dtype=kiln.bool) - kiln.ones(2, dtype=kiln.bool), RuntimeError,
     "Subtraction, the `-` operator, with two bool tensors is not supported"),
    (lambda: -kiln.ones(2, dtype=kiln.bool), RuntimeError, "Negation, the `-` operator, on a bool tensor"),
    (lambda: kiln.tensor([1, 2]) // 0, RuntimeError, "ZeroDivisionError"),
    (lambda: kiln.tensor([1, 2]) % kiln.tensor([1, 0]), RuntimeError, "ZeroDivisionError"),
    (lambda: kiln.tensor([2]) ** -1, RuntimeError, "Integers to negative integer powers are not allowed"),
    (lambda: kiln.ones(2, dtype=kiln.int64).add_(0.5), RuntimeError,
     "result type float32 can't be cast to the desired output type int64"),
    (lambda: kiln.gather(kiln.ones(2), 0, kiln.tensor([0.0])), RuntimeError, "Expected dtype int64 for index"),
    (lambda: kiln.ones(2)[kiln.tensor([0.5])], IndexError, "tensors used as indices must be long, int or bool"),
    (lambda: kiln.ones(2, 2) @ kiln.ones(2, 2, dtype=kiln.float64), RuntimeError,
     "expected m1 and m2 to have the same dtype, but got: float32 != float64"),
]


@pytest.mark.parametrize("fn,exc,msg", DTYPE_MISUSE, ids=[m[:40] for _, _, m in DTYPE_MISUSE])
def test_dtype_misuse(fn, exc, msg):
    with pytest.raises(exc, match=msg):
        fn()


OUT_OF_RANGE = [
    (lambda: kiln.ones(2, 3).sum(2), IndexError, r"Dimension out of range \(expected to be in range of \[-2, 1\], "
                                                 r"but got 2\)"),
    (lambda: kiln.ones(2, 3).mean(-3), IndexError, r"range of \[-2, 1\], but got -3"),
    (lambda: kiln.ones(2, 3).softmax(5), IndexError, "but got 5"),
    (lambda: kiln.max(kiln.ones(2, 3), 2), IndexError, "but got 2"),
    (lambda: kiln.ones(2, 3).argmax(-3), IndexError, "but got -3"),
    (lambda: kiln.ones(2, 3).transpose(0, 3), IndexError, "but got 3"),
    (lambda: kiln.ones(2, 3).unsqueeze(4), IndexError, r"range of \[-3, 2\], but got 4"),
    (lambda: kiln.ones(2, 3).squeeze(-3), IndexError, "but got -3"),
    (lambda: kiln.ones(2, 3).flatten(0, 5), IndexError, "but got 5"),
    (lambda: kiln.cat([kiln.ones(2)], 1), IndexError, r"range of \[-1, 0\], but got 1"),
    (lambda: kiln.stack([kiln.ones(2)], 3), IndexError, r"range of \[-2, 1\], but got 3"),
    (lambda: kiln.ones(2, 3).split(1, 2), IndexError, "but got 2"),
    (lambda: kiln.ones(2, 3).size(2), IndexError, "but got 2"),
    (lambda: kiln.tensor(1.0).sum(1), IndexError, r"range of \[-1, 0\], but got 1"),
    (lambda: kiln.ones(2, 3).sum((0, 0)), RuntimeError, r"dim \(0, 0\) appears multiple times"),
    (lambda: kiln.ones(2, 3)[2], IndexError, "index 2 is out of bounds for dimension 0 with size 2"),
    (lambda: kiln.ones(2, 3)[0, -4], IndexError, "index -4 is out of bounds for dimension 1 with size 3"),
    (lambda: kiln.ones(2, 3)[0, 0, 0], IndexError, "too many indices for tensor of dimension 2"),
    (lambda: kiln.ones(2, 3)[kiln.tensor([1, 5])], IndexError, "index 5 is out of bounds for dimension 0"),
    (lambda: kiln.ones(2, 3)[:, [0, -9]], IndexError, "index -9 is out of bounds for dimension 1 with size 3"),
    (lambda: kiln.ones(2, 3).__setitem__((1, 3), 0.0), IndexError, "index 3 is out of bounds for dimension 1"),
    (lambda: kiln.index_select(kiln.ones(2, 3), 0, kiln.tensor([2])), IndexError,
     "index 2 is out of bounds for dimension 0 with size 2"),
    (lambda: kiln.gather(kiln.ones(2, 3), 1, kiln.tensor([[3]])), IndexError,
     "index 3 is out of bounds for dimension 1 with size 3"),
    (lambda: kiln.ones(2, 3).scatter_add(0, kiln.tensor([[2]]), kiln.ones(1, 1)), IndexError,
     "index 2 is out of bounds for dimension 0 with size 2"),
    (lambda: kiln.ones(4).narrow(0, 3, 2), RuntimeError, r"start \(3\) \+ length \(2\) exceeds dimension size \(4\)"),
    (lambda: kiln.ones(2).item(), RuntimeError, "a Tensor with 2 elements cannot be converted to Scalar"),
    (lambda: kiln.zeros(-2), RuntimeError, "negative dimension -2"),
    (lambda: kiln.randint(3, 3, (2,)), RuntimeError, "from=3 >= to=3"),
    (lambda: kiln.arange(0, 3, -1), RuntimeError, "upper bound and lower bound inconsistent with step sign"),
]


@pytest.mark.parametrize("fn,exc,msg", OUT_OF_RANGE, ids=[m[:40] for _, _, m in OUT_OF_RANGE])
def test_out_of_range(fn, exc, msg):
    with pytest.raises(exc, match=msg):
        fn()


def test_errors_match_torch_exception_types():
    """Where PyTorch raises, kiln raises the same exception class (checked on a sample of cases)."""
    torch = pytest.importorskip("torch")
    cases = [
        lambda m: m.ones(3, 4) + m.ones(4, 3),
        lambda m: m.ones(2, 3) @ m.ones(4, 5),
        lambda m: m.cat([m.ones(2, 3), m.ones(2, 4)]),
        lambda m: m.ones(2, 3).sum(2),
        lambda m: m.ones(2, 3)[2],
        lambda m: m.ones(2, 3)[m.tensor([0, 2])],
        lambda m: m.ones(2, 3).view(4),
        lambda m: m.ones(2, 3).permute(0, 0),
        lambda m: m.ones(2, 3).transpose(0, 2),
        lambda m: m.ones(2).item(),
        lambda m: m.ones(2, requires_grad=True).add_(1),
        lambda m: m.ones(2, 3)[0, 0, 0],
        lambda m: m.index_select(m.ones(2, 3), 1, m.tensor([[0]])),
        lambda m: m.ones(2, 3)[1.0],
    ]
    for case in cases:
        with pytest.raises(Exception) as tk:
            case(torch)
        with pytest.raises(Exception) as kk:
            case(kiln)
        assert isinstance(kk.value, tk.type), (kk.value, tk.value)
