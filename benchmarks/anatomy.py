"""`python -m benchmarks.anatomy gelu softmax ...`: where a kiln.compile[llvm] step spends its time.

For each workload's `kiln.compile[llvm]` step this prints, per native kernel of each
compiled program (forward, backward):

- what it was lowered from (the plan's kernel kind and domain) and its parallel loops;
- its time: program prefixes (the first k kernel calls, on the step's own inputs) are
  built and timed, and each kernel's time is the difference of consecutive prefixes
  (min over `--repeats`), so indices and data are the real ones;
- GB/s over the bytes of its buffer parameters (each read or written once);
- the widest float vector in its optimized LLVM IR (`llvm-opt`), how many vector
  instructions, and the functions it calls (a scalar libm call blocks vectorizing); when
  LLVM inlined the kernel into the program's entry, these are the entry's (marked `*`);
- the threads the program runs on.

It reads kiln's compiled program and rebuilds prefixes of it; it changes nothing in kiln.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

import numpy as np

from .workloads import REGISTRY

COLUMN = "kiln.compile[llvm]"
_VEC = re.compile(r"<(\d+) x (float|double|i32|i64|i8|i1)>")
_CALL = re.compile(r"call [^@]*@([\w.$]+)\(")


def _functions(llvm_text: str) -> dict[str, str]:
    """Function name -> body text, from (optimized) LLVM IR."""
    out, name, lines = {}, None, []
    for line in llvm_text.splitlines():
        if line.startswith("define "):
            m = re.search(r"@([\w.$]+)\(", line)
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


def _time(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def program_anatomy(ex, inputs: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """Per-kernel time (prefix differences), GB/s, vector facts and schedule of one LLVMExecutable."""
    from kiln.codegen.lower import LoweredProgram
    from kiln.runtime.llvm_backend import build_program
    from kiln.runtime.native_pool import native_threads

    prog = ex.program
    kernels = {k.name: k for k in prog.kernels}
    funcs = _functions(ex.stages("llvm-opt"))
    total = _time(lambda: ex.run(inputs), repeats)
    prev, rows = 0.0, []
    for k, (kname, args) in enumerate(prog.calls, start=1):
        if k < len(prog.calls):
            used = [c[0] for c in prog.calls[:k]]
            sub = LoweredProgram(f"{prog.name}_prefix{k}", [kernels[n] for n in dict.fromkeys(used)],
                                 list(prog.buffers), prog.calls[:k], list(prog.inputs), list(prog.outputs),
                                 list(prog.checks))
            sub_ex = build_program(sub)
            t = _time(lambda: sub_ex.run(inputs), repeats)
        else:
            t = total
        kern = kernels[kname]
        nbytes = sum(p.numel * p.dtype.np_dtype.itemsize for p in kern.params)
        parallel = [v for v, ls in kern.schedule.loops.items() if ls.parallel]
        delta = t - prev  # <= 0: below the timing noise of the prefixes
        rows.append({"kernel": kname, "source": kern.source.splitlines()[0] if kern.source else "",
                     "ms": max(delta, 0.0) * 1e3, "bytes": nbytes,
                     "gb_per_s": nbytes / delta / 1e9 if delta > 0 else None, "parallel_loops": len(parallel),
                     # O3 may inline kernels into the program's entry: then the facts are the entry's
                     "inlined": kname not in funcs,
                     **vector_facts(funcs.get(kname) or funcs.get(prog.name, ""))})
        prev = t
    return {"program": prog.name, "total_ms": total * 1e3, "kernels": rows,
            "threads": native_threads() if ex.parallel else 1}


def anatomy(workload: str, repeats: int, quick: bool = False) -> list[dict[str, Any]]:
    """Every compiled program of `workload`'s kiln.compile[llvm] step, kernel by kernel."""
    w = REGISTRY[workload]
    if COLUMN not in w.columns:
        raise ValueError(f"workload {workload!r} has no {COLUMN} column")
    prep = w.build(COLUMN, quick)
    if prep.lower is None:
        raise ValueError(f"workload {workload!r} does not expose its compiled step (Prepared.lower)")
    prep.step()
    lowered = prep.lower()
    out = []
    graphs = lowered._graphs()
    for g, ex in zip(graphs, lowered._executables()):
        inputs = _graph_inputs(lowered, g, ex)
        if inputs is None:
            out.append({"program": ex.program.name, "skipped": "inputs of this graph are not reachable here"})
            continue
        out.append(program_anatomy(ex, inputs, repeats))
    return out


def _graph_inputs(lowered, graph, ex) -> list[np.ndarray] | None:
    """Arrays to run `graph`'s program on: the step's arguments and captured tensors (forward graphs);
    zeros of the right shape and dtype otherwise (the backward graph; timing only)."""
    entry = lowered._entry
    from kiln.frontend.tensor import Tensor
    from kiln.frontend.pytree import tree_flatten
    leaves, _ = tree_flatten((lowered._args, lowered._kwargs))
    arrays = [t._cell.value for t in leaves if isinstance(t, Tensor)] + [t._cell.value for t in entry.captured_now()]
    specs = [ex._specs[k] for k in ex._inputs]
    if len(arrays) == len(specs) and all(a.shape == s[0] and a.dtype == s[1] for a, s in zip(arrays, specs)):
        return arrays
    return [np.zeros(shape, dtype) for shape, dtype in specs]


def format_anatomy(workload: str, programs: list[dict[str, Any]]) -> str:
    lines = [f"{workload} ({COLUMN}):"]
    for p in programs:
        if "skipped" in p:
            lines.append(f"  program {p['program']}: skipped ({p['skipped']})")
            continue
        lines.append(f"  program {p['program']}: {p['total_ms']:.3f} ms per call, {len(p['kernels'])} kernels, "
                     f"{p['threads']} thread(s)" + ("  (* inlined into the entry: vector facts are the "
                                                    "whole program's)" if any(r["inlined"] for r in p["kernels"])
                                                   else ""))
        for r in p["kernels"]:
            calls = ", ".join(r["calls"]) or "-"
            gbs = f"{r['gb_per_s']:7.2f}" if r["gb_per_s"] is not None else "      -"
            lines.append(f"    {r['kernel']:24s} {r['ms']:9.3f} ms  {gbs} GB/s  "
                         f"lanes {r['max_float_lanes']:2d}{'*' if r['inlined'] else ' '} "
                         f"vec-instr {r['vector_instructions']:4d}  "
                         f"parallel {r['parallel_loops']}  calls {calls}  [{r['source'][:60]}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.anatomy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="+", help=f"of: {', '.join(w for w in REGISTRY if COLUMN in REGISTRY[w].columns)}")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per program prefix (min is kept)")
    ap.add_argument("--quick", action="store_true", help="the workloads' small (smoke) sizes")
    args = ap.parse_args(argv)
    unknown = [w for w in args.workloads if w not in REGISTRY]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; known: {list(REGISTRY)}")
    for w in args.workloads:
        print(format_anatomy(w, anatomy(w, args.repeats, args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
