"""Which movement ops are views while tracing, and in-place updates through views of arguments
that are views themselves: compiled must match eager on every call, not only the first.

Found by the fuzzer: a pad was treated as a view of its input (an in-place update of the input
changed the padded copy), and an in-place update through a slice of a transposed argument
read the argument's base as the first call's tensor on every later call."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import kiln
from kiln.frontend.view_strides import makes_view, reshape_strides

BACKENDS = ["reference", "llvm"]


def _same(eager, compiled):
    for e, c in zip(eager, compiled):
        np.testing.assert_array_equal(c.detach().numpy(), e.detach().numpy())


@pytest.mark.parametrize("backend", BACKENDS)
def test_pad_is_a_copy(backend):
    def program(x):
        y = x.unsqueeze(0)
        p = kiln.nn.functional.pad(y, (1, 2))
        y.add_(1)
        return p, x * 1
    c = kiln.compile(program, backend=backend)
    _same(program(kiln.tensor(np.int64(1))), c(kiln.tensor(np.int64(1))))


@pytest.mark.parametrize("backend", BACKENDS)
def test_reshape_that_must_copy_is_not_a_view(backend):
    def program(x):
        y = x.t().reshape(-1)  # x.t() is not row-major: the reshape copies
        y.add_(1)
        return x * 1, y * 1
    c = kiln.compile(program, backend=backend)
    for seed in range(2):
        x = np.random.default_rng(seed).standard_normal((2, 3)).astype(np.float32)
        _same(program(kiln.tensor(x)), c(kiln.tensor(x)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_reshape_follows_the_strides_of_the_argument(backend):
    """A transposed argument: its reshape copies eagerly; a row-major one: a view. One compiled
    function called with both retraces and matches eager for each."""
    def program(x):
        y = x.reshape(-1)
        y.add_(1)
        return x * 1, y * 1
    c = kiln.compile(program, backend=backend)
    base = np.arange(6.0).reshape(3, 2)
    for make in (lambda: kiln.tensor(base.T.copy()), lambda: kiln.from_numpy(base.T.copy(order="F")),
                 lambda: kiln.tensor(base).t()):
        for _ in range(2):
            _same(program(make()), c(make()))
    assert c.cache_info().misses == 2  # row-major, and the transposed layout (from_numpy or a .t() view)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["transposed", "strided", "offset"])
def test_update_through_a_view_of_a_view_argument_on_later_calls(backend, layout):
    def program(v0):
        v0[1:].mul_(3)
        return (v0 * 1,)

    def arg(seed):
        leaf = kiln.tensor(np.random.default_rng(seed).standard_normal((3, 4)).astype(np.float32))
        return leaf, {"transposed": lambda: leaf.t()[:3, :3], "strided": lambda: leaf[:, ::2],
                      "offset": lambda: leaf[1:]}[layout]()
    c = kiln.compile(program, backend=backend)
    for seed in range(3):
        (le, e), (lc, g) = arg(seed), arg(seed)
        _same(program(e), c(g))
        np.testing.assert_array_equal(lc.numpy(), le.numpy())  # the leaf sees the write


@pytest.mark.parametrize("backend", BACKENDS)
def test_arguments_sharing_a_base_read_this_calls_base(backend):
    def program(a, b):
        a[1:].mul_(3)
        return a * 1, b * 1

    def args(seed, shared=True):
        x = np.random.default_rng(seed).standard_normal(5).astype(np.float32)
        leaf, other = kiln.tensor(x), kiln.tensor(x + 1)
        return leaf, leaf[1:], (leaf if shared else other)[:-1]
    c = kiln.compile(program, backend=backend)
    for seed in range(3):
        (le, *e), (lc, *g) = args(seed), args(seed)
        _same(program(*e), c(*g))
        np.testing.assert_array_equal(lc.numpy(), le.numpy())
    misses = c.cache_info().misses
    (le, *e), (lc, *g) = args(7, shared=False), args(7, shared=False)
    _same(program(*e), c(*g))  # no longer sharing a base: a new trace, not the shared-base program
    assert c.cache_info().misses == misses + 1


def test_empty_results_are_not_views():
    assert not makes_view("slice", dict(starts=(1, 0), stops=(1, 1), steps=(1, 1)), (1, 1), (), (0, 1))
    assert not makes_view("pad", dict(lo=(0,), hi=(0,), interior=(0,), value=0), (3,), (), (3,))
    assert makes_view("permute", dict(perm=(1, 0)), (2, 3), (), (3, 2))


def _strided_views(rng):
    """Random (base shape, view chain, view array) triples of numpy permutes and slices."""
    for _ in range(300):
        nd = int(rng.integers(1, 4))
        shape = tuple(int(d) for d in rng.integers(1, 5, nd))
        base = np.arange(int(np.prod(shape))).reshape(shape)
        chain, view = [], base
        if rng.random() < 0.5 and nd > 1:
            perm = tuple(int(p) for p in rng.permutation(nd))
            chain.append(("permute", dict(perm=perm)))
            view = view.transpose(perm)
        if rng.random() < 0.7:
            starts = tuple(int(rng.integers(0, d)) for d in view.shape)
            steps = tuple(int(rng.integers(1, 3)) for _ in view.shape)
            stops = tuple(int(d) for d in view.shape)
            chain.append(("slice", dict(starts=starts, stops=stops, steps=steps)))
            view = view[tuple(slice(b, e, s) for b, e, s in zip(starts, stops, steps))]
        yield shape, chain, base, view


def test_reshape_view_rule_agrees_with_numpy():
    rng = np.random.default_rng(0)
    checked = 0
    for shape, chain, base, view in _strided_views(rng):
        n = view.size
        for new in {(n,), (1, n), (n, 1)} | {(a, n // a) for a in range(1, n + 1) if n % a == 0} \
                | set(itertools.permutations(view.shape)):
            if int(np.prod(new)) != n:
                continue
            out = np.reshape(view, new)
            want = np.may_share_memory(out, base)
            assert makes_view("reshape", dict(shape=new), shape, chain, new) == want, (shape, chain, new)
            if want:
                got = reshape_strides(view.shape, [s // view.itemsize for s in view.strides], new)
                want_strides = [s // out.itemsize for s in out.strides]
                assert [g for g, d in zip(got, new) if d > 1] == [w for w, d in zip(want_strides, new) if d > 1]
            checked += 1
    assert checked > 500
