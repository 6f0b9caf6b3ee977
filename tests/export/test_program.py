"""kiln.export: the ExportedProgram's graph, state, signature, metadata, calling and its errors."""
import os
import sys

import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.nn.functional as F
import kiln.optim as optim
from kiln.export import DynamicShapeError, ExportedProgram

sys.path.insert(0, os.path.dirname(__file__))
from example_models import MODELS, load_classes  # noqa: E402


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 5)
        self.fc2 = nn.Linear(5, 3)
        self.register_buffer("scale", kiln.tensor([1.0, 2.0, 3.0]))

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x))) * self.scale


def _np(t):
    return t.detach().numpy()


def two_in_two_out(a, b):
    s = (a @ b).tanh()
    return {"sum": s.sum(dim=1), "pair": (s * 2.0, b.t())}


def test_module_export_graph_state_and_signature():
    kiln.manual_seed(0)
    m = Small().eval()
    x = kiln.randn(4, 6)
    prog = kiln.export(m, x)
    assert isinstance(prog, ExportedProgram) and isinstance(prog, kiln.ExportedProgram)
    assert list(prog.state) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "scale"]
    assert [n.name for n in prog.graph.inputs] == ["x"] + list(prog.state)
    for name, node in zip(prog.state, prog.graph.inputs[1:]):
        assert prog.state[name].shape == node.shape
    np.testing.assert_array_equal(prog.state["fc1.weight"], _np(m.fc1.weight))
    # parameters are stored once, by name: no constant node holds the weights
    assert all(n.attrs.get("shape") != (5, 6) for n in prog.graph.nodes if n.op == "constant")
    assert [(s.name, s.shape, s.dtype) for s in prog.input_specs] == [("x", (4, 6), kiln.float32)]
    assert [(s.name, s.shape, s.dtype) for s in prog.output_specs] == [("output0", (4, 3), kiln.float32)]
    meta = prog.metadata
    assert meta["kiln_version"] == kiln.__version__ and meta["format_version"] == kiln.export.FORMAT_VERSION
    assert meta["frozen"] is True and meta["training"] is False
    assert {"what": "Small.training", "value": "False"} in meta["specialized_on"]
    assert meta["python_values"]["fc1.in_features"] == "6" and meta["python_values"]["fc2.out_features"] == "3"
    np.testing.assert_allclose(_np(prog(x)), _np(m(x)), rtol=1e-5, atol=1e-6)


def test_eval_module_is_frozen_at_export():
    m = Small().eval()
    x = kiln.randn(2, 6)
    prog = kiln.export(m, x)
    before = _np(m(x))
    with kiln.no_grad():
        m.fc2.bias.add_(10.0)
    np.testing.assert_allclose(_np(prog(x)), before, rtol=1e-5, atol=1e-6)


def test_function_with_two_inputs_and_two_outputs_keeps_its_pytrees():
    a, b = kiln.randn(3, 4), kiln.randn(4, 5)
    prog = kiln.export(two_in_two_out, a, b)
    out = prog(a, b)
    want = two_in_two_out(a, b)
    assert set(out) == {"sum", "pair"} and isinstance(out["pair"], tuple)
    np.testing.assert_allclose(_np(out["sum"]), _np(want["sum"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(out["pair"][0]), _np(want["pair"][0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_np(out["pair"][1]), _np(want["pair"][1]))
    assert [s.name for s in prog.input_specs] == ["a", "b"]
    assert len(prog.output_specs) == 3 and prog.state == {}
    # numpy arrays are accepted as inputs too
    np.testing.assert_allclose(_np(prog(a.numpy(), b.numpy())["sum"]), _np(want["sum"]), rtol=1e-5, atol=1e-6)


def test_python_scalars_are_recorded_and_checked():
    def scaled(x, factor):
        return x * factor
    x = kiln.randn(3)
    prog = kiln.export(scaled, x, 2.5)
    assert prog.input_specs[0].name == "x" and prog.metadata["input_tree"]["items"][0]["items"][1] == {
        "kind": "value", "value": 2.5}
    np.testing.assert_allclose(_np(prog(x, 2.5)), _np(x) * 2.5, rtol=1e-6)
    with pytest.raises(ValueError, match=r"args\[1\] was 2.5 when the program was exported.*got 3.0"):
        prog(x, 3.0)


OFFSET = 0.25


def test_python_globals_a_function_reads_are_recorded():
    prog = kiln.export(lambda x: x + OFFSET, kiln.randn(2))
    assert prog.metadata["python_values"] == {"OFFSET": "0.25"}


def test_bad_arguments_name_the_argument_axis_and_sizes():
    prog = kiln.export(two_in_two_out, kiln.randn(3, 4), kiln.randn(4, 5))
    with pytest.raises(ValueError, match=r"argument 'b', axis 1 must have size 5, got 6"):
        prog(kiln.randn(3, 4), kiln.randn(4, 6))
    with pytest.raises(ValueError, match=r"argument 'a' must have 2 dims \(3, 4\), got 3"):
        prog(kiln.randn(3, 4, 1), kiln.randn(4, 5))
    with pytest.raises(TypeError, match=r"argument 'a' must be float32, got float64"):
        prog(kiln.randn(3, 4, dtype=kiln.float64), kiln.randn(4, 5))
    with pytest.raises(TypeError, match=r"expected arguments structured as \(args, kwargs\) = \(\(T, T\), \{\}\)"
                                        r".*got \(\(T,\), \{\}\)"):
        prog(kiln.randn(3, 4))
    with pytest.raises(TypeError, match=r"got \(\(\[\[1.0\]\], T\), \{\}\)"):
        prog([[1.0]], kiln.randn(4, 5))


@pytest.mark.parametrize("filename,cls,shape", MODELS, ids=[m[1] for m in MODELS])
def test_dynamic_batch_runs_at_three_sizes(filename, cls, shape):
    ns = load_classes(filename)
    kiln.manual_seed(1)
    model = ns[cls]().eval()
    batch = kiln.Dim("batch")
    prog = kiln.export(model, kiln.randn(4, *shape), dynamic_shapes=({0: batch},))
    assert prog.input_specs[0].shape == ("batch",) + shape
    assert prog.output_specs[0].shape[0] == "batch"
    for b in (1, 5, 11):
        x = kiln.randn(b, *shape)
        with kiln.no_grad():
            want = model(x).numpy()
        got = prog(x)
        assert got.shape == (b,) + want.shape[1:]
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)
        g = prog.instantiate(batch=b)
        assert g.inputs[0].shape == (b,) + shape and prog.instantiate(batch=b) is g  # cached
    with pytest.raises(ValueError, match=rf"argument 'x' must have {len(shape) + 1} dims"):
        prog(kiln.randn(*shape))
    bad = (3,) + shape[:-1] + (shape[-1] + 1,)
    with pytest.raises(ValueError, match=rf"argument 'x', axis {len(shape)} must have size {shape[-1]}, "
                                         rf"got {shape[-1] + 1}"):
        prog(kiln.randn(*bad))


def test_dynamic_shapes_by_parameter_name_and_shared_dims():
    def f(x, y):
        return x + y, (x * y).sum(dim=0)
    b = kiln.Dim("b", max=16)
    prog = kiln.export(f, kiln.randn(3, 2), kiln.randn(3, 2), dynamic_shapes={"x": {0: b}, "y": {0: b}})
    for n in (2, 7, 16):
        x, y = kiln.randn(n, 2), kiln.randn(n, 2)
        s, p = prog(x, y)
        np.testing.assert_allclose(s.numpy(), (x + y).numpy(), rtol=1e-6)
        np.testing.assert_allclose(p.numpy(), (x * y).sum(dim=0).numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match=r"argument 'y', axis 0 has size 5, but dim 'b' is 4"):
        prog(kiln.randn(4, 2), kiln.randn(5, 2))
    with pytest.raises(ValueError, match=r"size 17 of dynamic dim 'b' is outside its range \[1, 16\]"):
        prog(kiln.randn(17, 2), kiln.randn(17, 2))
    with pytest.raises(TypeError, match=r"give every dynamic dim by name"):
        prog.instantiate(batch=3)


def test_two_dynamic_dims_and_a_mean_over_the_batch():
    def f(x):
        return x.mean(dim=0), x.sum(dim=2)
    prog = kiln.export(f, kiln.randn(4, 3, 2),
                       dynamic_shapes=({0: kiln.Dim("batch"), 1: kiln.Dim("seq")},))
    assert prog.output_specs[0].shape == ("seq", 2) and prog.output_specs[1].shape == ("batch", "seq")
    n = kiln.Dim("n")
    with pytest.raises(kiln.export.DynamicShapeError, match=r"reshape.*is not multilinear in the dynamic dims"):
        kiln.export(lambda x: x.reshape(-1), kiln.randn(3, 3), dynamic_shapes=({0: n, 1: n},))  # n*n
    for n, t in ((2, 5), (7, 1)):
        x = kiln.randn(n, t, 2)
        m, s = f(x)
        got_m, got_s = prog(x)
        np.testing.assert_allclose(got_m.numpy(), m.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_s.numpy(), s.numpy(), rtol=1e-5, atol=1e-6)


def test_structure_that_depends_on_the_batch_size_is_rejected():
    def f(x):
        return x.sum() if x.shape[0] % 2 else x.max()
    with pytest.raises(DynamicShapeError, match="structure depends on the dynamic dims"):
        kiln.export(f, kiln.randn(4, 3), dynamic_shapes=({0: kiln.Dim("batch")},))


def test_bad_dynamic_shapes_are_clear_errors():
    x = kiln.randn(4, 3)
    with pytest.raises(ValueError, match=r"axis 2 of argument 0 \('x'\) is out of range for its 2 dims"):
        kiln.export(lambda x: x * 2, x, dynamic_shapes=({2: kiln.Dim("b")},))
    with pytest.raises(ValueError, match=r"dynamic_shapes names 'y'"):
        kiln.export(lambda x: x * 2, x, dynamic_shapes={"y": {0: kiln.Dim("b")}})
    with pytest.raises(ValueError, match=r"has 2 entries for 1 positional arguments"):
        kiln.export(lambda x: x * 2, x, dynamic_shapes=(None, None))
    with pytest.raises(TypeError, match=r"must be a kiln.Dim"):
        kiln.export(lambda x: x * 2, x, dynamic_shapes=({0: "batch"},))
    with pytest.raises(ValueError, match=r"name must be an identifier"):
        kiln.Dim("my batch")


def test_training_step_takes_the_state_and_returns_the_updated_state():
    kiln.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    crit = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x, y = kiln.randn(6, 4), kiln.randint(0, 2, (6,))
    step(x, y)  # the first step creates the momentum buffers
    prog = kiln.export(step, x, y)
    assert "model.0.weight" in prog.state and "opt.state.model.0.weight.momentum_buffer" in prog.state
    assert set(prog.state_updates) >= {"model.0.weight", "opt.state.model.2.bias.momentum_buffer"}
    assert prog.metadata["training"] is None and prog.metadata["frozen"] is False
    state0 = dict(prog.state)
    loss_a, state1 = prog.apply(state0, x, y)  # the pure form leaves prog.state alone
    assert prog.state["model.0.weight"] is state0["model.0.weight"]
    for _ in range(3):
        got = prog(x, y).item()
        want = step(x, y).item()
        assert got == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(prog.state["model.0.weight"], _np(model[0].weight), rtol=1e-5, atol=1e-6)
    assert loss_a.item() == pytest.approx(prog.apply(state0, x, y)[0].item(), rel=1e-6)
    with pytest.raises(KeyError, match="state is missing"):
        prog.apply({}, x, y)


def test_code_that_creates_state_or_mutates_arguments_is_rejected():
    class Counter(nn.Module):
        def forward(self, x):
            self.last = x * 2
            return x + 1
    with pytest.raises(RuntimeError, match=r"stores new state \(Counter.last\)"):
        kiln.export(Counter(), kiln.randn(3))

    def bump(x):
        x.add_(1.0)
        return x * 2
    with pytest.raises(RuntimeError, match=r"modifies its argument 'x' in place"):
        kiln.export(bump, kiln.randn(3))


def test_train_mode_module_updates_its_buffers():
    bn = nn.BatchNorm1d(3)
    x = kiln.randn(8, 3)
    prog = kiln.export(bn, x)
    assert "running_mean" in prog.state_updates and prog.metadata["training"] is True
    prog(x)
    bn(x)
    np.testing.assert_allclose(prog.state["running_mean"], _np(bn.running_mean), rtol=1e-5, atol=1e-7)


def test_keyword_arguments_are_part_of_the_signature():
    def f(x, *, bias, scale=1.0):
        return x * scale + bias
    x, b = kiln.randn(2, 3), kiln.randn(3)
    prog = kiln.export(f, x, kwargs={"bias": b, "scale": 2.0})
    assert [s.name for s in prog.input_specs] == ["x", "bias"]
    np.testing.assert_allclose(prog(x, bias=b, scale=2.0).numpy(), (x * 2.0 + b).numpy(), rtol=1e-6)
    with pytest.raises(TypeError, match=r"expected arguments structured as \(args, kwargs\) = \(\(T,\), "
                                        r"\{'bias': T, 'scale': 2.0\}\)"):
        prog(x, b)


def test_onnx_and_shared_library_methods_hand_the_program_to_their_writers(monkeypatch, tmp_path):
    import types
    calls = []
    onnx_mod = types.ModuleType("kiln.export.onnx")
    onnx_mod.write_onnx = lambda exported, path, opset=None: calls.append(("onnx", exported, path, opset))
    lib_mod = types.ModuleType("kiln.export.shared_library")
    lib_mod.write_shared_library = lambda exported, directory, name="model", dims=None: calls.append(
        ("lib", exported, directory, name))
    monkeypatch.setitem(sys.modules, "kiln.export.onnx", onnx_mod)
    monkeypatch.setitem(sys.modules, "kiln.export.shared_library", lib_mod)
    prog = kiln.export(two_in_two_out, kiln.randn(3, 4), kiln.randn(4, 5))
    prog.to_onnx(tmp_path / "m.onnx", opset=17)
    prog.to_shared_library(tmp_path, name="net")
    prog.to_shared_library(tmp_path)
    assert calls == [("onnx", prog, tmp_path / "m.onnx", 17), ("lib", prog, tmp_path, "net"),
                     ("lib", prog, tmp_path, "model")]


def test_more_dynamic_dims_than_the_fit_supports_are_refused_by_name():
    x = kiln.randn(1, 1, 1, 1, 1)
    dims = {k: kiln.Dim(f"d{k}") for k in range(5)}
    with pytest.raises(kiln.export.DynamicShapeError, match=r"5 dynamic dims \(d0, d1, d2, d3, d4\); at most 4"):
        kiln.export(lambda t: t * 2.0, x, dynamic_shapes=(dims,))


def test_a_reshape_to_the_product_of_two_dims():
    def f(x):
        b, t, c = x.shape
        return (x.reshape(b * t, c) * 2.0).sum(dim=1), x.reshape(b * t * c)
    prog = kiln.export(f, kiln.randn(3, 5, 2), dynamic_shapes=({0: kiln.Dim("batch"), 1: kiln.Dim("time")},))
    assert [s.shape for s in prog.output_specs] == [("batch*time",), ("2*batch*time",)]
    entries = [e["terms"] for e in prog.metadata["dim_map"]]
    assert [[["batch", "time"], 1]] in entries and [[["batch", "time"], 2]] in entries
    for b, t in ((1, 1), (4, 7), (6, 2)):
        x = kiln.randn(b, t, 2)
        got, flat = prog(x)
        ref, ref_flat = f(x)
        assert tuple(got.shape) == (b * t,) and tuple(flat.shape) == (b * t * 2,)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-6)
        np.testing.assert_array_equal(flat.numpy(), ref_flat.numpy())


def test_output_axes_affine_in_a_dim_read_as_expressions():
    def f(x):
        return kiln.cat([x, x, x[:1]]), x.sum(dim=1)
    prog = kiln.export(f, kiln.randn(4, 3), dynamic_shapes=({0: kiln.Dim("batch")},))
    assert [s.shape for s in prog.output_specs] == [("2*batch+1", 3), ("batch",)]
    for n in (2, 6):
        x = kiln.randn(n, 3)
        a, b = prog(x)
        np.testing.assert_array_equal(a.numpy(), f(x)[0].numpy())
        assert tuple(b.shape) == (n,)


def test_state_of_a_bound_method_and_of_a_compiled_function_is_named():
    class Trainer:
        def __init__(self):
            self.net = nn.Linear(2, 2)
            self.opt = optim.SGD(self.net.parameters(), lr=0.1, momentum=0.5)

        def step(self, x):
            self.opt.zero_grad()
            loss = self.net(x).pow(2).sum()
            loss.backward()
            self.opt.step()
            return loss

    t = Trainer()
    x = kiln.randn(3, 2)
    t.step(x)
    prog = kiln.export(t.step, x)
    assert {"net.weight", "net.bias", "opt.state.net.weight.momentum_buffer"} <= set(prog.state)
    lin = nn.Linear(2, 3)

    @kiln.compile
    def forward(x):
        return lin(x).relu()
    prog = kiln.export(forward, x)
    assert list(prog.state) == ["lin.weight", "lin.bias"] and prog.input_specs[0].name == "x"
    np.testing.assert_allclose(prog(x).numpy(), forward(x).detach().numpy(), rtol=1e-6)


def test_gradients_set_before_export_are_state_and_clearing_them_is_rejected():
    m = nn.Linear(2, 1)
    opt = optim.SGD(m.parameters(), lr=0.1)
    x = kiln.randn(3, 2)

    def accumulate(x):
        loss = m(x).sum()
        loss.backward()
        return loss

    m(x).sum().backward()
    prog = kiln.export(accumulate, x)
    assert prog.state_updates == ["m.weight.grad", "m.bias.grad"]
    prog(x)
    prog(x)
    accumulate(x)
    accumulate(x)
    np.testing.assert_allclose(prog.state["m.weight.grad"], m.weight.grad.numpy(), rtol=1e-6)

    def step(x):
        loss = m(x).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    with pytest.raises(RuntimeError, match=r"reads m.weight.grad, which was set before the export, and then clears"):
        kiln.export(step, x)
    opt.zero_grad()
    prog = kiln.export(step, x)
    assert prog.state_updates == ["m.weight", "m.bias"]
    assert prog.metadata["dropped_outputs"] == ["m.weight.grad", "m.bias.grad"]


def test_instantiated_graphs_are_bounded(monkeypatch):
    monkeypatch.setattr("kiln.export.program.MAX_INSTANCES", 2)
    prog = kiln.export(lambda x: x * 3, kiln.randn(2, 2), dynamic_shapes=({0: kiln.Dim("n")},))
    g3 = prog.instantiate(n=3)
    prog.instantiate(n=4)
    assert prog.instantiate(n=3) is g3
    prog.instantiate(n=5)
    assert prog.instantiate(n=3) is not g3 and len(prog._graphs) == 2
    np.testing.assert_allclose(prog(kiln.ones(6, 2)).numpy(), np.full((6, 2), 3.0))
