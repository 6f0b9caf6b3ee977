"""The benchmark suite runs end to end in `--quick` mode and reports well-formed, checked results
(no timing assertions: speed is measured in benchmarks/, never asserted)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import harness  # noqa: E402
from benchmarks.kernels import allclose_check  # noqa: E402
from benchmarks.registry import COLUMNS, REGISTRY, Prepared, register  # noqa: E402

KERNEL_WORKLOADS = ["gelu", "copy", "softmax", "layernorm", "dispatch"]


def _run_quick(tmp_path, only: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", only, "--repeats", "2",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


def test_quick_mlp_benchmark_runs(tmp_path):
    proc, report = _run_quick(tmp_path, "mlp")
    assert "min ms" in proc.stdout and "mlp" in proc.stdout
    assert {"machine", "results", "settings", "timestamp", "headline"} <= set(report)
    by_column = {r["column"]: r for r in report["results"]}
    # torch.compile and jax.jit are off in --quick; numpy does not apply to a training step
    assert set(by_column) == {"kiln eager", "kiln.compile[llvm]", "kiln.compile[reference]", "torch eager"}
    for col, r in by_column.items():
        assert r["workload"] == "mlp"
        if r["status"] == "skipped":  # e.g. PyTorch not installed
            assert r["reason"]
            continue
        assert r["status"] == "ok", r
        assert len(r["times_ms"]) == r["repeats"] and r["min_ms"] <= r["median_ms"]
    if by_column["torch eager"]["status"] == "ok" and by_column["kiln eager"]["status"] == "ok":
        # same weights and data: the first training step's loss agrees with PyTorch's
        for col in ("kiln eager", "kiln.compile[llvm]", "kiln.compile[reference]"):
            assert by_column[col]["first_loss_rel_diff_vs_torch"] < 1e-4, col
        assert "ratio_vs_torch_eager" in by_column["kiln eager"]
        assert by_column["kiln.compile[llvm]"]["ratio_vs_best_peer"]["peer"] == "torch eager"


def test_quick_kernel_workloads_run_and_are_checked(tmp_path):
    proc, report = _run_quick(tmp_path, ",".join(KERNEL_WORKLOADS))
    rows = {(r["workload"], r["column"]): r for r in report["results"]}
    assert {w for w, _ in rows} == set(KERNEL_WORKLOADS)
    assert {c for w, c in rows if w == "copy"} == {"numpy"}  # the memory floor is numpy only
    for (w, c), r in rows.items():
        if r["status"] == "skipped":
            assert r["reason"] and c.startswith("torch"), r
            continue
        assert r["status"] == "ok", r
        assert r["checked_against_numpy"] is True
        assert ("gb_per_s" in r) == (w != "dispatch")
        assert r["ratio_vs_best_peer"]["peer"] in ("numpy", "torch eager")
    heads = {h["workload"]: h for h in report["headline"]}
    assert set(heads) == set(KERNEL_WORKLOADS) - {"copy"}
    assert all(h["status"] == "ok" and h["min"] > 0 for h in heads.values())
    assert "kiln.compile[llvm] / best peer" in proc.stdout


def test_wrong_result_fails_the_cell():
    x = np.arange(4, dtype=np.float32)
    name = "_test_wrong_result"
    register(name, "returns x + 1 where x was expected", columns=["numpy"])(
        lambda column, quick: Prepared(step=lambda: x + 1, loss_of=lambda r: float(r.sum()), check=allclose_check(x, 1e-6, 0.0)))
    try:
        rec = harness.measure(name, "numpy", quick=True, warmup=1, repeats=2, min_time=0.0, max_seconds=1.0)
    finally:
        del REGISTRY[name]
    assert rec["status"] == "error"
    assert "wrong result: 4 of 4 elements" in rec["reason"] and "flat index" in rec["reason"]


def test_allclose_check_names_dtype_and_shape():
    check = allclose_check(np.zeros((2, 3)), 1e-6, 0.0)
    check(np.zeros((2, 3), np.float32))
    with pytest.raises(AssertionError, match=r"float64\[2, 3\], expected float32\[2, 3\]"):
        check(np.zeros((2, 3)))
    with pytest.raises(AssertionError, match=r"expected float32\[2, 3\]"):
        check(np.zeros((3,), np.float32))


def test_register_rejects_an_unknown_column():
    with pytest.raises(ValueError, match="unknown column"):
        register("_bad", "x", columns=["kiln.compile"])
    assert "kiln.compile[llvm]" in COLUMNS


def test_unknown_workload_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nope", "--json", "-"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown workload" in proc.stderr


def test_first_call_cold_then_warm_kiln(tmp_path):
    out = tmp_path / "first_call.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.first_call", "--frameworks", "kiln", "--repeats", "1",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    cold, warm = report["results"]
    assert (cold["cache"], warm["cache"]) == ("cold", "warm")
    assert cold["status"] == warm["status"] == "ok", report["results"]
    # the cold process starts from an empty cache directory and fills it; the warm one finds it filled
    assert cold["cache_files_before"] == 0 < cold["cache_files_after"] == warm["cache_files_before"]
    assert cold["first_call_s"] > 0 and warm["first_call_s"] > 0
    assert cold["loss"] == warm["loss"]  # the same step, compiled or loaded from the cache
    assert [r["cache"] for r in report["summary"]] == ["cold", "warm"]
    assert "first call s" in proc.stdout


def test_first_call_rejects_an_unknown_framework():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.first_call", "--frameworks", "tf", "--json", "-"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown framework" in proc.stderr


def test_profile_of_a_quick_softmax():
    from benchmarks.profile import profile_workload, vector_facts, vector_table
    prof, prep = profile_workload("softmax", repeats=2, quick=True)
    [p] = prof.programs
    assert p.calls == 2 and p.kernels and all(k.calls == 2 for k in p.kernels)
    assert any("reduction" in k.label for k in p.kernels)
    assert p.kernel_ns <= p.wall_ns
    assert "vec-instr" in vector_table(prep)
    facts = vector_facts("define void @f() {\n  %a = fadd <8 x float> %x, %y\n  call void @llvm.x(<4 x float> %a)\n}")
    assert facts == {"max_float_lanes": 8, "vector_instructions": 1, "calls": ["llvm.x"]}


def test_profile_command_prints_the_table():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.profile", "softmax", "--quick", "--repeats", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("softmax (kiln.compile[llvm], 2 steps):\nkiln profile\nprogram ")


def test_profile_rejects_a_workload_without_a_compiled_step():
    from benchmarks.profile import profile_workload
    with pytest.raises(ValueError, match="no kiln.compile\\[llvm\\] column"):
        profile_workload("copy", repeats=1, quick=True)
