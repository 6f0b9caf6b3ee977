"""Check a fuzzed program in a subprocess, so a native crash (a segfault in generated code, an
abort) is reported as a failure of that program instead of killing the fuzzer.

The parent pickles (program, backends, variants) to the child's stdin; the child (a fresh
Python that imports this copy of kiln) runs `kiln.testing.fuzz.check_program`, printing a progress
line before each compiled call and the pickled outcome last. A child that dies or hangs is a
`crash` failure of the backend and call its last progress line named.
"""
from __future__ import annotations

import base64
import json
import pickle
import runpy
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from .program import Program

_PROGRESS = "kiln-isolate-progress "
_RESULT = "kiln-isolate-result "
TIMEOUT_S = 300.0


def check_isolated(prog: Program, backends: Sequence[str] | None = None, variants: Sequence[str] | None = None,
                   counts=None, setup: str | Path | None = None, timeout: float = TIMEOUT_S):
    """`kiln.testing.fuzz.check_program(prog, backends, variants)` in a subprocess that first runs
    the Python file `setup` (if given); adds the child's counts to `counts`. Raises `Invalid` as
    `check_program` does."""
    from .fuzz import Counts, Failure, Invalid, all_backends
    backends = list(backends) if backends is not None else all_backends()
    job = pickle.dumps((prog, backends, None if variants is None else list(variants),
                        None if setup is None else str(setup)))
    root = str(Path(__file__).resolve().parents[2])  # the directory holding this kiln package: the child imports it
    child = f"import sys; sys.path.insert(0, {root!r}); from kiln.testing.isolate import _child; sys.exit(_child())"
    try:
        proc = subprocess.run([sys.executable, "-c", child], input=job, capture_output=True, timeout=timeout)
        out, err, rc = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"), proc.returncode
        how = None
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        err, rc, how = "", None, f"did not finish in {timeout:g} s"
    at = ("first", backends[0] if backends else "?")
    for line in out.splitlines():
        if line.startswith(_PROGRESS):
            backend, call = json.loads(line[len(_PROGRESS):])
            at = (call, backend)
        elif line.startswith(_RESULT):
            kind, value, child_counts = pickle.loads(base64.b64decode(line[len(_RESULT):]))
            if counts is not None:
                counts.add(child_counts)
            if kind == "invalid":
                raise Invalid(value)
            return value
    if how is None:
        how = (f"was killed by {signal.Signals(-rc).name}" if rc is not None and rc < 0 and -rc in signal.valid_signals()
               else f"exited with status {rc}")
    tail = err.strip().splitlines()[-1] if err.strip() else "no error output"
    if counts is not None:
        counts.add(Counts(programs=1))
    return Failure(at[1], "crash", at[0], f"the process {how} during this call ({tail})")


def _child() -> int:
    from .fuzz import Counts, Invalid, check_program
    prog, backends, variants, setup = pickle.loads(sys.stdin.buffer.read())
    if setup is not None:
        runpy.run_path(setup)

    def progress(backend: str, call: str) -> None:
        print(_PROGRESS + json.dumps([backend, call]), flush=True)

    counts = Counts()
    try:
        outcome = ("failure", check_program(prog, backends, variants, counts=counts, progress=progress), counts)
    except Invalid as e:
        outcome = ("invalid", str(e), counts)
    print(_RESULT + base64.b64encode(pickle.dumps(outcome)).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
