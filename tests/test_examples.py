"""The nn/optim/data examples in examples/ run as written (a subprocess, as a user would run it) and reaches its goal.

Each example asserts its own result (convergence or accuracy), so a non-zero exit fails the test.
"""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

# example -> modules it needs beyond kiln's core
NEEDS = {
    "linear_regression.py": ["kiln.optim"],
    "binary_classifier.py": ["kiln.optim"],
    "mlp_classifier.py": ["kiln.optim", "kiln.utils.data"],
    "cnn.py": ["kiln.optim", "kiln.utils.data"],
    "lstm_classifier.py": ["kiln.optim", "kiln.utils.data"],
    "digits.py": ["kiln.optim", "kiln.utils.data", "sklearn"],
}


def _missing(mods):
    out = []
    for m in mods:
        try:
            if importlib.util.find_spec(m) is None:
                out.append(m)
        except ModuleNotFoundError:
            out.append(m)
    return out


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_example_runs(name):
    missing = _missing(NEEDS[name])
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)}")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{name} printed nothing"
