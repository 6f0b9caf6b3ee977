"""The pass manager: order, dumps, summary, verification between passes, fixpoint groups."""
import os

import pytest

from kiln import config
from kiln.ir import Graph, VerificationError
from kiln.passes import Pass, Pipeline, Repeat, cse, dce, default_pipeline, optimize
from kiln.passes.builder import GraphBuilder
from passes_helpers import ir

SRC = """
    graph f(%x: f32[4,8]) {
      %c: f32[] = constant() {dtype=f32, shape=(), value=1.0}
      %b: f32[4,8] = broadcast_to(%c) {shape=(4, 8)}
      %m: f32[4,8] = mul(%x, %b)
      %a: f32[4,8] = exp(%m)
      %a2: f32[4,8] = exp(%m)
      %s: f32[4,8] = add(%a, %a2)
      %dead: f32[4,8] = neg(%x)
      %r: f32[4,1] = reduce_sum(%s) {axes=(1,), keepdims=True}
      return (%r)
    }"""


def test_optimize_simplifies():
    assert str(optimize(ir(SRC))) == str(ir("""
        graph f(%x: f32[4,8]) {
          %a: f32[4,8] = exp(%x)
          %s: f32[4,8] = add(%a, %a)
          %r: f32[4,1] = reduce_sum(%s) {axes=(1,), keepdims=True}
          return (%r)
        }"""))


def test_optimize_is_identity_on_an_optimal_graph():
    g = optimize(ir(SRC))
    assert optimize(g) is g


def test_dumps_are_numbered_in_pipeline_order(tmp_path):
    report = default_pipeline().run_report(ir(SRC), dump_dir=str(tmp_path), start=2, prefix="f-")
    files = sorted(os.listdir(tmp_path))
    assert files[0] == "002-f-dce.txt" and files[1] == "003-f-cse.txt"
    assert [f.split("-", 2)[2] for f in files[-3:]] == ["fusion-plan.txt", "memory-plan.txt", "summary.txt"]
    assert report.next_index == 2 + len(files)
    names = [f[len("NNN-f-"):-4] for f in files[:-3]]
    assert names == [r.name for r in report.records]
    assert names[:6] == ["dce", "cse", "fold", "rewrite", "cse", "dce"]
    with open(tmp_path / files[-1]) as f:
        summary = f.read()
    assert "kernels: 1 (1 reduction)" in summary and "8 nodes in, 3 nodes out" in summary
    with open(tmp_path / files[-3]) as f:
        assert f.read().startswith("fusion plan for graph f: 3 nodes -> 1 kernels")
    with open(tmp_path / files[0]) as f:
        assert "%dead" not in f.read()  # the graph after dce


def test_kiln_dump_setting(tmp_path):
    with config.override(dump=str(tmp_path / "d")):
        optimize(ir(SRC))
    assert "001-dce.txt" in os.listdir(tmp_path / "d")


def test_no_dump_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with config.override(dump=None):
        optimize(ir(SRC))
    assert os.listdir(tmp_path) == []


def _broken(g: Graph) -> Graph:
    """A buggy pass: declares the wrong shape for a node."""
    b = GraphBuilder(g)
    for n in g.nodes:
        b.copy(n)
    out = b.finish()
    out.nodes[-1].shape = (1,) + out.nodes[-1].shape
    return out


def test_verify_between_passes_names_the_pass():
    p = Pipeline([Pass("dce", dce), Pass("broken", _broken), Pass("cse", cse)], plans=False)
    with pytest.raises(VerificationError, match="after pass 'broken'"):
        p.run(ir(SRC), verify=True)
    with config.override(verify=True), pytest.raises(VerificationError, match="after pass 'broken'"):
        p.run(ir(SRC))
    with config.override(verify=False):
        p.run(ir(SRC))  # unverified: the broken graph goes through


def test_pass_must_return_a_graph():
    with pytest.raises(TypeError, match="'oops' returned NoneType"):
        Pipeline([("oops", lambda g: None)]).run(ir(SRC))


def test_repeat_stops_at_fixpoint():
    calls = []

    def count(g):
        calls.append(1)
        return g

    report = Pipeline([Repeat((Pass("count", count), Pass("dce", dce)), max_iter=5)]).run_report(ir(SRC))
    assert len(calls) == 2  # round 1 changes (dce), round 2 does not
    assert [r.changed for r in report.records] == [False, True, False, False]


def test_input_graph_is_not_mutated():
    g = ir(SRC)
    text = str(g)
    optimize(g)
    assert str(g) == text


def test_dumped_graphs_parse_back(tmp_path):
    from kiln.ir import parse_graph
    report = default_pipeline().run_report(ir(SRC), dump_dir=str(tmp_path))
    dumps = sorted(f for f in os.listdir(tmp_path) if not f.endswith(("plan.txt", "summary.txt")))
    assert len(dumps) == len(report.records)
    with open(tmp_path / dumps[-1]) as f:
        assert parse_graph(f.read()) == report.graph


def test_command_line(tmp_path, capsys):
    from kiln.passes.__main__ import main
    src = tmp_path / "g.txt"
    src.write_text(str(ir(SRC)))
    assert main([str(src)]) == 0
    out = capsys.readouterr().out
    assert "fusion plan for graph f: 3 nodes -> 1 kernels" in out and "pipeline summary" in out
    assert "memory plan:" in out
