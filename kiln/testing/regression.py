"""Write a failing (shrunk) program as a ready pytest regression test.

The file is the program's own source (`kiln.testing.program.render`: public kiln API only),
the calls that made it fail, and a test that runs them eagerly and compiled on the failing
backend and compares under `kiln.testing.tolerances`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .program import Program, render

_TEST = '''

BACKEND = {backend!r}
FAMILIES = {families!r}
CALLS = {calls}  # (specs, data seed, Module.training, must retrace)


def test_fuzz_{name}():
    """{doc}"""
    check_calls(program, CALLS, FAMILIES, BACKEND)
'''


def regression_source(prog: Program, failure) -> str:
    """The pytest file's text for `prog` failing with `failure` (a `kiln.testing.fuzz.Failure`)."""
    from .fuzz import calls_for
    variants = () if failure.call in ("first", "same") else (failure.call,)
    calls = [c for c in calls_for(prog, variants) if c.name in ("first", failure.call)]
    call_text = "[\n" + "".join(f"    ({[s.as_tuple() for s in c.specs]!r}, {c.seed}, {c.training}, {c.retraces}),\n"
                                for c in calls) + "]"
    name = hashlib.sha256(render(prog).encode()).hexdigest()[:10]
    doc = str(failure).replace('"""', "'''").replace("\\", "\\\\")
    header = (f'"""Written by kiln.testing.fuzz (shrunk from seed {prog.seed}): {doc}"""\n')
    body = render(prog)
    return header + body + _TEST.format(backend=failure.backend, families=tuple(sorted(prog.families)),
                                        calls=call_text, name=name, doc=doc.splitlines()[0][:200])


def write_regression(prog: Program, failure, out_dir: Path) -> Path:
    """Write the regression test for `prog` into `out_dir` (created if needed); its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = regression_source(prog, failure)
    name = hashlib.sha256(text.encode()).hexdigest()[:10]
    path = out_dir / f"test_fuzz_{failure.backend}_{failure.kind}_{name}.py"
    path.write_text(text)
    return path
