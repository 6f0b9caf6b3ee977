"""Index simplification with value ranges (kiln/codegen/index_simplify.py): the rules the CNN's
reshapes and the partitioned pad/concat loops need, the cases that must stay as written
(possibly negative operands), and random index expressions evaluated before and after over
every point of their variables' ranges."""
from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.codegen.index_simplify import simplify, value_range
from kiln.codegen.kir import Const, Var, idx, op
from kiln.codegen.kir_eval import eval_expr
from kiln.codegen.kir_printer import format_expr
from kiln.ir import dtypes as dt

i1, i2, i3 = (Var(n, dt.int64) for n in ("i1", "i2", "i3"))
R = {"i1": (0, 31), "i2": (0, 63), "i3": (0, 31)}


def _text(e) -> str:
    return format_expr(e)


def _points(ranges):
    names = sorted(ranges)
    grids = np.meshgrid(*[np.arange(lo, hi + 1, dtype=np.int64) for lo, hi in (ranges[n] for n in names)],
                        indexing="ij")
    return {n: g.reshape(-1) for n, g in zip(names, grids)}


def _same_values(a, b, ranges):
    env = _points(ranges)
    va = np.broadcast_to(eval_expr(a, env), env[next(iter(env))].shape)
    vb = np.broadcast_to(eval_expr(b, env), env[next(iter(env))].shape)
    assert np.array_equal(va, vb), (_text(a), _text(b))


def test_div_mul_plus_rem_is_the_operand():
    x = i1 * 64 + i2
    e = op("add", op("mul", op("div", x, idx(32)), idx(32)), op("rem", x, idx(32)))  # the CNN's k21 index
    assert simplify(e, R) == x
    e2 = op("add", op("mul", op("div", i3, idx(2)), idx(2)), op("rem", i3, idx(2)))
    assert simplify(e2, R) == i3
    # a split index linearized again: ((p * 16) + (i3 / 2)) * 2 + (i3 % 2) -> p*32 + i3
    p = i1 * 64 + i2
    e3 = op("add", op("mul", op("add", op("mul", p, idx(16)), op("div", i3, idx(2))), idx(2)), op("rem", i3, idx(2)))
    assert simplify(e3, R) == op("add", op("mul", p, idx(32)), i3)
    _same_values(e3, simplify(e3, R), R)
    # holds for any x, negative ones too (truncating division): no range needed
    assert simplify(op("add", op("mul", op("div", i1 - 40, idx(3)), idx(3)), op("rem", i1 - 40, idx(3)))) \
        == op("sub", i1, idx(40))


def test_div_and_rem_of_a_multiple_plus_a_small_remainder():
    x = i1 * 64 + i3  # i3 < 32, 32 | 64
    assert simplify(op("div", x, idx(32)), R) == i1 * 2
    assert simplify(op("rem", x, idx(32)), R) == i3
    assert simplify(op("div", i3 + i1 * 4, idx(2)), {"i1": (0, 9), "i3": (0, 1)}) == i1 * 2
    # a value inside one block of c
    assert simplify(op("div", i3 + 64, idx(32)), R) == idx(2)
    assert simplify(op("rem", i3 + 64, idx(32)), R) == i3


def test_possibly_negative_operands_are_not_simplified():
    # ((i1 - 3) * 4 + 1) / 4 is -2 at i1 = 0 by truncation, i1 - 3 would give -3
    e = op("div", op("add", op("mul", op("sub", i1, idx(3)), idx(4)), idx(1)), idx(4))
    s = simplify(e, R)
    assert isinstance(s, type(e)) and s.name == "div"
    _same_values(e, s, {"i1": R["i1"]})
    # (i1 - 5) % 4 is not i1 - 5 (negative at i1 < 5), nor (i1 - 5) / 4 zero
    for name in ("rem", "div"):
        e = op(name, op("sub", i1, idx(5)), idx(4))
        s = simplify(e, {"i1": (0, 7)})
        assert isinstance(s, type(e)) and s.name == name
    # a remainder part that may reach c is no remainder
    e = op("rem", i1 * 32 + i2, idx(32))
    assert simplify(e, R).name == "rem"
    # unknown ranges: nothing is assumed
    assert simplify(op("div", i1 * 64 + i3, idx(32))).name == "div"


def test_offsets_float_outward_and_cancel():
    assert simplify(op("sub", op("add", i2, idx(768)), idx(768))) == i2
    assert simplify(op("add", op("add", i1, idx(64)), op("sub", i2, idx(60)))) == op("add", op("add", i1, i2), idx(4))
    # a lone offset stays put: (r*200) + ((jb*16) + 3) keeps its shape (a column block's load)
    e = op("add", i1 * 200, op("add", i2 * 16, idx(3)))
    assert simplify(e, R) is e
    assert simplify(op("sub", idx(5), op("add", i1, idx(2)))) == op("sub", idx(3), i1)
    # an expression no rule touches keeps its shape (renderers match some index shapes)
    e = op("add", op("mul", op("add", op("mul", i1, idx(64)), i2), idx(32)), i3)
    assert simplify(e, R) is e
    assert simplify(op("sub", idx(5), i1)) == op("sub", idx(5), i1)


def test_comparisons_and_selects_decided_by_ranges():
    cond = op("and", op("ge", op("sub", i2, idx(768)), idx(0)), op("lt", op("sub", i2, idx(768)), idx(256)))
    load_index = op("add", i1 * 256, op("select", cond, op("sub", i2, idx(768)), idx(0)))
    piece = simplify(load_index, {"i1": (0, 63), "i2": (0, 255)}, {"i2": op("add", i2, idx(768))})
    assert piece == op("add", i1 * 256, i2)
    outside = simplify(load_index, {"i1": (0, 63), "i2": (0, 255)}, {"i2": op("add", i2, idx(256))})
    assert outside == i1 * 256
    assert simplify(cond, {"i2": (0, 1100)}) is cond  # undecided: unchanged
    assert simplify(cond, {"i2": (0, 1023)}) == cond.args[0]  # the upper bound always holds
    assert simplify(op("eq", i1, idx(40)), R) == Const(False, dt.bool_)
    assert simplify(op("min", i1, idx(40)), R) == i1
    assert simplify(op("max", i1 - 40, idx(0)), R) == idx(0)


def test_value_range():
    assert value_range(i1 * 64 + i2, R) == (0, 31 * 64 + 63)
    assert value_range(op("rem", i1 - 5, idx(4)), R) == (-3, 3)
    assert value_range(op("div", i1, idx(4)), R) == (0, 7)
    assert value_range(op("rem", i3 + 64, idx(32)), R) == (0, 31)
    assert value_range(op("mul", i1, idx(1 << 62)), R) is None  # could overflow: unknown
    assert value_range(Var("x", dt.int64), R) is None


_VARS = ("a", "b")


def _expr_strategy():
    leaf = st.one_of(st.sampled_from([Var(n, dt.int64) for n in _VARS]),
                     st.integers(-9, 9).map(idx))

    def grow(children):
        k = st.integers(1, 6)
        return st.one_of(
            st.tuples(children, children).map(lambda t: op("add", *t)),
            st.tuples(children, children).map(lambda t: op("sub", *t)),
            st.tuples(children, st.integers(-4, 8)).map(lambda t: op("mul", t[0], idx(t[1]))),
            st.tuples(children, k).map(lambda t: op("div", t[0], idx(t[1]))),
            st.tuples(children, k).map(lambda t: op("rem", t[0], idx(t[1]))),
            st.tuples(children, k).map(lambda t: op("add", op("mul", op("div", t[0], idx(t[1])), idx(t[1])),
                                                     op("rem", t[0], idx(t[1])))),
            st.tuples(children, children, k).map(lambda t: op("add", op("mul", op("add", t[1], op(
                "div", t[0], idx(t[2]))), idx(t[2])), op("rem", t[0], idx(t[2])))),
            st.tuples(children, children, children, st.sampled_from(["lt", "ge", "eq", "ne", "le", "gt"]))
              .map(lambda t: op("select", op(t[3], t[0], t[1]), t[1], t[2])),
            st.tuples(children, children).map(lambda t: op("min", *t)),
        )
    return st.recursive(leaf, grow, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(e=_expr_strategy(), ra=st.tuples(st.integers(-6, 6), st.integers(0, 12)),
       rb=st.tuples(st.integers(0, 3), st.integers(0, 9)),
       shift=st.integers(-5, 5))
def test_random_expressions_keep_their_values(e, ra, rb, shift):
    ranges = {"a": (ra[0], ra[0] + ra[1]), "b": (rb[0], rb[0] + rb[1])}
    s = simplify(e, ranges)
    _same_values(e, s, ranges)
    # with a substitution a -> a + shift (a piece of a partitioned loop) over the shifted range
    sub = {"a": op("add", Var("a", dt.int64), idx(shift))}
    shifted = {"a": (ranges["a"][0] - shift, ranges["a"][1] - shift), "b": ranges["b"]}
    t = simplify(e, shifted, sub)
    env = _points(shifted)
    want = eval_expr(e, {"a": env["a"] + shift, "b": env["b"]})
    got = eval_expr(t, env)
    n = env["a"].shape
    assert np.array_equal(np.broadcast_to(want, n), np.broadcast_to(got, n)), (_text(e), _text(t))
    r = value_range(s, ranges)
    if r is not None:
        vals = np.broadcast_to(eval_expr(s, _points(ranges)), n)
        assert r[0] <= vals.min() and vals.max() <= r[1]


def test_ranges_of_every_point_bound_the_values():
    for lo, hi, c in itertools.product((-7, 0, 3), (4, 11), (1, 2, 5)):
        rng = {"a": (lo, hi)}
        a = Var("a", dt.int64)
        for e in (op("div", a, idx(c)), op("rem", a, idx(c)), op("mul", a, idx(-c)), op("sub", idx(c), a)):
            r = value_range(e, rng)
            vals = eval_expr(e, _points(rng))
            assert r[0] <= np.min(vals) and np.max(vals) <= r[1]


def test_joined_digits_fold_as_they_are_built():
    """`op` re-joins the digits a delinearized index splits a position into, so a reshape read
    back from a row-major buffer is a plain position: `(x/(d*s))*s + (x/d)%s -> x/d`,
    `(x/s)*s + x%s -> x`, with or without an outer digit (the CNN's flattened pool output,
    `[64, 4096]` over `[64, 64, 8, 8]`, reads `k*4096 + c`)."""
    from kiln.codegen import index as ix
    for shape in ([64, 8, 8], [3, 5, 7], [2, 1, 4], [6]):
        assert ix.linearize(ix.delinearize(i1, shape), shape) == i1, shape
    e = ix.linearize(ix.reshape_index((i2, i1), [64, 4096], [64, 64, 8, 8]), [64, 64, 8, 8])
    assert e == op("add", op("mul", i2, idx(4096)), i1), _text(e)
    # digits of different variables, or of mismatched sizes, stay as written
    e2 = op("add", op("mul", op("div", i1, idx(8)), idx(8)), op("rem", i2, idx(8)))
    assert "%" in _text(e2)
    e3 = op("add", op("mul", op("div", i1, idx(16)), idx(8)), op("rem", op("div", i1, idx(4)), idx(8)))
    assert "%" in _text(e3)


def test_joined_digit_identities_hold_for_negative_values_too():
    """The folds are identities for every integer (the evaluator's division, as the native
    code's): the unfolded forms, built without `op`'s folding, agree with their folds."""
    from kiln.codegen.kir import Op
    x = Var("x", dt.int64)

    def raw(name, a, b):
        return Op(name, (a, b), dt.int64)
    c8, c4, c32 = idx(8), idx(4), idx(32)
    two = raw("add", raw("mul", raw("div", x, c8), c8), raw("rem", x, c8))
    three = raw("add", raw("mul", raw("div", x, c32), c8), raw("rem", raw("div", x, c4), c8))
    outer = raw("add", raw("mul", raw("add", i1, raw("div", x, c32)), c8), raw("rem", raw("div", x, c4), c8))
    env = {"x": np.arange(-300, 300, dtype=np.int64), "i1": np.int64(5)}
    assert np.array_equal(eval_expr(two, env), env["x"])
    assert np.array_equal(eval_expr(three, env), eval_expr(op("div", x, c4), env))
    assert np.array_equal(eval_expr(outer, env), eval_expr(op("add", op("mul", i1, c8), op("div", x, c4)), env))
