"""Compiled object code goes through the disk cache: a second process loads it instead of
compiling, a damaged entry is reported and rebuilt, and two processes may compile the same
program into one cache at once."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import warnings
    import kiln
    from kiln.runtime.backend import executable
    warnings.simplefilter("always")
    f = kiln.compile(lambda x: (x * 3).tanh().sum(dim=1))
    x = kiln.ones(4, 8)
    y = f(x)
    print(executable(f.graph_for(x)).from_cache, round(float(y.sum()), 4))
""")
ROOT = Path(__file__).resolve().parents[2]


def _run(cache_dir: Path, **extra_env) -> subprocess.CompletedProcess:
    env = {**os.environ, "KILN_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    env.pop("KILN_CACHE", None)
    env.update(extra_env)
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)


def _result(p: subprocess.CompletedProcess) -> tuple[str, str]:
    assert p.returncode == 0, p.stderr
    hit, value = p.stdout.split()
    return hit, value


def test_second_process_loads_object_code_from_cache(tmp_path):
    first = _result(_run(tmp_path))
    assert first[0] == "False"
    entries = list(tmp_path.glob("*.kobj"))
    assert len(entries) == 1
    second = _result(_run(tmp_path))
    assert second == ("True", first[1])


def test_cache_disabled_writes_nothing(tmp_path):
    assert _result(_run(tmp_path, KILN_CACHE="0"))[0] == "False"
    assert not list(tmp_path.glob("*.kobj"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_corrupted_entry_is_reported_and_rebuilt(tmp_path, damage):
    value = _result(_run(tmp_path))[1]
    (entry,) = tmp_path.glob("*.kobj")
    blob = bytearray(entry.read_bytes())
    if damage == "flip":
        blob[-10] ^= 0xFF
    elif damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob = bytearray(b"not an entry" * 10)
    entry.write_bytes(bytes(blob))
    p = _run(tmp_path)
    assert _result(p) == ("False", value)
    assert "KilnCacheWarning" in p.stderr and entry.name in p.stderr
    assert _result(_run(tmp_path)) == ("True", value)


def test_two_processes_compiling_at_once_share_one_valid_entry(tmp_path):
    env = {**os.environ, "KILN_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    values = {o.split()[1] for o, _ in outs}
    assert len(values) == 1
    assert len(list(tmp_path.glob("*.kobj"))) == 1
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".tmp-")]
    assert _result(_run(tmp_path))[0] == "True"
