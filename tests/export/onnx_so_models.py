"""Test inputs for the ONNX and shared-library writers: the classifiers of examples/ and a small
stand-in for `kiln.export`'s ExportedProgram with the attributes the writers read (graph, state,
input_specs, output_specs, instantiate)."""
from __future__ import annotations

import ast
import pathlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import kiln
from kiln.ir import dtypes as dt

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def example_classes(filename: str) -> dict[str, Any]:
    """The module-level imports, constants and classes of examples/`filename`, without running its training."""
    tree = ast.parse((EXAMPLES / filename).read_text(), filename)
    keep = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom, ast.ClassDef))
            or (isinstance(s, ast.Assign) and isinstance(s.value, (ast.Constant, ast.Tuple)))]
    ns: dict[str, Any] = {"__name__": f"example_{filename[:-3]}"}
    exec(compile(ast.Module(keep, []), str(EXAMPLES / filename), "exec"), ns)
    return ns


@dataclass
class Spec:
    name: str
    shape: tuple  # int, or str for a dynamic dim
    dtype: dt.DType


@dataclass
class StandInExport:
    """What `kiln.export(...)` returns, as far as the writers are concerned."""
    graph: Any
    state: dict[str, np.ndarray]
    input_specs: list[Spec]
    output_specs: list[Spec]
    build: Callable[[dict], Any] = field(repr=False)

    def instantiate(self, **dims) -> Any:
        return self.build(dims)[0]


def export_module(model, inputs: list[tuple[str, tuple, Any]], dims: dict[str, int], output_names=("logits",),
                  seed: int = 0) -> StandInExport:
    """Trace `model` (eval mode, no grad) on inputs given as (name, shape with dim names, dtype),
    at the sizes `dims`; the state inputs are renamed to the model's parameter/buffer names."""
    model.eval()
    named = [(n, t) for n, t in model.named_parameters()] + [(n, t) for n, t in model.named_buffers()]

    def build(sizes: dict):
        sizes = {**dims, **sizes}
        rng = np.random.default_rng(seed)
        args = [kiln.tensor(rng.standard_normal([sizes[s] if isinstance(s, str) else s for s in shape])
                            .astype(dt.get_dtype(d).np_dtype)) for _, shape, d in inputs]
        cf = kiln.compile(model)
        with kiln.no_grad():
            entry, _ = cf._lookup(tuple(args), {}, count=False)
        g = entry.graph
        state = {}
        for k, t in enumerate(entry.captured_now()):
            node = g.inputs[len(args) + k]
            name = next((n for n, p in named if p is t), f"state{k}")
            node.name = name
            state[name] = np.array(t._cell.value)
        return g, state, args

    g, state, _ = build({})
    specs = [Spec(n, tuple(shape), dt.get_dtype(d)) for n, shape, d in inputs]
    out_specs = []
    for k, o in enumerate(g.outputs):
        # an output dim is dynamic where it equals the size of a dim of the same value in the inputs' example
        shape = tuple(next((s for _, sh, _ in inputs for s in sh if isinstance(s, str) and dims[s] == o.shape[j]
                            and j == 0), o.shape[j]) for j in range(len(o.shape)))
        out_specs.append(Spec(output_names[k] if k < len(output_names) else f"out{k}", shape, o.dtype))
    return StandInExport(g, state, specs, out_specs, build)


def run_kiln(model, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The model's outputs under kiln.compile (native backend), eval mode, no grad."""
    model.eval()
    with kiln.no_grad():
        out = kiln.compile(model)(*[kiln.tensor(a) for a in arrays])
    outs = out if isinstance(out, (tuple, list)) else [out]
    return [np.asarray(o.numpy()) for o in outs]


def mlp():
    kiln.manual_seed(0)
    return example_classes("mlp_classifier.py")["MLP"](), [("x", ("batch", 784), "float32")]


def cnn():
    kiln.manual_seed(1)
    return example_classes("cnn.py")["Net"](), [("images", ("batch", 3, 32, 32), "float32")]


def lstm():
    kiln.manual_seed(2)
    ns = example_classes("lstm_classifier.py")
    return ns["LSTMClassifier"](), [("waves", ("batch", ns["SEQ_LEN"], ns["FEATURES"]), "float32")]
