"""Regenerate the figures table of `docs/reliability.md` from runs, not by hand.

    python -m kiln.testing.report                       # fuzz 300 programs (seed 0), run the test tables, print
    python -m kiln.testing.report --write docs/reliability.md
    python -m kiln.testing.report --fuzz-json s.json --collect-only

The programs, calls and gradients come from a fuzz run it performs (`--n`, `--seed`) or from
the JSON a `python -m kiln.testing.fuzz --json FILE` run wrote (`--fuzz-json`). The gradient
checks and bad-input cases are the tests of `tests/reliability/test_gradcheck_table.py` and
`tests/reliability/test_bad_input_e2e.py`: run with pytest (passed and failing counted), or only
collected (`--collect-only`); a missing file shows as "not present". `--write FILE` replaces the
table between the `<!-- figures:begin -->` and `<!-- figures:end -->` lines of FILE, and the
tolerance table (from `kiln.testing.tolerances`, the one definition) between
`<!-- tolerances:begin -->` and `<!-- tolerances:end -->`.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[2]
GRADCHECK = "tests/reliability/test_gradcheck_table.py"
BAD_INPUT = "tests/reliability/test_bad_input_e2e.py"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"
TOL_BEGIN, TOL_END = "<!-- tolerances:begin -->", "<!-- tolerances:end -->"


@dataclass
class FileTests:
    """The tests of one file: collected, and (when run) passed and not passed."""

    path: str
    present: bool
    collected: int = 0
    passed: int | None = None
    failed: int | None = None  # failed + errors

    def cell(self) -> str:
        if not self.present:
            return "not present"
        if self.passed is None:
            return f"{self.collected} (collected, not run)"
        return f"{self.passed} passed, {self.failed} failing" + (
            f", {self.collected - self.passed - self.failed} skipped" if self.collected > self.passed + self.failed
            else "")


def _pytest(args: list[str], root: Path) -> subprocess.CompletedProcess:
    # addopts cleared so the output format is known; the import mode of pyproject.toml kept
    cmd = [sys.executable, "-m", "pytest", "-o", "addopts=", "--import-mode=importlib", "-p", "no:cacheprovider",
           "-q", *args]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True)


def count_tests(path: str, run: bool = True, root: Path = ROOT) -> FileTests:
    """Count the tests of `path` (relative to `root`) by collecting them with pytest; with
    `run`, run them and count passed and failing ones."""
    if not (root / path).is_file():
        return FileTests(path, False)
    proc = _pytest(["--collect-only", path], root)
    ids = [line for line in proc.stdout.splitlines() if "::" in line and not line.startswith(("ERROR", "FAILED"))]
    if proc.returncode not in (0, 5):
        raise RuntimeError(f"pytest could not collect {path}:\n{(proc.stdout + proc.stderr)[-2000:]}")
    fig = FileTests(path, True, len(ids))
    if run:
        proc = _pytest([path], root)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        got = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?)", summary)}
        fig.passed = got.get("passed", 0)
        fig.failed = got.get("failed", 0) + got.get("error", 0) + got.get("errors", 0)
    return fig


def fuzz_figures(n: int, seed: int, fuzz_json: str | Path | None = None) -> dict:
    """The counts of a fuzz run: read from `fuzz_json`, or from fuzzing `n` programs of `seed` now."""
    if fuzz_json is not None:
        return json.loads(Path(fuzz_json).read_text())
    from .fuzz import fuzz
    res = fuzz(n, seed, shrink=False)
    c = res.counts
    return {"command": f"python -m kiln.testing.fuzz --n {n} --seed {seed}", "programs": c.programs,
            "calls": c.calls, "gradients": c.gradients, "values": c.values, "variants": c.variants,
            "failures": len(res.failures), "backends": res.backends, "seconds": round(res.seconds, 1)}


def table(fz: dict, gradcheck: FileTests, bad_input: FileTests) -> str:
    """The figures table (markdown)."""
    variants = ", ".join(f"{k} {v}" for k, v in sorted(fz["variants"].items()))
    cmd = f"`{fz['command']}`"
    rows = [
        ("programs fuzzed", f"{fz['programs']}, {fz['failures']} failing",
         f"random programs run eagerly and compiled on {', '.join(fz['backends'])}", cmd),
        ("compiled calls compared with eager", f"{fz['calls']}, {fz['failures']} failing",
         f"calls of a compiled program (first, same signature, one variant: {variants}); "
         f"{fz['values']} output and argument arrays compared", cmd),
        ("gradients compared with eager", str(fz["gradients"]),
         "gradient arrays of a scalar loss, compiled backward vs eager backward", cmd),
        ("gradient checks (finite differences)", gradcheck.cell(),
         "tests of the float64 finite-difference table (primitives, nn layers and losses, optimizers)",
         f"`python -m pytest {gradcheck.path}`"),
        ("bad-input cases", bad_input.cell(),
         "tests feeding wrong shapes, dtypes, argument counts, indices, files; each expects a clear error",
         f"`python -m pytest {bad_input.path}`"),
    ]
    lines = ["| what | count | what it counts | command |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


def tolerance_table() -> str:
    """The forward tolerances of `kiln.testing.tolerances.TOLERANCES` per op family and float
    dtype (markdown; gradients get `GRAD_FACTOR` times these)."""
    from .tolerances import FAMILIES, FLOAT_DTYPES, TOLERANCES
    lines = ["| family | " + " | ".join(FLOAT_DTYPES) + " |", "|---" * (len(FLOAT_DTYPES) + 1) + "|"]
    for fam in FAMILIES:
        cells = []
        for dtype in FLOAT_DTYPES:
            t = TOLERANCES[(fam, dtype)]
            cells.append("0" if t.rtol == t.atol == 0 else f"rtol {t.rtol:g}, atol {t.atol:g}")
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def replace_table(text: str, new_table: str, name: str = "the file", begin: str = BEGIN, end: str = END) -> str:
    """`text` with the lines between the `begin` and `end` markers replaced by `new_table`."""
    if begin not in text or end not in text or text.index(begin) > text.index(end):
        raise ValueError(f"{name} has no '{begin}' ... '{end}' block to replace")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{new_table}{end}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kiln.testing.report", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="programs to fuzz when no --fuzz-json is given (default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of that fuzz run (default 0)")
    p.add_argument("--fuzz-json", help="read the fuzz counts from this file (python -m kiln.testing.fuzz --json)")
    p.add_argument("--collect-only", action="store_true", help="count the table tests without running them")
    p.add_argument("--write", help="replace the figures block of this markdown file (e.g. docs/reliability.md)")
    a = p.parse_args(argv)
    fz = fuzz_figures(a.n, a.seed, a.fuzz_json)
    text = table(fz, count_tests(GRADCHECK, not a.collect_only), count_tests(BAD_INPUT, not a.collect_only))
    if a.write:
        path = Path(a.write)
        doc = replace_table(path.read_text(), text, str(path))
        path.write_text(replace_table(doc, tolerance_table(), str(path), TOL_BEGIN, TOL_END))
        print(f"wrote the figures and tolerance tables to {path}")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
