"""Property test: shape ops on random shapes (size-0 and size-1 dims included) agree with numpy."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kiln
from frontend_helpers import assert_same


@st.composite
def shape_op_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4))
    nd = len(shape)
    op = draw(st.sampled_from(["permute", "transpose", "reshape", "flatten", "squeeze", "unsqueeze", "flip",
                               "cat", "stack", "split", "chunk", "movedim", "repeat", "expand", "narrow", "roll"]))
    perm = draw(st.permutations(range(nd)))
    d0 = draw(st.integers(-nd, nd - 1))
    d1 = draw(st.integers(-nd, nd - 1))
    k = draw(st.integers(1, 3))
    return shape, op, list(perm), d0, d1, k


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape_op_cases())
def test_shape_ops_like_numpy(case):
    shape, op, perm, d0, d1, k = case
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    x = kiln.tensor(a)
    nd = len(shape)
    if op == "permute":
        assert_same(x.permute(*perm), a.transpose(perm))
    elif op == "transpose":
        assert_same(x.transpose(d0, d1), np.swapaxes(a, d0, d1))
    elif op == "reshape":
        assert_same(x.reshape(-1), a.reshape(-1))
        assert_same(x.reshape(tuple(reversed(shape))), a.reshape(tuple(reversed(shape))))
    elif op == "flatten":
        lo, hi = sorted((d0 % nd, d1 % nd))
        assert_same(x.flatten(lo, hi), a.reshape(shape[:lo] + (int(np.prod(shape[lo:hi + 1])),) + shape[hi + 1:]))
    elif op == "squeeze":
        assert_same(x.squeeze(), np.array(a.squeeze()))
        assert_same(x.squeeze(d0), np.array(a.squeeze(d0)) if shape[d0] == 1 else a)
    elif op == "unsqueeze":
        assert_same(x.unsqueeze(d0), np.expand_dims(a, d0 if d0 >= 0 else nd + 1 + d0))
    elif op == "flip":
        assert_same(x.flip(d0), np.flip(a, d0).copy())
    elif op == "cat":
        assert_same(kiln.cat([x] * k, d0), np.concatenate([a] * k, d0))
    elif op == "stack":
        assert_same(kiln.stack([x] * k, d0), np.stack([a] * k, d0))
    elif op == "split":
        parts = x.split(k, d0)
        n = shape[d0]
        want = [np.take(a, range(i, min(i + k, n)), axis=d0) for i in range(0, n, k)] or [a]
        assert len(parts) == len(want)
        for p, w in zip(parts, want):
            assert_same(p, w)
    elif op == "chunk":
        parts = x.chunk(k, d0)
        assert sum(p.shape[d0] for p in parts) == shape[d0]
        assert_same(kiln.cat(list(parts), d0), a)
    elif op == "movedim":
        assert_same(x.movedim(d0, d1), np.moveaxis(a, d0, d1).copy())
    elif op == "repeat":
        reps = [k] + [1] * (nd - 1)
        assert_same(x.repeat(*reps), np.tile(a, reps))
    elif op == "expand":
        assert_same(x.unsqueeze(0).expand(k, *shape), np.broadcast_to(a, (k,) + shape).copy())
    elif op == "narrow":
        n = shape[d0]
        start = min(k - 1, n)
        length = max(0, min(k, n - start))
        assert_same(x.narrow(d0, start, length), np.take(a, range(start, start + length), axis=d0))
    elif op == "roll":
        assert_same(kiln.roll(x, k, d0), np.roll(a, k, d0))
