"""The nn/optim/data examples in examples/ run as written (a subprocess, as a user would run it) and reaches its goal.

Each example asserts its own result (convergence or accuracy), so a non-zero exit fails the test.
"""
import importlib.util
import os
import re
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


_TORCH_IMPORTS = [
    (r"^import kiln as torch$", "import torch"),
    (r"^import kiln\.nn as nn$", "import torch.nn as nn"),
    (r"^import kiln\.nn\.functional as F$", "import torch.nn.functional as F"),
    (r"^import kiln\.optim as optim$", "import torch.optim as optim"),
    (r"^from kiln\.utils\.data import", "from torch.utils.data import"),
]


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_example_is_a_pytorch_program(name, tmp_path):
    missing = _missing(["torch"] + [m for m in NEEDS[name] if not m.startswith("kiln")])
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    text = open(os.path.join(EXAMPLES, name)).read()
    for pattern, repl in _TORCH_IMPORTS:
        text = re.sub(pattern, repl, text, flags=re.M)
    assert not re.search(r"^\s*(import|from) kiln", text, flags=re.M), "the example imports kiln beyond the swap"
    script = tmp_path / name
    script.write_text(text)
    proc = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{name} under PyTorch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
