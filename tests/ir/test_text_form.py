"""The IR text form: stable printing, parsing back to an equal graph, clear errors."""
import math

import numpy as np
import pytest

import kiln
from kiln.ir import Graph, IRParseError, VerificationError, parse_graph, verify
from kiln.ir import dtypes as dt
from kiln.runtime.interpreter import run_graph


def _mlp(x, w, b):
    return ((x @ w + b).relu() ** 2).mean(dim=0).softmax(-1)


def test_print_is_one_line_per_node_and_parses_back():
    x, w, b = kiln.randn(4, 3), kiln.randn(3, 5), kiln.randn(5)
    g = kiln.make_graph(_mlp)(x, w, b)
    text = str(g)
    lines = text.strip().splitlines()
    assert lines[0].startswith("graph mlp(%x: f32[4,3], %w: f32[3,5], %b: f32[5])")
    assert len(lines) == len(g.nodes) + 3
    g2 = parse_graph(text)
    assert g2 == g
    assert str(g2) == text
    ins = [np.asarray(x), np.asarray(w), np.asarray(b)]
    np.testing.assert_array_equal(run_graph(g, ins)[0], run_graph(g2, ins)[0])


def test_attribute_values_round_trip():
    g = Graph("attrs")
    x = g.add_input((2, 3), dt.float32, name="x")
    p = g.add_node("pad", [x], {"lo": (0, 1), "hi": (1, 0), "interior": (0, 0), "value": -math.inf}, (3, 4),
                   dt.float32)
    c = g.add_node("constant", [], {"value": [1, 2, 3, 4], "shape": (2, 2), "dtype": dt.int64}, (2, 2), dt.int64)
    h = g.add_node("cast", [p], {"dtype": dt.float16}, (3, 4), dt.float16)
    g.set_outputs([h, c])
    text = str(g)
    assert "value=-inf" in text and "dtype=f16" in text and "value=[1, 2, 3, 4]" in text
    assert parse_graph(text) == g
    verify(parse_graph(text))


def test_unknown_op_is_named_with_its_line():
    text = "graph g(%x: f32[2]) {\n  %0: f32[2] = frobnicate(%x)\n  return (%0)\n}\n"
    with pytest.raises(IRParseError, match=r"line 2: unknown primitive 'frobnicate'"):
        parse_graph(text)


@pytest.mark.parametrize("body,msg", [
    ("%0: f32[3] = exp(%x)", r"line 2: %0 is declared f32\[3\] but exp gives f32\[2\]"),
    ("%0: f32[2] = exp(%y)", r"line 2: undefined value '%y'"),
    ("%0: f32[2] = add(%x, %x, %x)", r"line 2: add: expected 2 inputs, got 3"),
    ("%0 f32[2] = exp(%x)", r"line 2: cannot parse"),
    ("%0: f32[2] = reduce_sum(%x) {axes=(3,), keepdims=False}", r"line 2: reduce_sum: axis 3 out of range"),
    ("%0: c64[2] = exp(%x)", r"line 2: unsupported dtype 'c64'"),
    ("%0: f32[2] = cast(%x) {dtype=f32, bogus=1}", r"unknown attributes \['bogus'\]"),
])
def test_parse_errors_name_the_problem(body, msg):
    text = "graph g(%x: f32[2]) {\n  " + body + "\n  return (%0)\n}\n"
    with pytest.raises(IRParseError, match=msg):
        parse_graph(text)


def test_missing_return_and_bad_header():
    with pytest.raises(IRParseError, match="missing 'return"):
        parse_graph("graph g(%x: f32[2]) {\n  %0: f32[2] = exp(%x)\n}\n")
    with pytest.raises(IRParseError, match="line 1: expected 'graph NAME"):
        parse_graph("function g(x) {\n}\n")


def test_verifier_catches_bad_graphs():
    g = Graph("bad")
    x = g.add_input((2,), dt.float32, name="x")
    n = g.add_node("exp", [x], {}, (3,), dt.float32)
    g.set_outputs([n])
    with pytest.raises(VerificationError, match=r"%0 = exp: declared f32\[3\], rule gives f32\[2\]"):
        verify(g)
    g2 = Graph("order")
    y = g2.add_input((2,), dt.float32, name="y")
    a = g2.add_node("exp", [y], {}, (2,), dt.float32)
    b = g2.add_node("neg", [a], {}, (2,), dt.float32)
    g2.nodes = [b, a]
    g2.set_outputs([b])
    with pytest.raises(VerificationError, match="uses %0 before it is defined"):
        verify(g2)


def test_networkx_view_and_dot():
    x, w, b = kiln.randn(4, 3), kiln.randn(3, 5), kiln.randn(5)
    g = kiln.make_graph(_mlp)(x, w, b)
    nxg = g.to_networkx()
    import networkx as nx
    assert nx.is_directed_acyclic_graph(nxg)
    assert nxg.number_of_nodes() == len(g.nodes) + len(g.inputs)
    order = list(nx.topological_sort(nxg))
    assert order.index("x") < order.index(g.outputs[0].name)
    dot = g.to_dot()
    assert dot.startswith('digraph "mlp"') and '"x" ->' in dot


@pytest.mark.parametrize("op", ["neg", "abs", "sign"])
def test_numeric_unaries_reject_bool(op):
    with pytest.raises(IRParseError, match=f"{op}: expected a numeric operand, got bool"):
        parse_graph(f"graph f(%x: b1[2]) {{\n  %a: b1[2] = {op}(%x)\n  return (%a)\n}}\n")
