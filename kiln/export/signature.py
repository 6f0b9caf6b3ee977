"""An exported program's calling convention: tensor specs and the pytree structure of inputs and outputs.

Trees are stored as JSON: `{"kind": "tuple" | "list", "items": [...]}`, `{"kind": "dict", "keys": [...],
"items": [...]}`, `{"kind": "tensor", "index": k}` (the k-th tensor input or output) and
`{"kind": "value", "value": v}` (a Python value the program was specialised on, or returns as is).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..ir.dtypes import DType, get_dtype

_SCALARS = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the signature: `shape` entries are ints, or a dynamic dim's name (str)."""

    name: str
    shape: tuple
    dtype: DType

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype.name}

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype.name}[{', '.join(str(s) for s in self.shape)}]"


def spec_from_json(obj: Any, what: str) -> TensorSpec:
    """A TensorSpec from its JSON form; ValueError naming `what` if it is not one."""
    if not isinstance(obj, dict) or set(obj) != {"name", "shape", "dtype"}:
        raise ValueError(f"{what} is not a tensor spec {{name, shape, dtype}}")
    name, shape, dtype = obj["name"], obj["shape"], obj["dtype"]
    if not isinstance(name, str) or not isinstance(shape, list):
        raise ValueError(f"{what}: bad name or shape")
    for s in shape:
        if not (isinstance(s, str) or (isinstance(s, int) and not isinstance(s, bool) and s >= 0)):
            raise ValueError(f"{what}: bad dimension {s!r}")
    try:
        if not isinstance(dtype, str):
            raise TypeError(dtype)
        return TensorSpec(name, tuple(shape), get_dtype(dtype))
    except TypeError:
        raise ValueError(f"{what}: unknown dtype {dtype!r}") from None


def tree_to_json(spec: Any, leaf_json: list[dict]) -> dict:
    """A `pytree.tree_flatten` spec as JSON, with `leaf_json[k]` at the k-th leaf."""
    it = iter(leaf_json)

    def go(s):
        kind, meta, children = s
        if kind == "leaf":
            return next(it)
        if kind == "dict":
            for key in meta:
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise TypeError(f"kiln.export: dict key {key!r} of type {type(key).__name__} cannot be stored; "
                                    "use str or int keys")
            return {"kind": "dict", "keys": list(meta), "items": [go(c) for c in children]}
        return {"kind": "list" if kind == "list" else "tuple", "items": [go(c) for c in children]}

    return go(spec)


def value_json(value: Any, what: str) -> dict:
    """A non-tensor leaf as a stored value; TypeError naming `what` if JSON cannot hold it."""
    if not isinstance(value, _SCALARS):
        raise TypeError(f"kiln.export: {what} is a {type(value).__name__}; an exported program can only be "
                        "specialised on None, bool, int, float or str values")
    if isinstance(value, float) and not math.isfinite(value):
        return {"kind": "value", "float": repr(value)}
    return {"kind": "value", "value": value}


def leaf_value(node: dict) -> Any:
    return float(node["float"]) if "float" in node else node["value"]


def check_tree(tree: Any, what: str, n_tensors: int, depth: int = 0) -> None:
    """Validate a stored tree: ValueError naming `what` if it is malformed or its tensor indices
    are not exactly 0..n_tensors-1 in order."""
    seen: list[int] = []

    def go(t, d):
        if d > 100:
            raise ValueError(f"{what} is nested too deeply")
        if not isinstance(t, dict) or "kind" not in t:
            raise ValueError(f"{what}: a node is not {{kind: ...}}")
        kind = t["kind"]
        if kind == "tensor":
            if set(t) != {"kind", "index"} or not isinstance(t["index"], int) or isinstance(t["index"], bool):
                raise ValueError(f"{what}: bad tensor leaf {t!r}")
            seen.append(t["index"])
        elif kind == "value":
            if set(t) == {"kind", "value"} and isinstance(t["value"], _SCALARS):
                return
            if set(t) == {"kind", "float"} and t["float"] in ("inf", "-inf", "nan"):
                return
            raise ValueError(f"{what}: bad value leaf")
        elif kind in ("tuple", "list", "dict"):
            items = t.get("items")
            if not isinstance(items, list):
                raise ValueError(f"{what}: {kind} without items")
            if kind == "dict":
                keys = t.get("keys")
                if (set(t) != {"kind", "keys", "items"} or not isinstance(keys, list) or len(keys) != len(items)
                        or not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in keys)):
                    raise ValueError(f"{what}: bad dict node")
            elif set(t) != {"kind", "items"}:
                raise ValueError(f"{what}: bad {kind} node")
            for c in items:
                go(c, d + 1)
        else:
            raise ValueError(f"{what}: unknown node kind {kind!r}")

    go(tree, depth)
    if seen != list(range(n_tensors)):
        raise ValueError(f"{what} refers to tensors {seen}, but the program has {n_tensors}")


def describe_tree(tree: dict) -> str:
    """A short text of a stored tree's structure, for error messages: `((T, T), {})`."""
    kind = tree["kind"]
    if kind == "tensor":
        return "T"
    if kind == "value":
        return repr(leaf_value(tree))
    inner = ", ".join(describe_tree(c) for c in tree["items"])
    if kind == "dict":
        return "{" + ", ".join(f"{k!r}: {describe_tree(c)}" for k, c in zip(tree["keys"], tree["items"])) + "}"
    if kind == "list":
        return f"[{inner}]"
    return f"({inner},)" if len(tree["items"]) == 1 else f"({inner})"


def match_tree(tree: dict, value: Any, is_tensor, path: str, tensors: list, constants: list) -> bool:
    """Walk `value` along `tree`: append its tensor leaves (in order) to `tensors` and
    (path, expected, got) of each value leaf to `constants`; False if the structure differs."""
    kind = tree["kind"]
    if kind == "tensor":
        if not is_tensor(value):
            return False
        tensors.append(value)
        return True
    if kind == "value":
        constants.append((path, leaf_value(tree), value))
        return True
    if kind == "dict":
        if not isinstance(value, dict) or list(value.keys()) != list(tree["keys"]):
            return False
        return all(match_tree(c, value[k], is_tensor, f"{path}[{k!r}]", tensors, constants)
                   for k, c in zip(tree["keys"], tree["items"]))
    if not isinstance(value, (tuple, list)) or len(value) != len(tree["items"]):
        return False
    return all(match_tree(c, v, is_tensor, f"{path}[{k}]", tensors, constants)
               for k, (c, v) in enumerate(zip(tree["items"], value)))


def build_tree(tree: dict, leaves: list) -> Any:
    """The value of a stored tree with `leaves[k]` at tensor leaf k."""
    kind = tree["kind"]
    if kind == "tensor":
        return leaves[tree["index"]]
    if kind == "value":
        return leaf_value(tree)
    items = [build_tree(c, leaves) for c in tree["items"]]
    if kind == "dict":
        return dict(zip(tree["keys"], items))
    return items if kind == "list" else tuple(items)
