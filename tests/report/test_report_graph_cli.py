"""kiln graph FILE -o out.svg|png|dot: the fusion plan picture of a graph file."""
import argparse
import sys
import xml.etree.ElementTree as ET

import pytest

import kiln
from kiln.cli import graph as graph_cli
from kiln.report import draw

GRAPH = """graph g(%x: f32[4,8], %w: f32[8,5]) {
  %e: f32[4,8] = exp(%x)
  %m: f32[4,5] = matmul(%e, %w)
  %s: f32[4] = reduce_sum(%m) {axes=(1,), keepdims=False}
  return (%s)
}
"""


def _run(argv):
    p = argparse.ArgumentParser(prog="kiln graph")
    graph_cli.add_arguments(p)
    return graph_cli.run(p.parse_args(argv))


@pytest.fixture
def graph_file(tmp_path):
    f = tmp_path / "g.txt"
    f.write_text(GRAPH)
    return f


def test_svg_and_dot_from_ir_text(graph_file, tmp_path):
    assert _run([str(graph_file), "-o", str(tmp_path / "g.svg"), "--engine", "builtin"]) == 0
    root = ET.parse(tmp_path / "g.svg").getroot()
    assert sum(e.get("class") == "kernel" for e in root.iter("{http://www.w3.org/2000/svg}g")) == \
        len(kiln.passes.plan_fusion(kiln.parse_graph(GRAPH)).kernels)
    assert _run([str(graph_file), "-o", str(tmp_path / "g.dot")]) == 0
    assert (tmp_path / "g.dot").read_text() == draw.plan_to_dot(kiln.parse_graph(GRAPH))


def test_exported_program_is_drawn_from_its_kiln_file(tmp_path):
    m = kiln.nn.Sequential(kiln.nn.Linear(4, 8), kiln.nn.ReLU(), kiln.nn.Linear(8, 2)).eval()
    path = tmp_path / "m.kiln"
    kiln.export(m, kiln.randn(3, 4)).save(path)
    assert _run([str(path), "-o", str(tmp_path / "m.dot")]) == 0
    dot = (tmp_path / "m.dot").read_text()
    assert dot == draw.plan_to_dot(kiln.load_exported(path).graph) and "cluster_k0" in dot


def test_png_through_whatever_is_installed(graph_file, tmp_path):
    try:
        used = draw.write_png(kiln.parse_graph(GRAPH), tmp_path / "g.png")
    except draw.ToolUnavailable:
        pytest.skip("no Graphviz, cairosvg or matplotlib here")
    assert used in ("graphviz", "cairosvg", "matplotlib")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_without_any_tool_is_a_clear_error(graph_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "cairosvg", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "g.png"
    assert _run([str(graph_file), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kiln graph: {out}: a PNG needs Graphviz `dot`, cairosvg or matplotlib")
    assert err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    ("this is not a graph", "not a .kiln program nor kiln IR text: line 1"),
])
def test_bad_input_files_are_one_line_errors(tmp_path, capsys, content, problem):
    f = tmp_path / "in.txt"
    if content is not None:
        f.write_text(content)
    assert _run([str(f), "-o", str(tmp_path / "o.svg")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kiln graph: {f}: {problem}") and err.count("\n") == 1


def test_damaged_kiln_file_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "m.kiln"
    path.write_bytes(b"not a kiln file at all")
    assert _run([str(path), "-o", str(tmp_path / "m.svg")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kiln graph: {path}: not a readable exported program") and err.count("\n") == 1


def test_unknown_output_format(graph_file, tmp_path, capsys):
    assert _run([str(graph_file), "-o", str(tmp_path / "g.jpeg")]) == 2
    assert capsys.readouterr().err == f"kiln graph: {tmp_path / 'g.jpeg'}: unknown output format '.jpeg'; " \
                                      "use .svg, .png or .dot\n"


def test_cli_module_contract():
    assert graph_cli.__doc__.splitlines()[0].startswith("Draw a compiled graph's fusion plan")
