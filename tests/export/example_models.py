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


# (example file, class name, example input shape without the batch axis)
MODELS = [
    ("mlp_classifier.py", "MLP", (784,)),
    ("cnn.py", "Net", (3, 32, 32)),
    ("lstm_classifier.py", "LSTMClassifier", (24, 2)),
]
