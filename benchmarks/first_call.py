"""`python -m benchmarks.first_call`: the first call of the MLP training step, in fresh processes.

The first call of a compiled step pays for tracing and compiling it. Each measurement
starts a new Python process, which imports the framework, builds the `mlp` workload's
model and data, and times the first call of the compiled step, then the second (the
steady state, for comparison). Each framework is measured twice per repeat, with its
on-disk compile cache in a fresh temporary directory:

- **cold**: the first process, the cache directory empty;
- **warm**: a second process with the same cache directory.

Frameworks and their caches: `kiln` — `kiln.compile[llvm]`, object code in `KILN_CACHE_DIR`
(tracing and the passes run in every process; only LLVM's work is cached); `jax` — `jax.jit`,
with JAX's persistent compilation cache in the directory (`JAX_COMPILATION_CACHE_DIR`,
minimum compile time and entry size 0, so every executable is stored); `torch.compile` —
inductor's caches in the directory (`TORCHINDUCTOR_CACHE_DIR`, `TRITON_CACHE_DIR`).
Prints a table of seconds (min / median over the repeats) and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(_HERE)
FRAMEWORKS = ["kiln", "jax", "torch.compile"]


def _cache_env(framework: str, cache_dir: str) -> dict[str, str]:
    """The variables that point `framework`'s on-disk compile cache at `cache_dir`."""
    if framework == "kiln":
        return {"KILN_CACHE": "1", "KILN_CACHE_DIR": cache_dir}
    if framework == "jax":
        return {"JAX_COMPILATION_CACHE_DIR": cache_dir, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    if framework == "torch.compile":
        return {"TORCHINDUCTOR_CACHE_DIR": cache_dir, "TRITON_CACHE_DIR": os.path.join(cache_dir, "triton")}
    raise ValueError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}")


def _files_in(directory: str) -> int:
    return sum(len(files) for _, _, files in os.walk(directory))


def child(framework: str) -> dict[str, Any]:
    """In this (fresh) process: import, build the mlp step, time its first and second call."""
    cache_dir = {"kiln": "KILN_CACHE_DIR", "jax": "JAX_COMPILATION_CACHE_DIR",
                 "torch.compile": "TORCHINDUCTOR_CACHE_DIR"}[framework]
    rec: dict[str, Any] = {"framework": framework, "cache_files_before": _files_in(os.environ[cache_dir])}
    t0 = time.perf_counter()
    if framework == "kiln":
        import kiln  # noqa: F401
        import kiln.nn  # noqa: F401
    elif framework == "jax":
        import jax  # noqa: F401
    else:
        import torch  # noqa: F401
    rec["import_s"] = time.perf_counter() - t0
    from .workloads import REGISTRY
    column = {"kiln": "kiln.compile[llvm]", "jax": "jax.jit", "torch.compile": "torch.compile"}[framework]
    t0 = time.perf_counter()
    prep = REGISTRY["mlp"].build(column, False)
    rec["setup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rec["loss"] = prep.loss_of(prep.step())
    rec["first_call_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prep.loss_of(prep.step())
    rec["second_call_s"] = time.perf_counter() - t0
    rec["cache_files_after"] = _files_in(os.environ[cache_dir])
    return rec


def _run_child(framework: str, cache_dir: str, timeout: float) -> dict[str, Any]:
    env = dict(os.environ, **_cache_env(framework, cache_dir))
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.first_call", "--child", framework], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"framework": framework, "status": "skipped", "reason": f"time box of {timeout:.0f}s exceeded"}
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = proc.stderr.strip()
        status = "skipped" if "Skip" in err or "is not installed" in err else "error"
        return {"framework": framework, "status": status,
                "reason": f"child exited with {proc.returncode}: {err[-400:]}"}
    return dict(json.loads(lines[-1]), status="ok", process_s=wall)


def measure(frameworks: list[str], repeats: int, timeout: float, log=print) -> list[dict[str, Any]]:
    """Cold and warm first-call records for each framework, `repeats` times each."""
    results = []
    for fw in frameworks:
        for r in range(repeats):
            cache_dir = tempfile.mkdtemp(prefix=f"kiln-first-call-{fw.replace('.', '-')}-")
            try:
                for cache in ("cold", "warm"):
                    log(f"  {fw:13s} {cache} #{r + 1} ...", end="", flush=True)
                    rec = dict(_run_child(fw, cache_dir, timeout), cache=cache, repeat=r)
                    log(f" {rec['status']}" + (f" (first call {rec['first_call_s']:.2f}s)" if rec["status"] == "ok"
                                               else f": {rec['reason'][-200:]}"))
                    results.append(rec)
                    if rec["status"] != "ok":
                        break
            finally:
                shutil.rmtree(cache_dir, ignore_errors=True)
            if results[-1]["status"] != "ok":
                break
    return results


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (framework, cold|warm): min and median of each time, in seconds."""
    rows = []
    for key in dict.fromkeys((r["framework"], r["cache"]) for r in results):
        recs = [r for r in results if (r["framework"], r["cache"]) == key]
        ok = [r for r in recs if r["status"] == "ok"]
        row: dict[str, Any] = {"framework": key[0], "cache": key[1], "runs": len(ok)}
        if not ok:
            row.update(status=recs[-1]["status"], reason=recs[-1].get("reason", ""))
        else:
            row["status"] = "ok"
            for f in ("import_s", "setup_s", "first_call_s", "second_call_s", "process_s"):
                vals = [r[f] for r in ok]
                row[f] = {"min": min(vals), "median": statistics.median(vals)}
            row["cache_files_before"] = ok[-1]["cache_files_before"]
            row["cache_files_after"] = ok[-1]["cache_files_after"]
        rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = ["framework", "cache", "first call s", "second call s", "import s", "setup s", "process s",
            "cache files", "runs"]
    out = []
    for r in rows:
        if r["status"] != "ok":
            out.append([r["framework"], r["cache"], f"{r['status']}: {r['reason'][-80:]}", "", "", "", "", "", "0"])
            continue
        out.append([r["framework"], r["cache"]]
                   + [f"{r[f]['min']:.3f} / {r[f]['median']:.3f}"
                      for f in ("first_call_s", "second_call_s", "import_s", "setup_s", "process_s")]
                   + [f"{r['cache_files_before']} -> {r['cache_files_after']}", str(r["runs"])])
    widths = [max(len(x) for x in col) for col in zip(head, *out)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in [head, ["-" * w for w in widths], *out]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.first_call", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS), help=f"comma-separated, of: {', '.join(FRAMEWORKS)}")
    ap.add_argument("--repeats", type=int, default=3, help="cold+warm process pairs per framework (default 3)")
    ap.add_argument("--timeout", type=float, default=300.0, help="wall-clock limit per process, seconds")
    ap.add_argument("--json", default=os.path.join(_HERE, "results", "first_call.json"),
                    help="where to write results ('-' for stdout only)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)), flush=True)
        return 0
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    bad = [f for f in frameworks if f not in FRAMEWORKS]
    if bad:
        ap.error(f"unknown framework(s) {bad}; known: {FRAMEWORKS}")
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    from .harness import _loadavg, machine_info
    load_before = _loadavg()
    results = measure(frameworks, args.repeats, args.timeout,
                      log=lambda *a, **k: print(*a, file=sys.stderr, **k))
    rows = summarize(results)
    m = dict(machine_info(), loadavg_before=load_before, loadavg_after=_loadavg())
    print("\nfirst call of the mlp training step (MLP 784-128-64-10, batch 64, SGD momentum), a fresh process "
          "each; seconds, min / median")
    print(f"machine: {m.get('cpu')} x{m.get('cpu_count')}, kiln @ {m.get('git_commit')}, torch {m.get('torch')}, "
          f"jax {m.get('jax')}; load average before/after {m['loadavg_before']} / {m['loadavg_after']}")
    print(format_rows(rows))
    report = {"suite": "kiln first call", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": m, "settings": {"repeats": args.repeats, "timeout": args.timeout},
              "summary": rows, "results": results}
    if args.json != "-":
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, args.json)
        print(f"\nwrote {args.json}")
    return 1 if any(r["status"] == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
