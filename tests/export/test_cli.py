"""The `kiln` command line: the dispatcher, `kiln inspect` and `kiln run`, their help and their one-line errors."""
import os
import subprocess
import sys
import tomllib

import numpy as np
import pytest

import kiln
import kiln.nn as nn
from kiln.cli import SUBCOMMANDS, main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pair(a, b):
    return a + b, (a * b).sum(dim=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    kiln.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    kiln.export(model, kiln.randn(2, 4), dynamic_shapes=({0: kiln.Dim("batch")},)).save(d / "model.kiln")
    kiln.export(pair, kiln.randn(3, 2), kiln.randn(3, 2)).save(d / "pair.kiln")
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.save(d / "x.npy", x)
    np.save(d / "a.npy", x[:3, :2].copy())
    np.save(d / "b.npy", x[:3, 2:].copy())
    (d / "notes.txt").write_text("hello")
    return d, model, x


def _main(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_inspect_prints_signature_dims_kernels_weights_and_ir(files, capsys):
    d, model, _ = files
    rc, out, err = _main(capsys, "inspect", d / "model.kiln")
    assert rc == 0 and err == ""
    assert "signature: Sequential(input: float32[batch, 4]) -> (output0: float32[batch, 3])" in out
    assert "dynamic dims: batch in [1, inf] (exported at 2)" in out
    assert "module mode: eval (frozen)" in out
    kernels = int(out.split("kernels: ")[1].split()[0])
    assert kernels >= 1
    assert "weights: 2 tensors, 15 values, 60 bytes" in out
    assert "0.weight" in out and "float32[3, 4]" in out
    assert "graph Sequential(%input: f32[2,4], %0.weight: f32[3,4], %0.bias: f32[3])" in out
    rc, out, _ = _main(capsys, "inspect", "--no-ir", d / "model.kiln")
    assert rc == 0 and "graph Sequential" not in out


def test_run_writes_one_npy_and_the_values_match(files, capsys, tmp_path):
    d, model, x = files
    rc, out, err = _main(capsys, "run", d / "model.kiln", "--input", d / "x.npy", "-o", tmp_path / "y.npy")
    assert rc == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model(kiln.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    rc, out, _ = _main(capsys, "run", d / "model.kiln", "-i", d / "x.npy")
    assert rc == 0 and out.startswith("output0: float32[5, 3]")


def test_run_with_several_outputs_writes_an_npz_or_a_list(files, capsys, tmp_path):
    d, _, x = files
    a, b = x[:3, :2], x[:3, 2:]
    rc, _, err = _main(capsys, "run", d / "pair.kiln", "-i", d / "a.npy", "-i", d / "b.npy", "-o", tmp_path / "o.npz")
    assert rc == 0, err
    with np.load(tmp_path / "o.npz") as z:
        assert sorted(z) == ["output0", "output1"]
        np.testing.assert_allclose(z["output0"], a + b, rtol=1e-6)
        np.testing.assert_allclose(z["output1"], (a * b).sum(axis=1), rtol=1e-5)
    rc, _, err = _main(capsys, "run", d / "pair.kiln", "-i", d / "a.npy", "-i", d / "b.npy",
                       "-o", tmp_path / "s.npy", "-o", tmp_path / "p.npy")
    assert rc == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), (a * b).sum(axis=1), rtol=1e-5)
    rc, _, err = _main(capsys, "run", d / "pair.kiln", "-i", d / "a.npy", "-i", d / "b.npy", "-o", tmp_path / "s.npy")
    assert rc == 1 and err == "kiln run: the program has 2 outputs (output0, output1); give one -o per output, " \
                              "or a single .npz\n"


@pytest.mark.parametrize("argv,message", [
    (["inspect", "{d}/notes.txt"], "kiln inspect: {d}/notes.txt: not a .kiln file (bad magic)"),
    (["inspect", "{d}/nothere.kiln"], "kiln inspect: {d}/nothere.kiln: no such file"),
    (["run", "{d}/notes.txt", "-i", "{d}/x.npy"], "kiln run: {d}/notes.txt: not a .kiln file (bad magic)"),
    (["run", "{d}/model.kiln"], "kiln run: {d}/model.kiln: the program takes 1 tensor inputs (input: "
                                "float32[batch, 4]); got 0 --input files"),
    (["run", "{d}/model.kiln", "-i", "{d}/nothere.npy"], "kiln run: {d}/nothere.npy: no such input file"),
    (["run", "{d}/model.kiln", "-i", "{d}/notes.txt"], "kiln run: {d}/notes.txt: not a .npy array file "),
    (["run", "{d}/model.kiln", "-i", "{d}/a.npy"], "kiln run: {d}/model.kiln: Sequential: argument 'input', "
                                                   "axis 1 must have size 4, got 2 (shape (3, 2))"),
    (["run", "{d}/model.kiln", "-i", "{d}/x.npy", "-o", "{d}/no/dir/y.npy"],
     "kiln run: {d}/no/dir/y.npy: cannot write the output (No such file or directory)"),
])
def test_errors_are_one_line_naming_the_file(files, capsys, argv, message):
    d = files[0]
    rc, out, err = _main(capsys, *[a.format(d=d) for a in argv])
    assert rc == 1 and out == ""
    assert err.startswith(message.format(d=d)) and err.count("\n") == 1, err


def test_dispatcher_table_help_and_missing_subcommands(capsys):
    assert [n for n, _ in SUBCOMMANDS] == ["inspect", "run", "graph", "report"]
    rc, out, _ = _main(capsys, "--help")
    assert rc == 0 and all(n in out for n, _ in SUBCOMMANDS)
    for name in ("inspect", "run"):
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert f"usage: kiln {name}" in capsys.readouterr().out
    rc, out, err = _main(capsys)
    assert rc == 2 and out == "" and err.startswith("usage: kiln")
    rc, _, err = _main(capsys, "frobnicate")
    assert rc == 2 and err.startswith("kiln: unknown command 'frobnicate'; commands: inspect, run, graph, report")
    for name in ("graph", "report"):  # written by another engineer; absent here they say so
        if os.path.exists(os.path.join(ROOT, "kiln", "cli", f"{name}.py")):
            continue
        rc, _, err = _main(capsys, name, "x.kiln")
        assert rc == 1 and err == f"kiln {name}: this kiln has no '{name}' command installed " \
                                  f"(module kiln.cli.{name} is missing)\n"


def test_python_dash_m_kiln_and_the_console_script(files):
    d = files[0]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "kiln", "inspect", "--no-ir", str(d / "model.kiln")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "signature: Sequential(" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "kiln", "inspect", str(d / "notes.txt")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and proc.stderr == f"kiln inspect: {d}/notes.txt: not a .kiln file (bad magic)\n"
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        assert tomllib.load(f)["project"]["scripts"]["kiln"] == "kiln.cli:main"


def test_run_save_state_writes_the_updated_training_state(capsys, tmp_path):
    import kiln.optim as optim
    kiln.manual_seed(4)
    net = nn.Linear(3, 1)
    opt = optim.SGD(net.parameters(), lr=0.1)

    def step(x, y):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    x, y = kiln.randn(4, 3), kiln.randn(4, 1)
    prog = kiln.export(step, x, y)
    prog.save(tmp_path / "step.kiln")
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", y.numpy())
    rc, _, err = _main(capsys, "run", tmp_path / "step.kiln", "-i", tmp_path / "x.npy", "-i", tmp_path / "y.npy",
                       "-o", tmp_path / "loss.npy", "--save-state", tmp_path / "step2.kiln")
    assert rc == 0, err
    loss, want_state = prog.apply(prog.state, x, y)
    assert float(np.load(tmp_path / "loss.npy")) == pytest.approx(loss.item(), rel=1e-6)
    after = kiln.load_exported(tmp_path / "step2.kiln")
    assert not np.array_equal(after.state["net.weight"], prog.state["net.weight"])
    np.testing.assert_allclose(after.state["net.weight"], want_state["net.weight"], rtol=1e-6)


def test_a_subcommand_may_let_export_format_errors_through(capsys, monkeypatch, tmp_path):
    import types
    mod = types.ModuleType("kiln.cli.graph")
    mod.add_arguments = lambda parser: parser.add_argument("file")
    mod.run = lambda args: kiln.load_exported(args.file) and 0
    monkeypatch.setitem(sys.modules, "kiln.cli.graph", mod)
    (tmp_path / "m.kiln").write_bytes(b"nonsense")
    rc, out, err = _main(capsys, "graph", tmp_path / "m.kiln")
    assert rc == 1 and err == f"kiln graph: {tmp_path}/m.kiln: not a .kiln file (bad magic)\n"
