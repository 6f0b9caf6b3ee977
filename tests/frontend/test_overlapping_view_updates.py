"""In-place updates through overlapping views, compared with PyTorch: eagerly and compiled, on
the reference interpreter and natively. Random views of one base (slices with offsets and
steps, transposes, selects, unsqueezes, narrows, views of views) are passed as arguments or made
inside the function; one is updated in place and another read after it.

The compiled function is called first with independent arguments of the same shapes, then with
the overlapping views: a program traced for independent arguments reads each as its own value,
and once ran for aliased ones too (the fuzzer's seed-3 program 89,
tests/testing/regressions/test_fuzz_inplace_offset_seen_by_overlap.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import kiln

BACKENDS = ["reference", "llvm"]
EXAMPLES = {"reference": 40, "llvm": 15}


def _apply(t, chain):
    """The view of `t` (a kiln or a torch tensor) that `chain` describes."""
    for op, *a in chain:
        if op == "slice":
            d, start, stop, step = a
            t = t[(slice(None),) * d + (slice(start, stop, step),)]
        elif op == "transpose":
            t = t.transpose(*a)
        elif op == "select":
            t = t.select(*a)
        elif op == "unsqueeze":
            t = t.unsqueeze(*a)
        elif op == "narrow":
            t = t.narrow(*a)
    return t


@st.composite
def _chain(draw, shape):
    """A chain of 0 to 3 view ops valid from `shape` (tracked with a numpy stand-in)."""
    x = np.empty(shape)
    chain = []
    for _ in range(draw(st.integers(0, 3))):
        kinds = ["slice", "unsqueeze"] + (["transpose"] if x.ndim >= 2 else []) + \
                (["select", "narrow"] if x.ndim >= 1 and x.shape and min(x.shape) > 0 else [])
        if x.ndim == 0:
            kinds = ["unsqueeze"]
        kind = draw(st.sampled_from(kinds))
        if kind == "slice":
            d = draw(st.integers(0, x.ndim - 1))
            n = x.shape[d]
            start, stop = draw(st.integers(0, n)), draw(st.integers(0, n))
            step = draw(st.integers(1, 3))
            op = ("slice", d, start, stop, step)
            x = x[(slice(None),) * d + (slice(start, stop, step),)]
        elif kind == "transpose":
            d0, d1 = draw(st.integers(0, x.ndim - 1)), draw(st.integers(0, x.ndim - 1))
            op = ("transpose", d0, d1)
            x = np.swapaxes(x, d0, d1)
        elif kind == "select":
            d = draw(st.integers(0, x.ndim - 1))
            i = draw(st.integers(-x.shape[d], x.shape[d] - 1))
            op = ("select", d, i)
            x = np.take(x, i, axis=d)
        elif kind == "narrow":
            d = draw(st.integers(0, x.ndim - 1))
            start = draw(st.integers(0, x.shape[d]))
            length = draw(st.integers(0, x.shape[d] - start))
            op = ("narrow", d, start, length)
            x = x[(slice(None),) * d + (slice(start, start + length),)]
        else:
            d = draw(st.integers(0, x.ndim))
            op = ("unsqueeze", d)
            x = np.expand_dims(x, d)
        chain.append(op)
    return chain


@st.composite
def _cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    a, b = draw(_chain(shape)), draw(_chain(shape))
    if not a and not b:
        b = [("slice", 0, 1, None, 1)]  # one tensor cannot be passed twice
    update = draw(st.sampled_from(["add", "mul", "clamp", "fill"]))
    second = draw(st.booleans())  # a second update, through the other view
    inside = draw(st.booleans())  # the views made inside the function from the base argument
    return shape, a, b, update, second, inside


def _program(a_chain, b_chain, update, second, inside):
    def body(a, b):
        if update == "add":
            a.add_(1.5)
        elif update == "mul":
            a.mul_(-2)
        elif update == "clamp":
            a.clamp_(-1, 0.5)
        else:
            a.fill_(7)
        read = b * 3 + 1
        if second:
            b.sub_(0.25)
        return read, a * 1, b + 0

    if inside:
        def program(base):
            return body(_apply(base, a_chain), _apply(base, b_chain))
    else:
        def program(a, b):
            return body(a, b)
    return program


def _run(lib, program, data, a_chain, b_chain, inside, independent=False):
    """Outputs and the base after the call, as numpy arrays."""
    base = (torch.tensor if lib is torch else kiln.tensor)(data.copy())
    if inside:
        outs = program(base)
    else:
        a, b = _apply(base, a_chain), _apply(base, b_chain)
        if independent:
            a, b = a.clone(), b.clone()
        outs = program(a, b)
    return [np.array(o.numpy(), copy=True) for o in outs] + [np.array(base.numpy(), copy=True)]


def _check(case, backend):
    shape, a_chain, b_chain, update, second, inside = case
    program = _program(a_chain, b_chain, update, second, inside)
    data = (np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) - 3) / 4
    compiled = kiln.compile(program, backend=backend, recompile_limit=1000)
    calls = [False, True] if not inside else [True]
    for independent in calls:
        want = _run(torch, program, data, a_chain, b_chain, inside, independent)
        eager = _run(kiln, program, data, a_chain, b_chain, inside, independent)
        got = _run(kiln, compiled, data, a_chain, b_chain, inside, independent)
        what = "independent arguments" if independent else "overlapping views"
        for k, (w, e, g) in enumerate(zip(want, eager, got)):
            np.testing.assert_allclose(e, w, rtol=1e-6, err_msg=f"eager, {what}, value {k}")
            np.testing.assert_allclose(g, w, rtol=1e-6, err_msg=f"{backend}, {what}, value {k}")
    # independent arguments again: the aliased call's program must not be replayed for them
    if not inside:
        want = _run(torch, program, data, a_chain, b_chain, inside, True)
        got = _run(kiln, compiled, data, a_chain, b_chain, inside, True)
        for k, (w, g) in enumerate(zip(want, got)):
            np.testing.assert_allclose(g, w, rtol=1e-6, err_msg=f"{backend}, independent again, value {k}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_updates_through_overlapping_views_match_torch(backend):
    run = settings(max_examples=EXAMPLES[backend], deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])(given(_cases())(lambda case: _check(case, backend)))
    run()


@pytest.mark.parametrize("backend", BACKENDS)
def test_offset_update_seen_by_overlapping_argument(backend):
    # the fuzzer's case, by hand: leaf[1:] updated, leaf[:-1] read after it
    def program(a, b):
        a.add_(1)
        return b * 2

    compiled = kiln.compile(program, backend=backend)
    assert compiled(kiln.ones(4), kiln.ones(4)).numpy().tolist() == [2.0] * 4  # traced for independent arguments
    leaf = kiln.zeros(5)
    assert compiled(leaf[1:], leaf[:-1]).numpy().tolist() == [0.0, 2.0, 2.0, 2.0]
    assert leaf.numpy().tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert compiled.cache_info().misses == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_base_beside_its_view_is_guarded_on_the_view(backend):
    # (base, view) and (view, base) and (x, y) have the same shapes: each is its own program
    def program(a, b):
        a.mul_(2)
        return b + 0

    compiled = kiln.compile(program, backend=backend, recompile_limit=100)
    for make in (lambda s: (s, s.t()), lambda s: (s.t(), s), lambda s: (s, s.clone()),
                 lambda s: (s.t(), s.t().clone()), lambda s: (s, s.t())):
        want = program(*make(torch.arange(9.0).reshape(3, 3)))
        got = compiled(*make(kiln.arange(9.0).reshape(3, 3)))
        np.testing.assert_array_equal(got.numpy(), want.numpy())
