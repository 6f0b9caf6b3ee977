"""`python -m benchmarks --quick --only mlp` runs end to end and writes its JSON (no timing assertions)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_mlp_benchmark_runs(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "mlp", "--repeats", "2",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "min ms" in proc.stdout and "mlp" in proc.stdout
    report = json.loads(out.read_text())
    assert {"machine", "results", "settings", "timestamp"} <= set(report)
    by_column = {r["column"]: r for r in report["results"]}
    assert set(by_column) == {"kiln eager", "kiln.compile", "torch eager"}  # torch.compile is off in --quick
    for col, r in by_column.items():
        assert r["workload"] == "mlp"
        if r["status"] == "skipped":  # e.g. PyTorch not installed
            assert r["reason"]
            continue
        assert r["status"] == "ok", r
        assert len(r["times_ms"]) == r["repeats"] and r["min_ms"] <= r["median_ms"]
    if by_column["torch eager"]["status"] == "ok" and by_column["kiln eager"]["status"] == "ok":
        # same weights and data: the first training step's loss agrees with PyTorch's
        assert by_column["kiln eager"]["first_loss_rel_diff_vs_torch"] < 1e-4
        assert by_column["kiln.compile"]["first_loss_rel_diff_vs_torch"] < 1e-4
        assert "ratio_vs_torch_eager" in by_column["kiln eager"]


def test_unknown_workload_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nope", "--json", "-"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown workload" in proc.stderr
