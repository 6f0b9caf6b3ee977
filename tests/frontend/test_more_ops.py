"""More of torch's functions (norm, isclose, sort/topk, diagonal/diag/trace, roll, tile, meshgrid,
index_add/index_fill, nan_to_num, fmod, ...): values vs torch and numpy, gradients vs torch."""
from __future__ import annotations

import math

import numpy as np
import pytest

import kiln
from frontend_helpers import assert_same

RNG = np.random.default_rng(7)
B = RNG.standard_normal((3, 4))
S = RNG.standard_normal((2, 3, 4))
SPECIAL = np.array([[0.0, np.nan, np.inf, -np.inf], [1.5, -2.0, 0.0, 3.0]])

CASES = {
    "norm": lambda m: m.norm(m.tensor(B)), "norm_dim": lambda m: m.norm(m.tensor(B), dim=1),
    "norm_p1_keepdim": lambda m: m.norm(m.tensor(B), p=1, dim=0, keepdim=True),
    "norm_inf": lambda m: m.norm(m.tensor(B), p=float("inf")), "norm_p3": lambda m: m.norm(m.tensor(B), p=3, dim=(0, 1)),
    "norm_method": lambda m: m.tensor(B).norm(dim=-1), "norm_fro": lambda m: m.norm(m.tensor(B), p="fro"),
    "norm_p0": lambda m: m.norm(m.tensor(B), p=0), "dist": lambda m: m.dist(m.tensor(B), m.tensor(B) * 2),
    "isclose": lambda m: m.isclose(m.tensor(B), m.tensor(B) + 1e-9),
    "isclose_nan": lambda m: m.isclose(m.tensor(SPECIAL), m.tensor(SPECIAL), equal_nan=True),
    "isclose_no_nan": lambda m: m.isclose(m.tensor(SPECIAL), m.tensor(SPECIAL)),
    "isclose_atol": lambda m: m.isclose(m.tensor(B), m.full_like(m.tensor(B), 0.5), atol=1),
    "masked_select": lambda m: m.masked_select(m.tensor(B), m.tensor(B) > 0),
    "masked_select_bcast": lambda m: m.tensor(B).masked_select(m.tensor([True, False, True, False])),
    "diagonal": lambda m: m.diagonal(m.tensor(B)), "diagonal_off": lambda m: m.diagonal(m.tensor(B), 1),
    "diagonal_neg": lambda m: m.tensor(B).diagonal(-1), "diagonal_3d": lambda m: m.diagonal(m.tensor(S), 0, 0, 2),
    "diagonal_3d_neg_dims": lambda m: m.diagonal(m.tensor(S), 1, -1, -2),
    "diag_1d": lambda m: m.diag(m.tensor([1.0, 2.0, 3.0])), "diag_1d_k": lambda m: m.diag(m.tensor([1.0, 2.0]), 1),
    "diag_1d_negk": lambda m: m.diag(m.tensor([1.0, 2.0]), -2), "diag_2d": lambda m: m.diag(m.tensor(B)),
    "trace": lambda m: m.trace(m.tensor(B)), "roll_flat": lambda m: m.roll(m.tensor(B), 1),
    "roll_dims": lambda m: m.roll(m.tensor(B), (1, -1), (0, 1)), "roll_neg": lambda m: m.tensor(B).roll(-5, 1),
    "tile": lambda m: m.tile(m.tensor(B), (2,)), "tile_more": lambda m: m.tensor(B).tile((2, 1, 2)),
    "meshgrid_ij": lambda m: m.meshgrid(m.arange(3), m.arange(4), indexing="ij"),
    "meshgrid_xy": lambda m: m.meshgrid(m.arange(3), m.arange(4), indexing="xy"),
    "meshgrid_xy_3": lambda m: m.meshgrid(m.arange(2), m.arange(3), m.arange(4), indexing="xy"),
    "index_add": lambda m: m.tensor(B).index_add(0, m.tensor([0, 2, 0]), m.ones(3, 4, dtype=m.float64)),
    "index_add_alpha": lambda m: m.tensor(B).index_add(1, m.tensor([3, 1]), m.ones(3, 2, dtype=m.float64), alpha=2),
    "index_fill": lambda m: m.tensor(B).index_fill(1, m.tensor([0, 2]), -1.0),
    "nan_to_num": lambda m: m.nan_to_num(m.tensor(SPECIAL)),
    "nan_to_num_args": lambda m: m.nan_to_num(m.tensor(SPECIAL), nan=1.0, posinf=2.0, neginf=-2.0),
    "nansum": lambda m: m.nansum(m.tensor(SPECIAL[:, :2]), 1), "count_nonzero": lambda m: m.count_nonzero(m.tensor(SPECIAL)),
    "count_nonzero_dim": lambda m: m.count_nonzero(m.tensor(SPECIAL), dim=0),
    "fmod": lambda m: m.fmod(m.tensor(B * 5), 1.5), "fmod_int": lambda m: m.fmod(m.tensor([-7, 7, 5]), m.tensor([2, -3, 5])),
    "sinh": lambda m: m.sinh(m.tensor(B)), "cosh": lambda m: m.cosh(m.tensor(B)), "exp2": lambda m: m.exp2(m.tensor(B)),
    "logaddexp": lambda m: m.logaddexp(m.tensor(B), m.tensor(B * 3)),
    "logaddexp_inf": lambda m: m.logaddexp(m.tensor([-np.inf, 1.0]), m.tensor([-np.inf, np.inf])),
    "xlogy": lambda m: m.xlogy(m.tensor([0.0, 1.0, 2.0]), m.tensor([0.0, 2.0, 3.0])),
    "frac": lambda m: m.frac(m.tensor(B * 3)), "hypot": lambda m: m.hypot(m.tensor(B), m.tensor(B * 2)),
    "select": lambda m: m.select(m.tensor(B), 1, -1), "tensor_split": lambda m: m.tensor_split(m.tensor(B), 3, 1),
    "tensor_split_idx": lambda m: m.tensor_split(m.tensor(B), [1, 3], 1),
    "tensor_split_more": lambda m: m.tensor_split(m.tensor(B), 5, 0),
    "sort": lambda m: m.sort(m.tensor(B)), "sort_desc_dim0": lambda m: m.sort(m.tensor(B), 0, descending=True),
    "argsort": lambda m: m.argsort(m.tensor(B), 1), "topk": lambda m: m.topk(m.tensor(B), 2),
    "topk_smallest": lambda m: m.tensor(B).topk(2, dim=0, largest=False),
    "sort_ties_stable": lambda m: m.sort(m.tensor([3, 1, 2, 1, 3]), stable=True),
    "sort_bool": lambda m: m.sort(m.tensor([True, False, True]), stable=True),
    "cumprod": lambda m: m.cumprod(m.tensor(B), 1), "cumprod_int": lambda m: m.tensor([1, 2, 3, 4]).cumprod(0),
    "logcumsumexp": lambda m: m.logcumsumexp(m.tensor(B), 1), "diff": lambda m: m.diff(m.tensor(B)),
    "diff_n2_dim0": lambda m: m.diff(m.tensor(B), n=2, dim=0),
    "diff_prepend": lambda m: m.diff(m.tensor(B), prepend=m.zeros(3, 1, dtype=m.float64)),
    "diff_bool": lambda m: m.diff(m.tensor([True, False, False, True])),
    "median": lambda m: m.median(m.tensor(B)), "median_dim": lambda m: m.median(m.tensor(B), 1),
    "median_even_keepdim": lambda m: m.tensor(B).median(0, keepdim=True),
    "unique": lambda m: m.unique(m.tensor([3, 1, 3, 0, 1])),
    "unique_all": lambda m: m.unique(m.tensor([3, 1, 3, 0, 1]), return_inverse=True, return_counts=True),
    "bincount": lambda m: m.bincount(m.tensor([3, 1, 3, 0, 1])),
    "bincount_weights": lambda m: m.bincount(m.tensor([3, 1, 3]), m.tensor([0.5, 1.0, 2.0], dtype=m.float64),
                                             minlength=6),
    "searchsorted": lambda m: m.searchsorted(m.tensor([1.0, 3.0, 5.0, 7.0]), m.tensor([[0.0, 3.0], [6.0, 9.0]])),
    "searchsorted_right": lambda m: m.searchsorted(m.tensor([1.0, 3.0, 5.0, 7.0]), m.tensor([3.0, 7.0]), right=True),
    "searchsorted_batched": lambda m: m.searchsorted(m.tensor([[1.0, 3.0], [2.0, 4.0]]), m.tensor([[2.0], [5.0]])),
    "bucketize": lambda m: m.bucketize(m.tensor([0.5, 3.0, 9.0]), m.tensor([1.0, 3.0, 5.0])),
    "baddbmm": lambda m: m.baddbmm(m.tensor(S[:, :3, :3]), m.tensor(S[:, :3, :3]), m.tensor(S[:, :3, :3]), beta=0.5,
                                   alpha=2),
    "addbmm": lambda m: m.addbmm(m.tensor(S[0, :3, :3]), m.tensor(S[:, :3, :3]), m.tensor(S[:, :3, :3])),
    "cross": lambda m: m.cross(m.tensor(S[:, :3]), m.tensor(S[::-1, :3].copy()), dim=1),
    "cdist": lambda m: m.cdist(m.tensor(B), m.tensor(B[:2])), "cdist_p1": lambda m: m.cdist(m.tensor(B), m.tensor(B[:2]), p=1),
    "hsplit": lambda m: m.hsplit(m.tensor(B), 2), "vsplit": lambda m: m.vsplit(m.tensor(B), [1]),
    "heaviside": lambda m: m.heaviside(m.tensor([-1.0, 0.0, 2.0]), m.tensor([0.5])),
    "float_power": lambda m: m.float_power(m.tensor([2, 3]), 2), "rad2deg": lambda m: m.rad2deg(m.tensor(B)),
    "deg2rad": lambda m: m.deg2rad(m.tensor(B)),
}


def _flatten(r):
    if isinstance(r, (tuple, list)):
        return [x for item in r for x in _flatten(item)]
    return [r]


@pytest.mark.parametrize("name", sorted(CASES))
def test_more_ops_vs_torch(name):
    torch = pytest.importorskip("torch")
    got, want = _flatten(CASES[name](kiln)), _flatten(CASES[name](torch))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_same(g, w, rtol=1e-10, atol=1e-12)


def test_more_ops_numpy():
    b = kiln.tensor(B)
    assert_same(kiln.norm(b), np.array(np.linalg.norm(B)))
    assert_same(kiln.norm(b, p=1, dim=1), np.abs(B).sum(1))
    assert_same(kiln.diagonal(b, 1), np.diagonal(B, 1))
    assert_same(kiln.diag(kiln.tensor([1.0, 2.0])), np.diag([1.0, 2.0]).astype(np.float32))
    assert_same(kiln.trace(b), np.array(np.trace(B)))
    assert_same(kiln.roll(b, (1, 2), (0, 1)), np.roll(B, (1, 2), (0, 1)))
    assert_same(kiln.tile(b, (2, 1)), np.tile(B, (2, 1)))
    xs, ys = kiln.meshgrid(kiln.arange(3), kiln.arange(4), indexing="xy")
    nx, ny = np.meshgrid(np.arange(3), np.arange(4), indexing="xy")
    assert_same(xs, nx)
    assert_same(ys, ny)
    assert_same(kiln.isclose(b, b + 1e-9), np.isclose(B, B + 1e-9))
    assert_same(kiln.isclose(b, 0.5, atol=1), np.isclose(B, 0.5, atol=1))  # a number as `other` too
    assert_same(kiln.nan_to_num(kiln.tensor(SPECIAL)), np.nan_to_num(SPECIAL))
    assert_same(kiln.fmod(b * 5, 1.5), np.fmod(B * 5, 1.5))
    assert_same(kiln.sinh(b), np.sinh(B))
    assert_same(kiln.cosh(b), np.cosh(B))
    assert_same(kiln.logaddexp(b, 2 * b), np.logaddexp(B, 2 * B))
    v, i = kiln.sort(b, 1, descending=True)
    assert_same(v, -np.sort(-B, 1))
    assert_same(i, np.argsort(-B, 1, kind="stable"))
    assert_same(kiln.topk(b, 1).values, B.max(1, keepdims=True))
    assert_same(kiln.masked_select(b, b > 0), B[B > 0])
    out = b.clone()
    out.index_add_(0, kiln.tensor([2, 2]), kiln.ones(2, 4, dtype=kiln.float64))
    expect = B.copy()
    expect[2] += 2
    assert_same(out, expect)
    assert kiln.promote_types(kiln.int32, kiln.float16) is kiln.float16
    assert kiln.result_type(kiln.tensor([1, 2]), 1.0) is kiln.float32
    assert kiln.can_cast(kiln.int32, kiln.float32) and not kiln.can_cast(kiln.float32, kiln.int32)


GRAD_CASES = {
    "norm": lambda m, x: m.norm(x), "norm_dim_p1": lambda m, x: m.norm(x, p=1, dim=1),
    "norm_p3": lambda m, x: m.norm(x, p=3), "norm_inf": lambda m, x: m.norm(x, p=float("inf"), dim=0),
    "diagonal": lambda m, x: m.diagonal(x, 1), "diag": lambda m, x: m.diag(m.diagonal(x), 1),
    "trace": lambda m, x: m.trace(x), "roll": lambda m, x: m.roll(x, (1, -1), (0, 1)), "tile": lambda m, x: m.tile(x, (2, 1)),
    "index_add": lambda m, x: x.index_add(0, m.tensor([0, 2, 0]), x * 2),
    "index_fill": lambda m, x: x.index_fill(1, m.tensor([0, 2]), 0.5), "fmod": lambda m, x: m.fmod(x, 0.7),
    "sinh": lambda m, x: m.sinh(x), "cosh": lambda m, x: m.cosh(x), "logaddexp": lambda m, x: m.logaddexp(x, x.flip(0)),
    "hypot": lambda m, x: m.hypot(x, x * 2 + 1), "sort": lambda m, x: m.sort(x, 1)[0] * m.arange(4, dtype=m.float64),
    "topk": lambda m, x: m.topk(x, 2, dim=0).values, "masked_select": lambda m, x: m.masked_select(x, x > 0),
    "select": lambda m, x: m.select(x, 0, 1), "tensor_split": lambda m, x: m.tensor_split(x, 3, 1)[1],
    "nansum": lambda m, x: m.nansum(x, 0), "xlogy": lambda m, x: m.xlogy(x, x.abs() + 1), "exp2": lambda m, x: m.exp2(x),
    "cumprod": lambda m, x: m.cumprod(x, 1), "logcumsumexp": lambda m, x: m.logcumsumexp(x, 0),
    "diff": lambda m, x: m.diff(x, n=2), "median_dim": lambda m, x: m.median(x, 1).values,
    "cross": lambda m, x: m.cross(x[:, :3], x[:, 1:], dim=1), "cdist": lambda m, x: m.cdist(x, x[:2] * 2),
    "baddbmm": lambda m, x: m.baddbmm(x[None, :, :3], x[None], x[None].transpose(1, 2)[:, :, :3], alpha=0.5),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_more_ops_gradients_vs_torch(name):
    torch = pytest.importorskip("torch")
    fn = GRAD_CASES[name]
    kx = kiln.tensor(B, requires_grad=True)
    tx = torch.tensor(B, requires_grad=True)
    ko, to = fn(kiln, kx), fn(torch, tx)
    cot = np.random.default_rng(1).standard_normal(tuple(to.shape))
    (ko * kiln.tensor(cot)).sum().backward()
    (to * torch.tensor(cot)).sum().backward()
    assert_same(kx.grad, tx.grad, rtol=1e-10, atol=1e-12)


def test_sort_inside_compile_is_a_tracing_error():
    with pytest.raises(kiln.TracingError, match="sort\\(\\)"):
        kiln.compile(lambda t: kiln.sort(t)[0])(kiln.tensor(B))


def test_more_ops_errors():
    with pytest.raises(RuntimeError, match="diagonal dimensions cannot be identical"):
        kiln.diagonal(kiln.ones(2, 2), 0, 1, 1)
    with pytest.raises(RuntimeError, match="trace: expected a matrix"):
        kiln.trace(kiln.ones(2))
    with pytest.raises(RuntimeError, match="shifts and dimensions must align"):
        kiln.roll(kiln.ones(2, 2), (1, 1), 0)
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        kiln.topk(kiln.ones(3), 4)
    with pytest.raises(IndexError, match="select\\(\\): index 5 out of range"):
        kiln.select(kiln.ones(2, 3), 1, 5)
    with pytest.raises(RuntimeError, match="norm\\(\\): input dtype should be floating point"):
        kiln.norm(kiln.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        kiln.fmod(kiln.tensor([1, 2]), 0)
    assert math.isclose(kiln.norm(kiln.tensor([3.0, 4.0])).item(), 5.0)


def test_sort_with_nan_and_inf_like_torch():
    torch = pytest.importorskip("torch")
    a = np.array([[3.0, np.nan, 1.0, 3.0, -np.inf], [np.nan, 2.0, 2.0, 0.0, np.inf]])
    for descending in (False, True):
        k = kiln.sort(kiln.tensor(a), dim=1, descending=descending, stable=True)
        t = torch.sort(torch.tensor(a), dim=1, descending=descending, stable=True)
        assert_same(k.values, t.values)
        assert_same(k.indices, t.indices)
