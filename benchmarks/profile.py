"""`python -m benchmarks.profile mlp softmax ...`: where a kiln.compile[llvm] step spends its time.

For each workload, its `kiln.compile[llvm]` step is built and run once (tracing and compiling),
then run `--repeats` times under `kiln.profiler()`, and the profiler's table is printed: per
compiled program (forward, backward, or the whole training step), one row per kernel, named
after its fusion-plan kernel, with calls, total and mean time, GFLOP/s, GB/s and its share of
the program's time (docs/profiling.md). `--vector` adds, per kernel, the widest float vector
and the vector instruction count in its optimized LLVM IR (`llvm-opt`) and the functions it
calls (a scalar libm call blocks vectorizing); when LLVM inlined the kernel into the program's
entry, these are the entry's (marked `*`).
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from .workloads import REGISTRY

COLUMN = "kiln.compile[llvm]"
_VEC = re.compile(r"<(\d+) x (float|double|i32|i64|i8|i1)>")
_CALL = re.compile(r"call [^@]*@\"?([\w.$]+)\"?\(")


def _functions(llvm_text: str) -> dict[str, str]:
    """Function name -> body text, from (optimized) LLVM IR."""
    out, name, lines = {}, None, []
    for line in llvm_text.splitlines():
        if line.startswith("define "):
            m = re.search(r"@\"?([\w.$]+)\"?\(", line)
            name, lines = (m.group(1) if m else "?"), [line]
        elif name is not None:
            lines.append(line)
            if line.startswith("}"):
                out[name] = "\n".join(lines)
                name = None
    return out


def vector_facts(body: str) -> dict[str, Any]:
    """Widest float vector, vector instruction count and called functions of one LLVM function."""
    widths = [int(n) for n, t in _VEC.findall(body) if t in ("float", "double")]
    vector_lines = sum(1 for ln in body.splitlines() if _VEC.search(ln) and "=" in ln)
    calls = sorted({c for c in _CALL.findall(body) if not c.startswith("llvm.lifetime")})
    return {"max_float_lanes": max(widths, default=1), "vector_instructions": vector_lines, "calls": calls}


def profile_workload(workload: str, repeats: int, quick: bool = False):
    """(the kiln.Profile of `repeats` steps of `workload`'s kiln.compile[llvm] column, its Prepared)."""
    import kiln
    w = REGISTRY.get(workload)
    if w is None:
        raise ValueError(f"unknown workload {workload!r}; known: {', '.join(REGISTRY)}")
    if COLUMN not in w.columns:
        raise ValueError(f"workload {workload!r} has no {COLUMN} column")
    prep = w.build(COLUMN, quick)
    prep.step()  # trace and compile outside the profile
    with kiln.profiler() as prof:
        for _ in range(repeats):
            prep.step()
    return prof, prep


def vector_table(prep) -> str:
    """Per kernel of each compiled program of the step: float lanes, vector instructions, calls."""
    if prep.lower is None:
        return "  (this workload does not expose its compiled step: no vector facts)"
    lines = []
    for ex in prep.lower()._executables():
        funcs = _functions(ex.stages("llvm-opt"))
        lines.append(f"  program {ex.program.name}: lanes / vector instructions / calls of each kernel "
                     "(* inlined into the entry: the whole program's)")
        for kname, _ in ex.program.calls:
            inlined = kname not in funcs
            f = vector_facts(funcs.get(kname) or funcs.get(ex.program.name, ""))
            f["calls"] = [c for c in f["calls"] if not c.startswith(ex.program.name + "_")]  # its own kernels
            lines.append(f"    {kname:28s} lanes {f['max_float_lanes']:2d}{'*' if inlined else ' '} "
                         f"vec-instr {f['vector_instructions']:5d}  calls {', '.join(f['calls']) or '-'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="+",
                    help=f"of: {', '.join(w for w in REGISTRY if COLUMN in REGISTRY[w].columns)}")
    ap.add_argument("--repeats", type=int, default=10, help="profiled steps (after one untimed step)")
    ap.add_argument("--quick", action="store_true", help="the workloads' small (smoke) sizes")
    ap.add_argument("--vector", action="store_true", help="also each kernel's vector width and calls (llvm-opt)")
    args = ap.parse_args(argv)
    unknown = [w for w in args.workloads if w not in REGISTRY]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; known: {list(REGISTRY)}")
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    for w in args.workloads:
        prof, prep = profile_workload(w, args.repeats, args.quick)
        print(f"{w} ({COLUMN}, {args.repeats} steps):")
        print(prof.table())
        if args.vector:
            print(vector_table(prep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
