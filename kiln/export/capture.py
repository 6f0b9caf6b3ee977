"""Trace a function or module once for export: its graph, its state by name, its signature.

The graph comes from the same tracer as `kiln.compile` (`trace_function`). Tensors the function
reads without receiving them (parameters, buffers, optimizer state, the random generator) are the
program's *state*: graph inputs after the user's inputs, named after where they live
(`fc1.weight`, `opt.state.fc1.weight.momentum_buffer`). In-place updates of state (an optimizer
step, batch-norm running stats) become graph outputs after the user's outputs ("state updates").
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import config
from ..frontend.autograd import no_grad
from ..frontend.compile import check_graph, optimize_graph, trace_function
from ..frontend.pytree import tree_flatten
from ..frontend.tensor import Tensor
from ..ir.graph import Graph
from ..ir.parser import parse_graph
from .signature import TensorSpec, tree_to_json, value_json


@dataclass
class Captured:
    """One trace, ready to store: the graph text and everything the metadata needs."""

    graph: Graph
    inputs: list[TensorSpec]
    input_tree: dict
    outputs: list[TensorSpec]
    output_tree: dict
    state: dict[str, np.ndarray]
    state_updates: list[str]
    specialized_on: list[dict] = field(default_factory=list)
    python_values: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def _clean(name: str) -> str:
    return re.sub(r"[^\w.]", "_", name).strip(".") or "state"


def state_names(fn: Callable, module: Any) -> dict[int, str]:
    """Names for the tensors `fn` may read, by `id` of the tensor and of its storage cell.

    From the exported module's own parameters and buffers, else from the modules, optimizers,
    generators and tensors `fn` refers to (its closure, the globals it names and, for a bound
    method, its object's attributes)."""
    from ..frontend.creation import Generator, default_generator
    from ..nn.modules.module import Module
    from ..optim.optimizer import Optimizer
    names: dict[int, str] = {}
    param_names: dict[int, str] = {}

    def add(t: Any, name: str) -> None:
        if isinstance(t, Tensor):
            names.setdefault(id(t), _clean(name))
            names.setdefault(id(t._cell), _clean(name))
            if t._grad is not None:
                add(t._grad, name + ".grad")

    def add_module(m: Module, prefix: str) -> None:
        dot = prefix + "." if prefix else ""
        for n, p in m.named_parameters():
            param_names.setdefault(id(p), dot + n)
            add(p, dot + n)
        for n, b in m.named_buffers():
            add(b, dot + n)

    roots: list[tuple[str, Any]] = []
    if module is not None:
        roots.append(("", module))
    else:
        try:
            cv = inspect.getclosurevars(fn)
            roots += list(cv.nonlocals.items()) + list(cv.globals.items())
        except (TypeError, ValueError):
            pass
        if inspect.ismethod(fn):  # a trainer's step method: the attributes of its object
            roots += [(k, v) for k, v in vars(fn.__self__).items() if not k.startswith("_")]
    for var, obj in roots:
        if isinstance(obj, Module):
            add_module(obj, var)
    for var, obj in roots:
        if isinstance(obj, Optimizer):
            index = {id(p): k for k, g in enumerate(obj.param_groups) for p in g["params"]}
            for p, st in obj.state.items():
                pname = param_names.get(id(p), f"param{index.get(id(p), 'x')}")
                for key, v in st.items():
                    add(v, f"{var}.state.{pname}.{key}")
            for k, g in enumerate(obj.param_groups):
                for key, v in getattr(g, "_hp", {}).items():
                    for j, t in enumerate(v if isinstance(v, tuple) else (v,)):
                        add(t, f"{var}.param_groups.{k}.{key}" + (f".{j}" if isinstance(v, tuple) else ""))
        elif isinstance(obj, Generator):
            add(obj.state, f"{var}.state")
        elif isinstance(obj, Tensor):
            add(obj, var)
    add(default_generator.state, "default_generator.state")
    return names


def python_values(fn: Callable, module: Any) -> dict[str, str]:
    """The Python numbers, flags and strings the traced code could read and bake in (as `repr`):
    the modules' plain attributes (`fc1.in_features`, `dropout.p`) and the scalars among the
    function's closure variables and the globals it names."""
    from ..nn.modules.module import Module
    scalars = (bool, int, float, str)
    out: dict[str, str] = {}

    def add_module(m: Module, prefix: str) -> None:
        for name, sub in m.named_modules(prefix=prefix):
            for k, v in vars(sub).items():
                if not k.startswith("_") and k != "training" and isinstance(v, scalars):
                    out[f"{name}.{k}" if name else k] = repr(v)

    if module is not None:
        add_module(module, "")
        return out
    try:
        cv = inspect.getclosurevars(fn)
        roots = list(cv.nonlocals.items()) + list(cv.globals.items())
    except (TypeError, ValueError):
        roots = []
    if inspect.ismethod(fn):
        roots += [(k, v) for k, v in vars(fn.__self__).items() if not k.startswith("_")]
    for var, obj in roots:
        if isinstance(obj, Module):
            add_module(obj, var)
        elif isinstance(obj, scalars):
            out[var] = repr(obj)
    return out


def describe_guard(read: Callable[[], Any]) -> str:
    """A person's description of a guard's `read()` (e.g. `Linear.training`), from its closure."""
    free = {}
    for var, cell in zip(read.__code__.co_freevars, read.__closure__ or ()):
        try:
            free[var] = cell.cell_contents
        except ValueError:  # an empty cell
            pass
    ref, attr = free.get("ref"), free.get("attr")
    if callable(ref) and isinstance(attr, str):
        obj = ref()
        return f"{type(obj).__name__}.{attr}"
    key = free.get("key")
    if isinstance(key, str):
        return f"param_group[{key!r}]"
    if any(type(d).__name__ == "ParamGroup" for d in read.__defaults__ or ()):
        return "an optimizer's param-group options (flags, and which are zero)"
    code = read.__code__
    return f"a Python value read at {code.co_filename}:{code.co_firstlineno}"


def capture(fn: Callable, args: tuple, kwargs: dict, name: str, module: Any = None,
            arg_names: list[str | None] | None = None) -> Captured:
    """Trace `fn(*args, **kwargs)` and turn it into an exportable program (see the module doc).

    `arg_names`: a name per tensor leaf of the arguments (None: the tracer's name)."""
    leaves, spec = tree_flatten((args, kwargs))
    frozen = module is not None and not module.training
    if frozen:
        with no_grad():
            entry = trace_function(fn, args, kwargs, name=name, autograd=False, optimize=False)
    else:
        entry = trace_function(fn, args, kwargs, name=name, autograd=False, optimize=False)
    if entry.state_writes:
        what = ", ".join(sorted({w.what for w in entry.state_writes}))
        raise RuntimeError(f"kiln.export: the traced code stores new state ({what}), which an exported program "
                           "cannot carry; run it once eagerly before exporting, so the state exists and is updated "
                           "in place")
    graph = entry.graph
    n_args = entry.n_args
    captured = entry.captured_now()
    names = state_names(fn, module)
    n_user = sum(1 for kind, _ in entry.out_leaves if kind == "out")
    outputs = list(graph.outputs[:n_user])
    updates: list[tuple[int, Any]] = []  # (captured index, node)
    traced_names = [n.name for n in graph.inputs[:n_args]]
    for out_idx, lift_idx in entry.mutations:
        if lift_idx < n_args:
            raise RuntimeError(f"kiln.export: the function modifies its argument {traced_names[lift_idx]!r} in place; "
                               "an exported program does not write into its inputs: return the new value instead")
        updates.append((lift_idx - n_args, graph.outputs[out_idx]))
    dropped = []
    cap_ids = {id(t): k for k, t in enumerate(captured)}
    for t, out_idx in entry.grad_sets:
        k = cap_ids.get(id(t._grad)) if t._grad is not None else None
        if k is not None and out_idx is None:
            raise RuntimeError(f"kiln.export: the traced code reads {names.get(id(t), 'a parameter')}.grad, which was "
                               "set before the export, and then clears it; an exported program cannot clear state. "
                               "Clear the gradients before exporting (opt.zero_grad()), so the step starts from none")
        if k is not None:
            updates.append((k, graph.outputs[out_idx]))
        else:
            dropped.append(names.get(id(t), "a parameter") + ".grad")
    # state names: unique, and distinct from the argument names
    taken = set()
    input_names = []
    for k, node in enumerate(graph.inputs[:n_args]):
        if arg_names is not None and arg_names[k]:
            node.name = arg_names[k]
        nm = node.name if re.fullmatch(r"[A-Za-z_]\w*", node.name) else f"input{k}"
        while nm in taken:
            nm += "_"
        taken.add(nm)
        input_names.append(nm)
    snames = []
    for k, t in enumerate(captured):
        nm = names.get(id(t)) or names.get(id(t._cell)) or f"state{k}"
        base, j = nm, 1
        while nm in taken:
            nm, j = f"{base}_{j}", j + 1
        taken.add(nm)
        snames.append(nm)
    graph.set_outputs(outputs + [n for _, n in updates])
    for node, nm in zip(graph.inputs, input_names + snames):
        node.name = nm
    graph = _reparsed(graph)  # the names, re-registered
    graph = optimize_graph(graph, name)
    # state nothing reads any more (e.g. a gradient the step overwrites) is not stored
    used = {id(i) for n in graph.nodes for i in n.inputs} | {id(o) for o in graph.outputs}
    updated = {k for k, _ in updates}
    keep = [k for k, node in enumerate(graph.inputs[n_args:]) if id(node) in used or k in updated]
    graph.inputs = graph.inputs[:n_args] + [graph.inputs[n_args + k] for k in keep]
    graph = _reparsed(graph)
    if config.get().verify:
        check_graph(graph)
    state = {snames[k]: np.array(captured[k]._cell.value, copy=True) for k in keep}
    update_names = [snames[k] for k, _ in updates]
    in_specs = [TensorSpec(nm, node.shape, node.dtype) for nm, node in zip(input_names, graph.inputs[:n_args])]
    leaf_json, k = [], 0
    for j, x in enumerate(leaves):
        if isinstance(x, Tensor):
            leaf_json.append({"kind": "tensor", "index": k})
            k += 1
        else:
            leaf_json.append(value_json(x, f"argument leaf {j}"))
    out_leaf_json = []
    for kind, v in entry.out_leaves:
        out_leaf_json.append({"kind": "tensor", "index": v} if kind == "out" else value_json(v, "a returned value"))
    out_specs = [TensorSpec(f"output{j}", node.shape, node.dtype) for j, node in enumerate(graph.outputs[:n_user])]
    guards = [{"what": describe_guard(read), "value": repr(value)} for read, value in entry.guards]
    return Captured(graph, in_specs, tree_to_json(spec, leaf_json), out_specs,
                    tree_to_json(entry.out_spec, out_leaf_json), state, update_names, guards,
                    python_values(fn, module), dropped)


def _reparsed(graph):
    """`graph` through its text form (fresh names and registrations), keeping each node's source location."""
    again = parse_graph(str(graph))
    for node, old in zip(again.nodes, graph.nodes):
        node.loc = old.loc
    return again
