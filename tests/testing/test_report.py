"""`python -m kiln.testing.report`: the figures table of docs/reliability.md from a fuzz run's
counts and the tests of the gradient-check and bad-input files (collected or run)."""
import json
from pathlib import Path

import pytest

from kiln.testing import report

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"

_TESTS = '''
import pytest


@pytest.mark.parametrize("k", range(3))
def test_ok(k):
    assert k < 3


def test_bad():
    assert 1 + 1 == 3
'''


def _fuzz_json(tmp_path, **over):
    counts = {"command": "python -m kiln.testing.fuzz --n 2 --seed 1", "programs": 2, "calls": 6, "gradients": 4,
              "values": 9, "variants": {"shape": 1, "alias": 1}, "failures": 0, "backends": ["reference", "llvm"],
              "seconds": 1.0, **over}
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(counts))
    return path


def test_counts_collected_and_run_tests(tmp_path):
    (tmp_path / "test_table.py").write_text(_TESTS)
    collected = report.count_tests("test_table.py", run=False, root=tmp_path)
    assert (collected.present, collected.collected, collected.passed) == (True, 4, None)
    assert collected.cell() == "4 (collected, not run)"
    ran = report.count_tests("test_table.py", run=True, root=tmp_path)
    assert (ran.passed, ran.failed) == (3, 1)
    assert ran.cell() == "3 passed, 1 failing"
    missing = report.count_tests("tests/reliability/nope.py", root=tmp_path)
    assert missing.cell() == "not present"


def test_table_from_a_fuzz_json(tmp_path):
    fz = report.fuzz_figures(0, 0, _fuzz_json(tmp_path, failures=1))
    text = report.table(fz, report.FileTests("g.py", False), report.FileTests("b.py", True, 5, 5, 0))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()[2:]}
    assert "| 2, 1 failing |" in rows["programs fuzzed"] and "reference, llvm" in rows["programs fuzzed"]
    assert "| 4 |" in rows["gradients compared with eager"]
    assert "not present" in rows["gradient checks (finite differences)"]
    assert "5 passed, 0 failing" in rows["bad-input cases"]


def test_write_replaces_only_the_figures_block(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"# title\n\n{report.TOL_BEGIN}\nold tolerances\n{report.TOL_END}\n\n"
                   f"{report.BEGIN}\nold table\n{report.END}\n\nafter\n")
    assert report.main(["--fuzz-json", str(_fuzz_json(tmp_path)), "--collect-only", "--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith(f"# title\n\n{report.TOL_BEGIN}\n{report.tolerance_table()}{report.TOL_END}\n\n")
    block = text.split(report.BEGIN, 1)[1].split(report.END, 1)[0]
    assert block.startswith("\n| what | count | what it counts | command |\n") and len(block.splitlines()) == 8
    assert text.endswith(report.END + "\n\nafter\n")
    assert "old table" not in text and "old tolerances" not in text and "| 2, 0 failing |" in text
    with pytest.raises(ValueError, match="no '<!-- figures:begin -->'"):
        report.replace_table("no markers", "t")


def test_the_doc_has_a_generated_table():
    text = DOC.read_text()
    assert report.BEGIN in text and report.END in text
    block = text.split(report.BEGIN, 1)[1].split(report.END, 1)[0]
    assert block.lstrip().startswith("| what | count | what it counts | command |")


def test_the_doc_tolerance_table_is_the_one_definition():
    text = DOC.read_text()
    block = text.split(report.TOL_BEGIN, 1)[1].split(report.TOL_END, 1)[0]
    assert block == "\n" + report.tolerance_table(), "run: python -m kiln.testing.report --write docs/reliability.md"
