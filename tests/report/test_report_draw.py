"""kiln.report.draw: the fusion plan as dot text and SVG, one labelled cluster per kernel."""
import re
import textwrap
import xml.etree.ElementTree as ET

import pytest

from kiln.ir import parse_graph
from kiln.passes import plan_fusion
from kiln.report import draw
from kiln.report.draw import clusters_of, plan_from_text, plan_to_dot, plan_to_svg
from kiln.runtime.profiler import kernel_label

SVG_NS = "{http://www.w3.org/2000/svg}"

SOFTMAX_MM = textwrap.dedent("""
    graph f(%x: f32[4,8], %w: f32[8,5]) {
      %s: f32[4,1] = reduce_max(%x) {axes=(1,), keepdims=True}
      %b: f32[4,8] = broadcast_to(%s) {shape=(4, 8)}
      %d: f32[4,8] = sub(%x, %b)
      %e: f32[4,8] = exp(%d)
      %m: f32[4,5] = matmul(%e, %w)
      return (%m, %s)
    }""")


def test_dot_has_one_labelled_cluster_per_kernel():
    g = parse_graph(SOFTMAX_MM)
    plan = plan_fusion(g)
    dot = plan_to_dot(g)
    assert dot.startswith('digraph "f" {') and dot.rstrip().endswith("}")
    clusters = re.findall(r"subgraph cluster_k(\d+) \{\n    label=\"([^\"]+)\"", dot)
    assert [int(k) for k, _ in clusters] == [k.id for k in plan.kernels]
    assert [label for _, label in clusters] == [kernel_label(k) for k in plan.kernels]
    for n in g.nodes:  # every node drawn once, every edge once
        assert dot.count(f'  "{n.name}" [label=') == 1
    assert dot.count(" -> ") == sum(len(n.inputs) for n in g.nodes)


def test_svg_is_valid_and_boxes_every_kernel():
    g = parse_graph(SOFTMAX_MM)
    plan = plan_fusion(g)
    svg = plan_to_svg(g, engine="builtin")
    root = ET.fromstring(svg)
    assert root.tag == SVG_NS + "svg"
    kernels = [e for e in root.iter(SVG_NS + "g") if e.get("class") == "kernel"]
    assert [e.get("id") for e in kernels] == [f"kernel-{k.id}" for k in plan.kernels]
    assert [e.find(SVG_NS + "title").text for e in kernels] == [kernel_label(k) for k in plan.kernels]
    nodes = [e for e in root.iter(SVG_NS + "g") if e.get("class") == "node"]
    assert len(nodes) == len(g.inputs) + len(g.nodes)
    assert len(list(root.iter(SVG_NS + "line"))) == sum(len(n.inputs) for n in g.nodes)


def test_each_node_inside_its_kernel_box():
    g = parse_graph(SOFTMAX_MM)
    clusters = clusters_of(g)
    lay = draw.layout(g, clusters)
    boxes = {c.id: b for c, b in lay.clusters}
    for c in clusters:
        if c.id < 0:
            continue
        box = boxes[c.id]
        for name in c.nodes:
            n = lay.nodes[name]
            assert box.x <= n.x and n.x + n.w <= box.x + box.w and box.y <= n.y and n.y + n.h <= box.y + box.h
    # kernel boxes do not overlap
    items = list(boxes.values())
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            assert a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y


def test_plan_read_back_from_its_dump_text():
    g = parse_graph(SOFTMAX_MM)
    plan = plan_fusion(g)
    back = plan_from_text(g, str(plan))
    assert [(k.id, k.kind, k.domain, [n.name for n in k.nodes], [n.name for n in k.inputs],
             [n.name for n in k.outputs]) for k in back.kernels] == \
           [(k.id, k.kind, k.domain, [n.name for n in k.nodes], [n.name for n in k.inputs],
             [n.name for n in k.outputs]) for k in plan.kernels]
    assert [kernel_label(k) for k in back.kernels] == [kernel_label(k) for k in plan.kernels]


def test_plan_text_naming_an_unknown_node_is_an_error():
    g = parse_graph(SOFTMAX_MM)
    text = str(plan_fusion(g)).replace("%e: f32[4,8]", "%zz: f32[4,8]", 1)
    with pytest.raises(ValueError, match=r"fusion plan line \d+: %zz is not a node of graph f"):
        plan_from_text(g, text)


def test_labels_and_names_are_escaped():
    g = parse_graph(SOFTMAX_MM)
    clusters = clusters_of(g)
    clusters[1].label = 'k0 <odd> & "quoted"'
    ET.fromstring(draw.svg_text(g, clusters))
    assert 'label="k0 <odd> & \\"quoted\\""' in draw.dot_text(g, clusters)


def test_engine_is_checked_and_dot_must_exist(monkeypatch):
    g = parse_graph(SOFTMAX_MM)
    with pytest.raises(ValueError, match="engine must be"):
        plan_to_svg(g, engine="neato")
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    with pytest.raises(draw.ToolUnavailable, match="dot"):
        plan_to_svg(g, engine="dot")
    assert plan_to_svg(g).startswith("<svg")  # auto: the builtin layout without dot
