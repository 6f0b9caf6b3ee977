"""ONNX export: onnxruntime agrees with kiln on the examples' classifiers (dynamic batch at three
sizes) and on each primitive's ONNX builder; unsupported primitives and bad arguments are named."""
import pathlib
import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import kiln  # noqa: E402
from kiln.export.onnx import (DEFAULT_OPSET, NO_ONNX_EQUIVALENT, ONNX_BUILDERS, UnsupportedPrimitive,  # noqa: E402
                              coverage_table, to_onnx_model, write_onnx)
from kiln.ir import dtypes as dt  # noqa: E402
from kiln.ir.graph import Graph  # noqa: E402
from kiln.ir.primitives import PRIMITIVES, get_primitive  # noqa: E402

from export.example_models import export_classifier, export_graph  # noqa: E402

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "export.md"


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _close(got, ref):
    # 1e-5 relative to the output's scale (a logit near 0 makes elementwise relative error meaningless)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(ref))))


def _kiln(exported, x):
    return exported(x).numpy()


@pytest.mark.parametrize("example", ["mlp_classifier.py", "cnn.py", "lstm_classifier.py"], ids=["mlp", "cnn", "lstm"])
def test_classifier_matches_kiln_at_three_batch_sizes(example, tmp_path):
    model, exported, shape = export_classifier(example, batch=4)
    path = tmp_path / "model.onnx"
    exported.to_onnx(path)
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.opset_import[0].version == DEFAULT_OPSET
    assert loaded.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert loaded.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    sess = _session(loaded)
    for batch in (1, 3, 7):
        x = np.random.default_rng(batch).standard_normal((batch,) + shape).astype(np.float32)
        (got,) = sess.run(None, {"x": x})
        ref = _kiln(exported, x)
        assert got.shape == ref.shape == (batch, exported.output_specs[0].shape[1])
        _close(got, ref)


def test_saved_and_loaded_program_writes_the_same_onnx(tmp_path):
    _, exported, shape = export_classifier("cnn.py", batch=2)
    exported.save(tmp_path / "cnn.kiln")
    loaded = kiln.load_exported(tmp_path / "cnn.kiln")
    loaded.to_onnx(tmp_path / "cnn.onnx")
    sess = _session(onnx.load(str(tmp_path / "cnn.onnx")))
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch,) + shape).astype(np.float32)
        _close(sess.run(None, {"x": x})[0], _kiln(exported, x))


def test_state_becomes_named_initializers():
    _, exported, _ = export_classifier("mlp_classifier.py", batch=2)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in to_onnx_model(exported).graph.initializer}
    assert set(exported.state) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"}
    for name, value in exported.state.items():
        np.testing.assert_array_equal(inits[name], value)
    assert [i.name for i in to_onnx_model(exported).graph.input] == ["x"]


def test_batch_dependent_reshape_is_written_for_any_batch():
    _, exported, _ = export_classifier("cnn.py", batch=5)
    proto = to_onnx_model(exported)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    targets = [inits[n.input[1]].tolist() for n in proto.graph.node if n.op_type == "Reshape" and n.input[1] in inits]
    assert all(5 not in t for t in targets), targets  # the example batch is never baked into a reshape target


def _one_node(op, arrays, **attrs):
    g = Graph("one")
    ins = [g.add_input(a.shape, dt.get_dtype(a.dtype), name=f"in{k}") for k, a in enumerate(arrays)]
    shape, d = get_primitive(op).abstract_eval(ins, attrs)
    g.set_outputs([g.add_node(op, ins, attrs, shape, d)])
    return export_graph(g, [f"in{k}" for k in range(len(arrays))], ["out"])


_r = np.random.default_rng(0)
_F = _r.standard_normal((3, 4)).astype(np.float32)
_G = _r.standard_normal((3, 4)).astype(np.float32) + 2.5
_P = np.abs(_F) + 0.1
_I = np.array([[7, -7, 5, -5], [0, 3, -3, 9], [1, -1, 8, -8]], np.int64)
_J = np.array([[2, 2, -3, -3], [4, 0, 2, 3], [-1, 1, 3, 3]], np.int64)  # one zero divisor
_B = _F > 0
_IDX = np.array([[0, 2, 1, 0], [2, 2, 0, 1]], np.int64)
_NCHW = _r.standard_normal((2, 4, 7, 6)).astype(np.float32)
_W = _r.standard_normal((6, 2, 3, 2)).astype(np.float32)

CASES = [
    *[(op, [_F], {}) for op in ("neg", "abs", "sign", "exp", "sin", "cos", "tanh", "logistic", "erf", "floor",
                               "stop_gradient")],
    *[(op, [_P], {}) for op in ("log", "log1p", "sqrt", "rsqrt")],
    ("logical_not", [_B], {}),
    *[(op, [_F, _G], {}) for op in ("add", "sub", "mul", "div", "floor_divide", "remainder", "maximum", "minimum",
                                   "eq", "ne", "lt", "le", "gt", "ge")],
    ("pow", [_P, _G], {}),
    *[(op, [_I, _J], {}) for op in ("div", "floor_divide", "remainder", "add", "mul")],
    *[(op, [_B, _F > 0.5], {}) for op in ("logical_and", "logical_or", "logical_xor")],
    ("select", [_B, _F, _G], {}),
    ("cast", [_F * 3], {"dtype": dt.int64}), ("cast", [_I], {"dtype": dt.float32}),
    ("cast", [_I], {"dtype": dt.bool_}),
    *[(op, [_F], {"axes": (1,), "keepdims": k}) for op in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod")
      for k in (False, True)],
    ("reduce_sum", [_F], {"axes": (), "keepdims": False}),
    ("reduce_sum", [_F], {"axes": (0, 1), "keepdims": False}),
    ("argmax", [_F], {"axis": 1, "keepdims": False}), ("argmin", [_F], {"axis": 0, "keepdims": True}),
    ("reshape", [_F], {"shape": (2, 6)}), ("permute", [_F], {"perm": (1, 0)}),
    ("broadcast_to", [_F[:1]], {"shape": (2, 3, 4)}),
    ("slice", [_F], {"starts": (1, 0), "stops": (3, 4), "steps": (1, 2)}),
    ("pad", [_F], {"lo": (1, 0), "hi": (0, 2), "interior": (0, 0), "value": 0.5}),
    ("pad", [_F], {"lo": (0, 1), "hi": (2, 0), "interior": (2, 1), "value": 0.0}),
    ("concat", [_F, _G, _F], {"axis": 1}),
    ("gather", [_F, _IDX], {"axis": 0}), ("gather", [_F, _IDX[:, :2]], {"axis": 1}),
    ("scatter_add", [_F, _IDX, _G[:2]], {"axis": 0}),
    ("scatter", [_F, np.array([[0, 1, 2, 0], [2, 0, 1, 1]], np.int64), _G[:2]], {"axis": 0}),
    ("matmul", [_F, _G.T.copy()], {}), ("matmul", [np.stack([_F, _G]), np.stack([_G.T, _F.T])], {}),
    ("constant", [], {"value": 1.5, "shape": (2, 3), "dtype": dt.float32}),
    ("constant", [], {"value": [1, 2, 3, 4, 5, 6], "shape": (3, 2), "dtype": dt.int64}),
    ("constant", [], {"value": True, "shape": (), "dtype": dt.bool_}),
    ("iota", [], {"shape": (3, 4), "axis": 1, "dtype": dt.float32}),
    ("iota", [], {"shape": (5, 2), "axis": 0, "dtype": dt.int64}),
    ("conv", [_NCHW, _W], {"strides": (2, 1), "padding": ((1, 0), (2, 1)), "dilation": (1, 2), "groups": 2}),
]


@pytest.mark.parametrize("op,arrays,attrs", CASES, ids=[f"{c[0]}-{k}" for k, c in enumerate(CASES)])
def test_primitive_builder_matches_the_reference(op, arrays, attrs):
    exported = _one_node(op, arrays, **attrs)
    (got,) = _session(to_onnx_model(exported)).run(None, {f"in{k}": a for k, a in enumerate(arrays)})
    ref = get_primitive(op).impl(*arrays, **attrs)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_every_builder_has_a_case_and_every_primitive_is_covered():
    assert set(ONNX_BUILDERS) | set(NO_ONNX_EQUIVALENT) == set(PRIMITIVES)
    assert not set(ONNX_BUILDERS) & set(NO_ONNX_EQUIVALENT)
    assert {c[0] for c in CASES} == set(ONNX_BUILDERS)


def test_unsupported_primitive_names_node_and_user_line():
    def noisy(x):
        return x + kiln.rand(x.shape)  # the line the error names
    line = noisy.__code__.co_firstlineno + 1
    exported = kiln.export(noisy, kiln.randn(3, 4))
    node = next(n for n in exported.graph.nodes if n.op == "random_uniform")
    with pytest.raises(UnsupportedPrimitive,
                       match=re.escape(f"primitive 'random_uniform' (node %{node.name}, from ")
                       + r".*test_onnx\.py:" + str(line) + re.escape(") has no ONNX equivalent")):
        to_onnx_model(exported)


def test_bad_opset_and_missing_directory_are_named(tmp_path):
    _, exported, _ = export_classifier("mlp_classifier.py", batch=2)
    with pytest.raises(ValueError, match="opset must be an integer from 18"):
        write_onnx(exported, tmp_path / "m.onnx", opset=11)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_onnx(exported, tmp_path / "nowhere" / "m.onnx")
    exported.to_onnx(tmp_path / "m19.onnx", opset=19)
    assert onnx.load(str(tmp_path / "m19.onnx")).opset_import[0].version == 19


def test_state_shape_mismatch_is_named():
    _, exported, _ = export_classifier("mlp_classifier.py", batch=2)
    exported.state["fc1.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"state 'fc1.bias' has shape \(3,\)"):
        to_onnx_model(exported)


def test_docs_list_the_coverage_table():
    text = DOC.read_text()
    assert f"opset {DEFAULT_OPSET}" in text
    assert coverage_table() in text, "docs/export.md's ONNX table is stale: paste kiln.export.onnx.coverage_table()"


class _Seq(kiln.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = kiln.nn.Linear(8, 4)

    def forward(self, x):
        b, t, f = x.shape
        y = self.fc(x.reshape(b * t, f)).reshape(b, t, 4)
        return y[:, 1:, :].sum(1)


def test_two_dynamic_dims_and_their_product():
    from kiln.export.dynamic_dims import DimExpr
    kiln.manual_seed(0)
    model = _Seq().eval()
    exported = kiln.export(model, kiln.randn(3, 5, 8),
                           dynamic_shapes=({0: kiln.Dim("batch"), 1: kiln.Dim("time")},))
    fitted = {n.op + str(k): a for k, (n, a) in enumerate(zip(exported.graph.nodes, exported.symbolic_attrs()))}
    assert fitted["reshape0"]["shape"] == (DimExpr(((("batch", "time"), 1),)), 8)
    sess = _session(to_onnx_model(exported))
    for b, t in ((2, 4), (6, 9), (1, 2)):
        x = np.random.default_rng(b).standard_normal((b, t, 8)).astype(np.float32)
        _close(sess.run(None, {"x": x})[0], _kiln(exported, x))


def test_a_mean_over_a_dynamic_dim_computes_its_divisor():
    exported = kiln.export(lambda x: x.mean(dim=1), kiln.randn(2, 5), dynamic_shapes=({1: kiln.Dim("time")},))
    assert any(kind == "float" or kind == "recip" for kind in (e["kind"] for e in exported.metadata["dim_map"]))
    sess = _session(to_onnx_model(exported))
    for t in (1, 3, 11):
        x = np.random.default_rng(t).standard_normal((2, t)).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], x.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_multilinear_fit_recovers_the_expression():
    from kiln.export.dynamic_dims import fit_corners
    dims = {"b": 4, "t": 7}
    truth = lambda b, t: 3 * b * t + 2 * b - t - 1  # noqa: E731
    corner = [truth(4 + (m & 1), 7 + (m >> 1 & 1)) for m in range(4)]
    expr = fit_corners(["b", "t"], dims, corner, integral=True)
    assert str(expr) == "2*b-t+3*b*t-1"
    assert all(expr.at({"b": b, "t": t}) == truth(b, t) for b in range(1, 9) for t in range(1, 9))


def test_structure_that_changes_with_the_batch_is_refused():
    def f(x):
        return x * 2.0 if x.shape[0] > 4 else x + 1.0
    with pytest.raises(kiln.export.DynamicShapeError, match="structure depends on the dynamic dims"):
        kiln.export(f, kiln.zeros(4, 3), dynamic_shapes=({0: kiln.Dim("batch")},))


def test_outputs_that_are_an_input_or_repeated():
    def f(x):
        y = x * 2.0
        return x, y, y
    exported = kiln.export(f, kiln.zeros(3, 4))
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = _session(to_onnx_model(exported)).run(None, {"x": x})
    for a, b in zip(got, (x, 2 * x, 2 * x)):
        np.testing.assert_array_equal(a, b)
