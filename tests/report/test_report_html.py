"""kiln report: a KILN_DUMP directory of a compiled MLP training step as one HTML page."""
import argparse
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from kiln.cli import report as report_cli
from kiln.report.html import read_dump, render_report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MLP_STEP = textwrap.dedent("""
    import kiln, kiln.nn as nn, kiln.nn.functional as F
    kiln.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 10))
    opt = kiln.optim.SGD(model.parameters(), lr=0.1)

    @kiln.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x, y = kiln.randn(16, 32), kiln.randint(0, 10, (16,))
    for _ in range(3):
        step(x, y)
""")


@pytest.fixture(scope="module")
def dump_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    env = dict(os.environ, PYTHONPATH=ROOT, KILN_DUMP=str(d / "dump"), KILN_PROFILE="1",
               KILN_CACHE_DIR=str(d / "cache"))
    r = subprocess.run([sys.executable, "-c", MLP_STEP], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return d / "dump"


def _run(argv):
    p = argparse.ArgumentParser(prog="kiln report")
    report_cli.add_arguments(p)
    return report_cli.run(p.parse_args(argv))


def test_report_has_every_stage_one_cluster_per_kernel_and_no_urls(dump_dir, tmp_path):
    out = tmp_path / "report.html"
    assert _run([str(dump_dir), "-o", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for fn in sorted(os.listdir(dump_dir)):
        assert fn in page, fn  # every numbered stage file
    # nothing fetched: no src/href to another place, no external stylesheet or script
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "<link" not in page and "<script src" not in page
    # the fusion plan picture: valid SVG with one cluster per kernel of the plan
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 1
    root = ET.fromstring(svgs[0])
    kernels = [e for e in root.iter("{http://www.w3.org/2000/svg}g") if e.get("class") == "kernel"]
    plan_file = next(f for f in sorted(os.listdir(dump_dir)) if f.endswith("-step-fusion-plan.txt"))
    n_kernels = int(re.search(r"-> (\d+) kernels", (dump_dir / plan_file).read_text()).group(1))
    assert len(kernels) == n_kernels > 4
    # pass timings, the kernels' code and the profile are there
    assert "<th class=\"l\">pass</th>" in page and ">dce<" in page
    assert page.count("<b>kernel IR</b>") == n_kernels and page.count("<b>LLVM IR</b>") == n_kernels
    assert "define internal i32 @&quot;kiln_step_k0&quot;" in page or "define internal i32 @\"kiln_step_k0\"" in page
    assert "<h3>Profile</h3>" in page and "program kiln_step  graph step  backend llvm" in page
    # each kernel's heading names what it is and, from the profile, its time and share
    assert re.search(r"<summary>kiln_step_k0 — k0 matmul\[16,24\]: matmul, [^<]* — [\d.]+ ms per call, "
                     r"[\d.]+% of the program</summary>", page)
    # the stage list does not repeat the kernels' code
    assert page.count("  # shown under Kernels") == n_kernels


def test_reference_backend_profile_goes_with_its_graph(tmp_path):
    code = "import kiln\nf = kiln.compile(lambda x: (x * 2).exp().sum())\nf(kiln.randn(4, 8))\n"
    env = dict(os.environ, PYTHONPATH=ROOT, KILN_DUMP=str(tmp_path / "d"), KILN_PROFILE="1",
               KILN_BACKEND="reference", KILN_CACHE_DIR=str(tmp_path / "c"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    page = render_report(read_dump(tmp_path / "d"))
    assert page.count("program lambda  graph lambda  backend reference") == 2  # the top table and the section


def test_dump_groups_are_in_pipeline_order(dump_dir):
    dump = read_dump(dump_dir)
    [g] = dump.groups
    stages = [f.stage for f in g.files]
    assert stages[0] == "traced" and stages.index("fusion-plan") < stages.index("summary") < stages.index("kernels")
    assert [f.index for f in g.files] == sorted(f.index for f in g.files)
    assert [f.stage for f in dump.process_files] == ["profile"]


def test_two_compiles_of_one_function_are_two_groups(tmp_path):
    code = textwrap.dedent("""
        import kiln
        f = kiln.compile(lambda x: (x * 2).exp().sum())
        f(kiln.randn(4, 8)); f(kiln.randn(3, 5))
    """)
    env = dict(os.environ, PYTHONPATH=ROOT, KILN_DUMP=str(tmp_path / "d"), KILN_CACHE_DIR=str(tmp_path / "c"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    dump = read_dump(tmp_path / "d")
    assert [g.name for g in dump.groups] == ["lambda", "lambda"]
    assert all(g.has("traced") and g.has("kernels") for g in dump.groups)
    page = render_report(dump)
    assert page.count('<section class="fn" id="fn-') == 2


def test_default_output_is_in_the_directory(dump_dir, tmp_path):
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(dump_dir, d)
    assert _run([str(d)]) == 0
    assert (d / "report.html").exists()


def test_bad_directories_are_one_line_errors(tmp_path, capsys):
    assert _run([str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err == f"kiln report: {tmp_path / 'missing'}: not a directory\n"
    (tmp_path / "empty").mkdir()
    assert _run([str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kiln report: {tmp_path / 'empty'}: no numbered dump files") and err.count("\n") == 1


def test_cli_module_contract():
    assert report_cli.__doc__.splitlines()[0].startswith("Turn a KILN_DUMP directory into")
