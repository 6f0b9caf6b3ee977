"""The examples in examples/ run as written (a subprocess, as a user would run them) and reach their goals.

Each example asserts its own result (convergence or accuracy), so a non-zero exit fails the test; the nn/optim/data
examples also run unchanged under PyTorch once their imports are swapped.
"""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

# example -> the optional packages it needs beyond kiln's dependencies (a missing one skips it; a broken kiln
# module is a failure, never a skip)
NEEDS = {
    "linear_regression.py": [],
    "binary_classifier.py": [],
    "mlp_classifier.py": [],
    "cnn.py": [],
    "lstm_classifier.py": [],
    "digits.py": ["sklearn"],
    "quickstart.py": [],
}
# quickstart.py shows kiln's own API (make_graph, compile); the others are PyTorch programs but for their imports
PYTORCH_PROGRAMS = sorted(set(NEEDS) - {"quickstart.py"})


def _missing(mods):
    return [m for m in mods if importlib.util.find_spec(m) is None]


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


@pytest.mark.parametrize("name", PYTORCH_PROGRAMS)
def test_example_is_a_pytorch_program(name, tmp_path):
    missing = _missing(["torch"] + NEEDS[name])
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    text = open(os.path.join(EXAMPLES, name)).read()
    for pattern, repl in _TORCH_IMPORTS:
        text = re.sub(pattern, repl, text, flags=re.M)
    assert not re.search(r"^\s*(import|from) kiln", text, flags=re.M), "the example imports kiln beyond the swap"
    script = tmp_path / name
    script.write_text(text)
    # one thread: PyTorch's intra-op pool only slows these small programs down on a machine with few, shared cores
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{name} under PyTorch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
