"""export -> save -> load in a fresh Python process that never imports the defining code -> the same outputs.

The child process gets only the .kiln file and .npy inputs; it imports kiln and numpy, runs the program
compiled on the default backend, and writes the outputs back for this process to compare.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.optim as optim
from kiln.runtime.backend import default_backend_name

sys.path.insert(0, os.path.dirname(__file__))
from example_models import MODELS, load_classes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import json, sys
import numpy as np
import kiln
from kiln.frontend.pytree import tree_flatten
path, out_path, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
prog = kiln.load_exported(path)
results = {}
for c, inputs in enumerate(calls):
    out = prog(*[np.load(p) for p in inputs])
    for k, leaf in enumerate(tree_flatten(out)[0]):
        results[f"call{c}_out{k}"] = leaf.numpy()
for name, arr in prog.state.items():
    results["state:" + name] = arr
np.savez(out_path, **results)
foreign = sorted(m for m in sys.modules if m.startswith(("example_", "test_", "tests")) or "example_models" in m)
assert not foreign, foreign
from kiln.runtime.backend import default_backend_name
print(default_backend_name())
"""


def _run_child(tmp_path, prog, calls):
    """Save `prog`, run it in a subprocess on each call's inputs; returns the child's results."""
    path = tmp_path / "prog.kiln"
    prog.save(path)
    files = []
    for c, inputs in enumerate(calls):
        names = []
        for k, arr in enumerate(inputs):
            p = tmp_path / f"in{c}_{k}.npy"
            np.save(p, arr)
            names.append(str(p))
        files.append(names)
    out = tmp_path / "out.npz"
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(out), json.dumps(files)], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == default_backend_name()  # llvm unless KILN_BACKEND says otherwise
    with np.load(out) as data:
        return dict(data)


@pytest.mark.parametrize("filename,cls,shape", MODELS, ids=[m[1] for m in MODELS])
def test_example_classifier_round_trip_in_a_fresh_process(tmp_path, filename, cls, shape):
    ns = load_classes(filename)
    kiln.manual_seed(11)
    model = ns[cls]().eval()
    prog = kiln.export(model, kiln.randn(4, *shape), dynamic_shapes=({0: kiln.Dim("batch")},))
    inputs = [kiln.randn(b, *shape) for b in (2, 4, 9)]
    got = _run_child(tmp_path, prog, [[x.numpy()] for x in inputs])
    with kiln.no_grad():
        for c, x in enumerate(inputs):
            np.testing.assert_allclose(got[f"call{c}_out0"], model(x).numpy(), rtol=1e-4, atol=1e-5)


def two_in_two_out(a, b):
    h = a @ b
    return h.relu().sum(dim=1), (h.sigmoid(), a.mean())


def test_two_inputs_two_outputs_round_trip(tmp_path):
    a, b = kiln.randn(5, 3), kiln.randn(3, 4)
    prog = kiln.export(two_in_two_out, a, b)
    got = _run_child(tmp_path, prog, [[a.numpy(), b.numpy()]])
    want = [two_in_two_out(a, b)[0], *two_in_two_out(a, b)[1]]
    for k, w in enumerate(want):
        np.testing.assert_allclose(got[f"call0_out{k}"], w.numpy(), rtol=1e-5, atol=1e-6)


def test_training_step_round_trip_continues_training(tmp_path):
    kiln.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1))
    opt = optim.Adam(model.parameters(), lr=0.05)

    def step(x, y):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    x, y = kiln.randn(8, 3), kiln.randn(8, 1)
    step(x, y)  # creates Adam's state, so the exported step updates it in place
    prog = kiln.export(step, x, y)
    got = _run_child(tmp_path, prog, [[x.numpy(), y.numpy()]] * 3)
    for c in range(3):
        assert float(got[f"call{c}_out0"]) == pytest.approx(step(x, y).item(), rel=1e-5)
    np.testing.assert_allclose(got["state:model.0.weight"], model[0].weight.detach().numpy(), rtol=1e-5, atol=1e-6)
