"""Graph.node_copy: the one way to copy a node into another graph."""
import textwrap

import pytest

from kiln.ir import parse_graph
from kiln.ir import dtypes as dt
from kiln.ir.graph import Graph

SRC = textwrap.dedent("""
    graph src(%x: f32[2,3], %y: f32[2,3]) {
      %s: f32[2,3] = add(%x, %y)
      %r: f32[2,1] = reduce_sum(%s) {axes=(1,), keepdims=True}
      return (%r)
    }
""")


def _copy_all(src: Graph, dst: Graph) -> dict:
    env = {id(i): dst.add_input(i.shape, i.dtype, name=i.name) for i in src.inputs}
    for n in src.nodes:
        env[id(n)] = dst.node_copy(n, lambda i: env[id(i)])
    dst.set_outputs([env[id(o)] for o in src.outputs])
    return env


def test_copy_keeps_op_attrs_type_name_and_loc():
    src = parse_graph(SRC)
    src.nodes[1].loc = "model.py:7"
    dst = Graph("src")
    _copy_all(src, dst)
    assert str(dst) == str(src)
    assert dst.nodes[1].loc == "model.py:7"
    assert dst.nodes[1].inputs[0] is dst.nodes[0]  # inputs are mapped, not shared
    dst.nodes[1].attrs["keepdims"] = False
    assert src.nodes[1].attrs["keepdims"] is True  # attributes are not shared either


def test_taken_name_gets_a_fresh_one_and_an_explicit_name_wins():
    src = parse_graph(SRC)
    dst = Graph()
    a = dst.add_input((2, 3), dt.float32, name="s")
    b = dst.add_input((2, 3), dt.float32, name="t")
    first = dst.node_copy(src.nodes[0], lambda i: a if i.name == "x" else b)
    assert first.name != "s" and dst.has_name(first.name)
    named = dst.node_copy(src.nodes[0], lambda i: a, name="sum2")
    assert named.name == "sum2" and [i.name for i in named.inputs] == ["s", "s"]


def test_mapping_to_another_type_is_an_error_naming_the_input():
    src = parse_graph(SRC)
    dst = Graph()
    x = dst.add_input((2, 3), dt.float32, name="x")
    wrong = dst.add_input((3, 2), dt.float32, name="w")
    msg = r"node_copy\(%s\): input 1 \(%y: float32\[2, 3\]\) maps to %w: float32\[3, 2\]"
    with pytest.raises(ValueError, match=msg):
        dst.node_copy(src.nodes[0], lambda i: x if i.name == "x" else wrong)
    with pytest.raises(ValueError, match=r"input 0 .* maps to None"):
        dst.node_copy(src.nodes[0], lambda i: None)
    assert dst.nodes == []


def test_a_graph_input_is_not_copied_as_a_node():
    src = parse_graph(SRC)
    with pytest.raises(ValueError, match="graph input .* add_input"):
        Graph().node_copy(src.inputs[0], lambda i: i)


def test_has_name():
    g = parse_graph(SRC)
    assert g.has_name("x") and g.has_name("r") and not g.has_name("q")
