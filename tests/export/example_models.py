"""The model classes of examples/ (MLP, CNN, LSTM classifiers), taken from the example files themselves.

Only the imports, the module-level constants and the class definitions of each file are run (not its
training loop), so the tests export exactly the models a newcomer reads in examples/.
"""
from __future__ import annotations

import ast
import os

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


def load_classes(filename: str) -> dict:
    """The namespace after running `filename`'s imports, constant assignments and class definitions."""
    path = os.path.join(EXAMPLES, filename)
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    keep = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef)):
            keep.append(node)
        elif isinstance(node, ast.Assign) and isinstance(node.value, (ast.Constant, ast.Tuple)) and all(
                isinstance(t, (ast.Name, ast.Tuple)) for t in node.targets):
            keep.append(node)
    namespace: dict = {"__name__": f"example_{filename[:-3]}"}
    exec(compile(ast.Module(keep, []), path, "exec"), namespace)
    return namespace


# (example file, class name, example input shape without the batch axis). The LSTM reads sequences of
# 6 steps here, not the example's SEQ_LEN of 24: the trace unrolls every step and every step is the same
# kernels, so a shorter sequence exports, compiles and checks the same model in a quarter of the time.
MODELS = [
    ("mlp_classifier.py", "MLP", (784,)),
    ("cnn.py", "Net", (3, 32, 32)),
    ("lstm_classifier.py", "LSTMClassifier", (6, 2)),
]


def classifier(filename: str, seed: int = 0):
    """(model in eval mode, example input shape without the batch axis) for one of `MODELS`."""
    import kiln
    name, shape = next((c, s) for f, c, s in MODELS if f == filename)
    kiln.manual_seed(seed)
    return load_classes(filename)[name]().eval(), shape


def export_classifier(filename: str, batch: int = 4, seed: int = 0):
    """(model, `kiln.export` of it with input `x`'s axis 0 the dynamic dim "batch", feature shape)."""
    import kiln
    model, shape = classifier(filename, seed)
    x = kiln.randn(batch, *shape)
    return model, kiln.export(model, x, dynamic_shapes=({0: kiln.Dim("batch")},)), shape


def export_graph(graph, input_names: list[str], output_names: list[str]):
    """An ExportedProgram holding `graph` as it is (no state, static shapes): for tests of one primitive."""
    from kiln.export import FORMAT_VERSION, ExportedProgram
    specs = lambda nodes, names: [{"name": n, "shape": list(v.shape), "dtype": v.dtype.name}  # noqa: E731
                                  for n, v in zip(names, nodes)]
    for node, n in zip(graph.inputs, input_names):
        node.name = n
    tensors = lambda n: [{"kind": "tensor", "index": k} for k in range(n)]  # noqa: E731
    meta = {"format": "kiln.ExportedProgram", "format_version": FORMAT_VERSION, "kiln_version": "test",
            "name": graph.name, "inputs": specs(graph.inputs, input_names),
            "input_tree": {"kind": "tuple", "items": [{"kind": "tuple", "items": tensors(len(input_names))},
                                                      {"kind": "dict", "keys": [], "items": []}]},
            "outputs": specs(graph.outputs, output_names),
            "output_tree": {"kind": "tuple", "items": tensors(len(output_names))},
            "state": [], "state_updates": [], "dims": {}, "dim_map": [], "specialized_on": [], "python_values": {},
            "frozen": False, "training": None, "dropped_outputs": []}
    return ExportedProgram(meta, str(graph), {})
