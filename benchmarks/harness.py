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

from .workloads import COLUMNS, PEERS, REGISTRY, SUBPROCESS_COLUMNS, Skip

BASELINE = "torch eager"
HEADLINE = "kiln.compile[llvm]"  # the column whose ratio to the best peer each workload reports


def measure(workload: str, column: str, *, quick: bool, warmup: int, repeats: int, min_time: float,
            max_seconds: float) -> dict[str, Any]:
    """Time one (workload, column) in this process; returns a result record (status ok/skipped/error)."""
    rec: dict[str, Any] = {"workload": workload, "column": column}
    try:
        t0 = time.perf_counter()
        prep = REGISTRY[workload].build(column, quick)
        rec["setup_ms"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        first = prep.step()
        rec["first_call_ms"] = (time.perf_counter() - t0) * 1e3
        rec["first_loss"] = prep.loss_of(first)
        if prep.check is not None:
            try:
                prep.check(first)
            except AssertionError as e:  # a wrong result fails the cell: its timing would mean nothing
                rec.update(status="error", reason=f"{e}")
                return rec
            rec["checked_against_numpy"] = True
        del first
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
        if prep.bytes_moved:
            rec["bytes_moved"] = prep.bytes_moved
            rec["gb_per_s"] = prep.bytes_moved / (rec["min_ms"] * 1e-3) / 1e9  # at the min time
        if prep.flops:
            rec["flops"] = prep.flops
            rec["gflop_per_s"] = {"max": prep.flops / (rec["min_ms"] * 1e6),
                                  "median": prep.flops / (rec["median_ms"] * 1e6)}
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
    info["kiln_blas_threads"] = kiln.get_num_threads()
    try:
        from kiln.runtime.llvm_backend import host_description
        from kiln.runtime.native_pool import native_threads
        info["kiln_native_threads"] = native_threads()
        info["llvm_target"] = host_description()
    except Exception as e:  # the native backend is optional for the table
        info["llvm_target"] = f"unavailable: {type(e).__name__}: {e}"
    try:
        import jax
        info["jax"] = jax.__version__
    except ImportError:
        info["jax"] = None
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
    """Per row, same workload, same run: ratio to torch eager's time, and to the best peer's (the
    fastest non-kiln column by median); >1 = slower. Also the first loss's difference from torch's."""
    base = {r["workload"]: r for r in results if r["column"] == BASELINE and r.get("status") == "ok"}
    best: dict[str, dict[str, Any]] = {}
    for r in results:
        if r["column"] in PEERS and r.get("status") == "ok":
            b = best.get(r["workload"])
            if b is None or r["median_ms"] < b["median_ms"]:
                best[r["workload"]] = r
    for r in results:
        if r.get("status") != "ok":
            continue
        b = base.get(r["workload"])
        if b is not None:
            r["ratio_vs_torch_eager"] = {"min": r["min_ms"] / b["min_ms"], "median": r["median_ms"] / b["median_ms"]}
            if "first_loss" in r and "first_loss" in b and math.isfinite(b["first_loss"]) and b["first_loss"] != 0:
                r["first_loss_rel_diff_vs_torch"] = abs(r["first_loss"] - b["first_loss"]) / abs(b["first_loss"])
        p = best.get(r["workload"])
        if p is not None:
            r["ratio_vs_best_peer"] = {"peer": p["column"], "min": r["min_ms"] / p["min_ms"],
                                       "median": r["median_ms"] / p["median_ms"]}


def headline(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per workload: kiln.compile[llvm]'s time against the best peer's (None where either is missing)."""
    out = []
    for w in dict.fromkeys(r["workload"] for r in results):
        r = next((r for r in results if r["workload"] == w and r["column"] == HEADLINE), None)
        if r is None:
            continue
        ratio = r.get("ratio_vs_best_peer") if r.get("status") == "ok" else None
        out.append({"workload": w, "peer": ratio["peer"] if ratio else None,
                    "min": ratio["min"] if ratio else None, "median": ratio["median"] if ratio else None,
                    "status": r.get("status")})
    return out


def _ms(x: float) -> str:
    return f"{x:.4f}" if x < 0.1 else f"{x:.2f}" if x < 1000 else f"{x:.0f}"


def format_table(results: list[dict[str, Any]]) -> str:
    head = ["workload", "column", "min ms", "median ms", "GB/s", "x torch eager (min/med)",
            "x best peer (min/med)", "first call ms", "note"]
    rows = []
    for r in results:
        if r.get("status") == "ok":
            ratio, peer = r.get("ratio_vs_torch_eager"), r.get("ratio_vs_best_peer")
            rows.append([r["workload"], r["column"], _ms(r["min_ms"]), _ms(r["median_ms"]),
                         f"{r['gb_per_s']:.1f}" if "gb_per_s" in r else "-",
                         f"{ratio['min']:.2f} / {ratio['median']:.2f}" if ratio else "-",
                         f"{peer['min']:.2f} / {peer['median']:.2f}" if peer else "-",
                         f"{r['first_call_ms']:.0f}", f"{r['repeats']}x{r['steps_per_repeat']} steps"
                         + (f"; {r['gflop_per_s']['max']:.0f} / {r['gflop_per_s']['median']:.0f} GFLOP/s (max/med)"
                            if "gflop_per_s" in r else "")])
        else:
            rows.append([r["workload"], r["column"], "-", "-", "-", "-", "-", "-",
                         f"{r.get('status')}: {r.get('reason', '')}"[:110]])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    widths[-1] = min(widths[-1], 110)

    def fmt(row):
        return "  ".join(str(c).ljust(w) if i in (0, 1, 8) else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))
    lines = [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    heads = headline(results)
    if heads:
        lines += ["", f"{HEADLINE} / best peer (min / median):"]
        for h in heads:
            lines.append(f"  {h['workload']:10s} " + (f"{h['min']:.2f} / {h['median']:.2f}  (best peer: {h['peer']})"
                                                       if h["min"] is not None else f"- ({h['status']})"))
    return "\n".join(lines)


def run_suite(workloads: list[str], columns: list[str], *, quick: bool, warmup: int, repeats: int, min_time: float,
              max_seconds: float, compile_timeout: float, log=print) -> dict[str, Any]:
    kw = dict(quick=quick, warmup=warmup, repeats=repeats, min_time=min_time, max_seconds=max_seconds)
    load_before = _loadavg()
    results = []
    for w in workloads:
        for c in COLUMNS:
            if c not in columns or c not in REGISTRY[w].columns:
                continue
            log(f"  {w:9s} {c:23s} ...", end="", flush=True)
            t0 = time.perf_counter()
            if c in SUBPROCESS_COLUMNS:
                rec = measure_in_subprocess(w, c, timeout=compile_timeout, **kw)
            else:
                rec = measure(w, c, **kw)
            log(f" {rec['status']} ({time.perf_counter() - t0:.1f}s)")
            results.append(rec)
    add_ratios(results)
    return {"suite": "kiln benchmarks", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": dict(machine_info(), loadavg_before=load_before, loadavg_after=_loadavg()),
            "settings": dict(kw, compile_timeout=compile_timeout),
            "workloads": {w: REGISTRY[w].description for w in workloads}, "results": results,
            "headline": headline(results)}
