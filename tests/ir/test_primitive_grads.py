"""Every primitive's VJP rule against float64 central finite differences (eager autograd)."""
import numpy as np
import pytest

import kiln
from kiln.frontend.tensor import apply
from kiln.ir import PRIMITIVES

from helpers import CASES, _numeric_grad, _to_tensor, rng


def test_every_differentiable_primitive_has_a_case():
    with_vjp = {n for n, p in PRIMITIVES.items() if p.vjp is not None and p.kind != "random"}
    assert with_vjp <= set(CASES) | {"conv"} | {n for n in with_vjp if n.startswith("conv")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_vjp_matches_finite_differences(name):
    arrays, attrs = CASES[name]
    tensors = [_to_tensor(a, True) for a in arrays]
    out = apply(name, *tensors, **attrs)
    ct = rng.normal(size=tuple(out.shape))
    (out * kiln.from_numpy(ct)).sum().backward()
    for k, t in enumerate(tensors):
        if not t.requires_grad:
            continue
        num = _numeric_grad(name, [np.array(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a
                                   for a in arrays], attrs, k, ct)
        got = t.grad.numpy()
        np.testing.assert_allclose(got, num, rtol=1e-5, atol=1e-6, err_msg=f"{name} input {k}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_shape_rule_matches_impl(name):
    arrays, attrs = CASES[name]
    prim = PRIMITIVES[name]
    tensors = [kiln.from_numpy(np.array(a)) for a in arrays]
    shape, dtype = prim.abstract_eval(tensors, attrs)
    out = prim.impl(*arrays, **attrs)
    assert tuple(out.shape) == tuple(shape)
    assert out.dtype == dtype.np_dtype
