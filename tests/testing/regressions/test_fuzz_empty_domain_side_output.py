"""Seed 3, program 15 of `python -m kiln.testing.fuzz --n 30 --seed 3 --profile full`, shrunk by
hand: in-process it corrupted the heap (`free(): invalid next size (fast)`). The flip's gather
kernel has the zero-size domain [5, 0, 1] and writes the flip's index (i64[0], saved for the
backward) as a side output; it was stored as out0[i1] for i1 in 0..5, 40 bytes into a 0-byte
buffer. Under KILN_VERIFY (set by tests/conftest.py) the store-bounds check raises on that
kernel instead of letting it run; the subprocess test checks the native run itself."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kiln
from kiln.testing.prelude import run

SPECS = [((5, 1, 0), "float32", "contiguous", True, "grid", None),
         ((5, 0, 1), "float32", "contiguous", True, "grid", None)]


def program(v0, v1):
    return (kiln.bmm(v0, v1), v1.flip(1))


def test_zero_size_domain_side_output_matches_eager():
    fn = kiln.compile(program, backend="llvm")
    for seed in range(3):
        got, want = run(fn, SPECS, seed), run(program, SPECS, seed)
        for g, w in zip(got["output"], want["output"]):
            assert g.shape == w.shape and (g == w).all()


REPRO = f"""
import kiln
from kiln.testing.prelude import run
fn = kiln.compile(lambda v0, v1: (kiln.bmm(v0, v1), v1.flip(1)), backend="llvm")
for seed in range(20):
    run(fn, {SPECS!r}, seed)
"""


def test_repeated_native_runs_leave_the_heap_intact():
    # glibc checks every free (MALLOC_CHECK_=3): the 40-byte overwrite aborted this process
    env = dict(os.environ, MALLOC_CHECK_="3", MALLOC_PERTURB_="165", KILN_VERIFY="0")
    res = subprocess.run([sys.executable, "-c", REPRO], env=env, capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[3])  # the repository's kiln
    assert res.returncode == 0, f"exit status {res.returncode}: {res.stderr[-2000:]}"
