"""Timing and reporting: measure each (workload, column), print a table, write JSON."""
from __future__ import annotations

import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import traceback
from typing import Any

from .workloads import COLUMNS, REGISTRY, Skip

BASELINE = "torch eager"


def measure(workload: str, column: str, *, quick: bool, warmup: int, repeats: int, min_time: float,
            max_seconds: float) -> dict[str, Any]:
    """Time one (workload, column) in this process; returns a result record (status ok/skipped/error)."""
    rec: dict[str, Any] = {"workload": workload, "column": column}
    try:
        t0 = time.perf_counter()
        prep = REGISTRY[workload].build(column, quick)
        rec["setup_ms"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        rec["first_loss"] = prep.loss_of(prep.step())
        rec["first_call_ms"] = (time.perf_counter() - t0) * 1e3
        for _ in range(max(warmup - 1, 0)):
            prep.step()
        t0 = time.perf_counter()
        prep.step()
        one = time.perf_counter() - t0
        number = max(1, int(min_time / one)) if one > 0 else 1
        reps = max(2, min(repeats, int(max_seconds / max(one * number, 1e-9))))
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(number):
                prep.step()
            times.append((time.perf_counter() - t0) / number * 1e3)
        rec.update(status="ok", times_ms=times, min_ms=min(times), median_ms=statistics.median(times),
                   steps_per_repeat=number, repeats=reps, notes=prep.notes)
    except Skip as e:
        rec.update(status="skipped", reason=str(e))
    except Exception as e:  # report, don't abort the whole suite
        rec.update(status="error", reason=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc(limit=6))
    return rec


def measure_in_subprocess(workload: str, column: str, *, timeout: float, **kw) -> dict[str, Any]:
    """Run `measure` in a child process with a wall-clock limit (for torch.compile's long warm-up)."""
    args = [sys.executable, "-m", "benchmarks.worker", workload, column, json.dumps(kw)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Own session, so a timeout also ends the compiler's helper processes (the whole group).
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        return {"workload": workload, "column": column, "status": "skipped",
                "reason": f"time box of {timeout:.0f}s exceeded (warm-up + timing); raise --compile-timeout"}
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"workload": workload, "column": column, "status": "error",
                "reason": f"worker exited with {proc.returncode}: {stderr.strip()[-500:]}"}
    return json.loads(lines[-1])


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_count": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        info["cpu"] = platform.processor()
    import numpy
    info["numpy"] = numpy.__version__
    import kiln
    info["kiln"] = kiln.__version__
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                            cwd=root, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine inflates medians (mins are more robust)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def add_ratios(results: list[dict[str, Any]]) -> None:
    """ratio = column time / torch eager time, same workload, same run (>1: slower than PyTorch eager)."""
    base = {r["workload"]: r for r in results if r["column"] == BASELINE and r.get("status") == "ok"}
    for r in results:
        b = base.get(r["workload"])
        if r.get("status") != "ok" or b is None:
            continue
        r["ratio_vs_torch_eager"] = {"min": r["min_ms"] / b["min_ms"], "median": r["median_ms"] / b["median_ms"]}
        if "first_loss" in r and "first_loss" in b and math.isfinite(b["first_loss"]) and b["first_loss"] != 0:
            r["first_loss_rel_diff_vs_torch"] = abs(r["first_loss"] - b["first_loss"]) / abs(b["first_loss"])


def format_table(results: list[dict[str, Any]]) -> str:
    head = ["workload", "column", "min ms", "median ms", "x torch eager (min/med)", "first call ms", "note"]
    rows = []
    for r in results:
        if r.get("status") == "ok":
            ratio = r.get("ratio_vs_torch_eager")
            rows.append([r["workload"], r["column"], f"{r['min_ms']:.2f}", f"{r['median_ms']:.2f}",
                         f"{ratio['min']:.2f} / {ratio['median']:.2f}" if ratio else "-",
                         f"{r['first_call_ms']:.0f}", f"{r['repeats']}x{r['steps_per_repeat']} steps"])
        else:
            rows.append([r["workload"], r["column"], "-", "-", "-", "-",
                         f"{r.get('status')}: {r.get('reason', '')}"[:110]])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    widths[-1] = min(widths[-1], 110)

    def fmt(row):
        return "  ".join(str(c).ljust(w) if i in (0, 1, 6) else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))
    lines = [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    return "\n".join(lines)


def run_suite(workloads: list[str], columns: list[str], *, quick: bool, warmup: int, repeats: int, min_time: float,
              max_seconds: float, compile_timeout: float, log=print) -> dict[str, Any]:
    kw = dict(quick=quick, warmup=warmup, repeats=repeats, min_time=min_time, max_seconds=max_seconds)
    load_before = _loadavg()
    results = []
    for w in workloads:
        for c in COLUMNS:
            if c not in columns:
                continue
            log(f"  {w:6s} {c:14s} ...", end="", flush=True)
            t0 = time.perf_counter()
            if c == "torch.compile":
                rec = measure_in_subprocess(w, c, timeout=compile_timeout, **kw)
            else:
                rec = measure(w, c, **kw)
            log(f" {rec['status']} ({time.perf_counter() - t0:.1f}s)")
            results.append(rec)
    add_ratios(results)
    return {"suite": "kiln benchmarks", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": dict(machine_info(), loadavg_before=load_before, loadavg_after=_loadavg()),
            "settings": dict(kw, compile_timeout=compile_timeout),
            "workloads": {w: REGISTRY[w].description for w in workloads}, "results": results}
