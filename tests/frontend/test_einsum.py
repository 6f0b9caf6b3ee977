"""einsum vs numpy.einsum (values) and torch.einsum (values and gradients)."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
from frontend_helpers import assert_same

SHAPES = {
    "ij,jk->ik": [(2, 3), (3, 4)], "ij,jk": [(2, 3), (3, 4)], "bij,bjk->bik": [(5, 2, 3), (5, 3, 4)],
    "bhqd,bhkd->bhqk": [(2, 3, 4, 5), (2, 3, 6, 5)], "ii->i": [(4, 4)], "ii": [(4, 4)], "ij->ji": [(2, 3)],
    "ij->": [(2, 3)], "i,i->": [(3,), (3,)], "i,j->ij": [(3,), (4,)], "...ij,...jk->...ik": [(2, 5, 2, 3), (5, 3, 4)],
    "ij,jk,kl->il": [(2, 3), (3, 4), (4, 5)], "bn,anm,bm->ba": [(2, 3), (4, 3, 5), (2, 5)], "i...->...": [(3, 4, 5)],
    "iij->j": [(3, 3, 4)], "ij,ij->ij": [(2, 3), (2, 3)], "ij,ij->i": [(2, 3), (2, 3)], "ab,cd->abcd": [(2, 3), (4, 5)],
    "ijk,ikj->i": [(2, 3, 4), (2, 4, 3)], "i,i,i->i": [(3,), (3,), (3,)], "...,...->...": [(2, 3), (3,)],
    "bij,jk->bik": [(2, 3, 4), (4, 5)], "ij,j->i": [(3, 4), (4,)], "ji,kj->ik": [(4, 3), (5, 4)], "ba": [(2, 3)],
    "i,jj->ij": [(3,), (4, 4)], "ij,kj->": [(2, 3), (4, 3)], "b i j , b j k -> b i k": [(2, 2, 3), (2, 3, 2)],
}


def _arrays(eq, dtype="float64"):
    rng = np.random.default_rng(len(eq))
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES[eq]]


@pytest.mark.parametrize("eq", sorted(SHAPES))
def test_einsum_vs_numpy(eq):
    arrays = _arrays(eq)
    want = np.einsum(eq.replace(" ", ""), *arrays)
    assert_same(kiln.einsum(eq, *[kiln.tensor(a) for a in arrays]), np.asarray(want), rtol=1e-10, atol=1e-12)
    assert_same(kiln.einsum(eq, [kiln.tensor(a) for a in arrays]), np.asarray(want), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("eq", sorted(SHAPES))
def test_einsum_values_and_gradients_vs_torch(eq):
    torch = pytest.importorskip("torch")
    arrays = _arrays(eq)
    ks = [kiln.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    ko, to = kiln.einsum(eq, *ks), torch.einsum(eq, *ts)
    assert_same(ko, to, rtol=1e-10, atol=1e-12)
    cot = np.random.default_rng(0).standard_normal(tuple(to.shape))
    (ko * kiln.tensor(cot)).sum().backward()
    (to * torch.tensor(cot)).sum().backward()
    for k, t in zip(ks, ts):
        assert_same(k.grad, t.grad, rtol=1e-10, atol=1e-12)


def test_einsum_dtypes_and_tracing():
    assert_same(kiln.einsum("i,i->", kiln.tensor([1, 2, 3]), kiln.tensor([4, 5, 6])), np.array(32))
    a, b = kiln.randn(2, 3, 4), kiln.randn(2, 4, 5)
    assert kiln.einsum("bij,bjk->bik", a, b).dtype is kiln.float32
    traced = kiln.compile(lambda x, y: kiln.einsum("bij,bjk->bik", x, y))(a, b)
    assert_same(traced, kiln.einsum("bij,bjk->bik", a, b))


@pytest.mark.parametrize("eq,shapes,msg", [
    ("ij,jk->ik", [(2, 3), (4, 5)], "subscript j has size 3 and 4"),
    ("ij,jk->ik", [(2, 3)], "2 subscripts in the equation .* but 1 operands"),
    ("ijk->i", [(2, 3)], "number of subscripts in 'ijk' does not match the number of dimensions \\(2\\)"),
    ("ij->iz", [(2, 3)], "output subscript z does not appear"),
    ("ii", [(2, 3)], "subscript i is repeated for operand but the sizes don't match"),
    ("i1->i", [(2, 3)], "invalid subscript 'i1'"),
    ("ij->ii", [(2, 2)], "output subscript appears more than once"),
])
def test_einsum_errors(eq, shapes, msg):
    with pytest.raises(RuntimeError, match=msg):
        kiln.einsum(eq, *[kiln.ones(*s) for s in shapes])
