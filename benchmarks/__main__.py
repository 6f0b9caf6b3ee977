"""`python -m benchmarks [--quick] [--only mlp,cnn] [--columns ...]`: print a table, write JSON.

Each workload's step is timed under numpy, kiln eager, kiln.compile on each backend
(llvm, reference), PyTorch eager, torch.compile and jax.jit, where the workload applies
(unavailable columns are skipped with the reason). Times are per step: min and median over
repeats; ratios divide by PyTorch eager's time and by the best peer's (the fastest of numpy,
torch eager, torch.compile, jax.jit) from the same run. Kernel workloads' results are checked
against numpy. Results go to benchmarks/results/latest.json (quick runs: quick.json).
First-call (trace + compile) times in fresh processes: `python -m benchmarks.first_call`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .harness import format_table, run_suite
from .workloads import COLUMNS, REGISTRY

QUICK_SKIPS = ("torch.compile", "jax.jit")  # their warm-up (seconds to minutes) is off in --quick runs
_HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, few repeats, no torch.compile or jax.jit column")
    ap.add_argument("--only", default=None, help=f"comma-separated workloads (of: {', '.join(REGISTRY)})")
    ap.add_argument("--columns", default=None, help=f"comma-separated columns (of: {', '.join(COLUMNS)})")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per cell (default 15; quick: 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; quick: 1)")
    ap.add_argument("--min-time", type=float, default=None,
                    help="seconds per repeat; fast steps are looped to reach it (default 0.05; quick: 0)")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="time budget per cell; fewer repeats for slow steps (default 60; quick: 10)")
    ap.add_argument("--compile-timeout", type=float, default=300.0,
                    help="wall-clock time box for the torch.compile column (warm-up + timing), seconds")
    ap.add_argument("--json", default=None, help="where to write results (default benchmarks/results/latest.json, "
                                                 "quick: quick.json; '-' for stdout only)")
    args = ap.parse_args(argv)

    workloads = list(REGISTRY) if not args.only else [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in REGISTRY]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; known: {list(REGISTRY)}")
    if args.columns:
        columns = [c.strip() for c in args.columns.split(",") if c.strip()]
        bad = [c for c in columns if c not in COLUMNS]
        if bad:
            ap.error(f"unknown column(s) {bad}; known: {COLUMNS}")
    else:
        columns = [c for c in COLUMNS if not (args.quick and c in QUICK_SKIPS)]
    q = args.quick
    report = run_suite(
        workloads, columns, quick=q,
        warmup=args.warmup if args.warmup is not None else (1 if q else 3),
        repeats=args.repeats if args.repeats is not None else (3 if q else 15),
        min_time=args.min_time if args.min_time is not None else (0.0 if q else 0.05),
        max_seconds=args.max_seconds if args.max_seconds is not None else (10.0 if q else 60.0),
        compile_timeout=args.compile_timeout,
        log=lambda *a, **k: print(*a, file=sys.stderr, **k))
    if q and args.columns is None:
        report["settings"]["note"] = "torch.compile and jax.jit skipped in --quick (pass --columns to include them)"
    print()
    for w in workloads:
        print(f"{w}: {REGISTRY[w].description}")
    m = report["machine"]
    print(f"machine: {m.get('cpu')} x{m.get('cpu_count')}, python {m['python']}, numpy {m['numpy']}, "
          f"torch {m.get('torch')} ({m.get('torch_threads')} threads), jax {m.get('jax')}, kiln {m['kiln']} @ "
          f"{m.get('git_commit')} ({m.get('kiln_native_threads')} native threads, {m.get('kiln_blas_threads')} BLAS); "
          f"load average before/after {m.get('loadavg_before')} / {m.get('loadavg_after')}")
    print(format_table(report["results"]))
    loads = [l[0] for l in (m.get("loadavg_before"), m.get("loadavg_after")) if l]
    if loads and m.get("cpu_count") and max(loads) > 0.5 * m["cpu_count"]:
        print(f"\nwarning: the machine was busy (1-min load average up to {max(loads):.1f} on {m['cpu_count']} "
              "cores): other processes share the CPU, so these timings (medians especially) are unreliable")
    path = args.json or os.path.join(_HERE, "results", "quick.json" if q else "latest.json")
    if path != "-":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, path)
        print(f"\nwrote {path}")
    return 1 if any(r.get("status") == "error" for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
