"""`kiln.export` and `kiln.ExportedProgram`: a traced, optimized program with its state, callable and storable.

    prog = kiln.export(model.eval(), x, dynamic_shapes=({0: kiln.Dim("batch")},))
    prog(x)                                   # runs compiled, like model(x)
    prog.save("model.kiln")
    prog = kiln.load_exported("model.kiln")   # in any process with kiln; no pickle

docs/export.md describes the format, dynamic dims and exporting a training step.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

import numpy as np

from ..ir.graph import Graph
from ..ir.parser import parse_graph
from ..ir.verifier import verify
from ..runtime.backend import executable
from . import dynamic_dims
from .dims import Dim, normalize_dynamic_shapes
from .kiln_file import FORMAT_VERSION, OLDEST_READABLE, ExportFormatError, read_versioned, write_file
from .signature import build_tree, check_tree, describe_tree, match_tree, spec_from_json

FORMAT_NAME = "kiln.ExportedProgram"
MAX_INSTANCES = 32  #: graphs kept compiled per program, one per set of dynamic sizes
_META_KEYS = {"format", "format_version", "kiln_version", "name", "inputs", "input_tree", "outputs", "output_tree",
              "state", "state_updates", "dims", "dim_map", "specialized_on", "python_values", "frozen", "training",
              "dropped_outputs"}


def _kiln_version() -> str:
    from .. import __version__
    return __version__


def _is_tensor(x: Any) -> bool:
    from ..frontend.tensor import Tensor
    return isinstance(x, (Tensor, np.ndarray))


class ExportedProgram:
    """An exported program: `graph` (the optimized kiln.ir.Graph: user inputs in flattened order,
    then the state inputs, named by state name), `state` ({name: numpy array}), `input_specs` /
    `output_specs` (TensorSpec: name, shape with dynamic dims as their names, dtype), `dims`
    ({name: kiln.Dim}) and `metadata` (the JSON stored in the file).

    Calling it runs the program compiled on the default backend (`backend` to choose) and
    writes the state updates (an exported training step's new parameters) into `state`;
    `apply(state, *args)` is the pure form: `(outputs, new_state)`."""

    def __init__(self, metadata: dict, graph_text: str, state: dict[str, np.ndarray], path: str = "<exported>"):
        self.path = path
        try:
            self._check(metadata, graph_text, state)
        except ExportFormatError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, RecursionError, MemoryError) as e:
            raise ExportFormatError(path, str(e) or type(e).__name__) from None
        self.backend: str | None = None
        self._graphs: dict[tuple, Graph] = {}

    # -- construction and validation ---------------------------------------------------------
    def _check(self, meta: dict, text: str, state: dict[str, np.ndarray]) -> None:
        if not isinstance(meta, dict):
            raise ValueError("metadata is not a JSON object")
        if meta.get("format") != FORMAT_NAME:
            raise ValueError(f"metadata: format is {meta.get('format')!r}, not {FORMAT_NAME!r}")
        if set(meta) != _META_KEYS:
            missing, extra = sorted(_META_KEYS - set(meta)), sorted(set(meta) - _META_KEYS)
            raise ValueError(f"metadata: missing keys {missing}, unexpected keys {extra}")
        for key, typ in (("format_version", int), ("kiln_version", str), ("name", str), ("inputs", list),
                         ("outputs", list), ("state", list), ("state_updates", list), ("dims", dict),
                         ("dim_map", list), ("specialized_on", list), ("python_values", dict), ("frozen", bool),
                         ("dropped_outputs", list)):
            if not isinstance(meta[key], typ):
                raise ValueError(f"metadata: {key} must be a {typ.__name__}")
        if not OLDEST_READABLE <= meta["format_version"] <= FORMAT_VERSION or isinstance(meta["format_version"], bool):
            raise ValueError(f"metadata: format version {meta['format_version']!r} is not one this kiln reads "
                             f"({OLDEST_READABLE}..{FORMAT_VERSION})")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta["python_values"].items()):
            raise ValueError("metadata: python_values must map names to the values' text")
        if meta["training"] is not None and not isinstance(meta["training"], bool):
            raise ValueError("metadata: training must be true, false or null")
        self.metadata = meta
        self.name = meta["name"]
        self.dims = {}
        for dname, d in meta["dims"].items():
            if not isinstance(d, dict) or set(d) != {"min", "max", "example"}:
                raise ValueError(f"metadata: dim {dname!r} is not {{min, max, example}}")
            if not isinstance(d["example"], int) or isinstance(d["example"], bool):
                raise ValueError(f"metadata: dim {dname!r} has no int example size")
            self.dims[dname] = Dim(dname, d["min"], d["max"])
            self.dims[dname].check(d["example"], f"metadata: dim {dname!r} example")
        self.example_sizes = {n: d["example"] for n, d in meta["dims"].items()}
        self.input_specs = [spec_from_json(s, f"metadata: inputs[{k}]") for k, s in enumerate(meta["inputs"])]
        self.output_specs = [spec_from_json(s, f"metadata: outputs[{k}]") for k, s in enumerate(meta["outputs"])]
        state_specs = [spec_from_json(s, f"metadata: state[{k}]") for k, s in enumerate(meta["state"])]
        for s in self.input_specs:
            for d in s.shape:
                if isinstance(d, str) and d not in self.dims:
                    raise ValueError(f"metadata: input {s.name!r} uses the undeclared dim {d!r}")
        for s in state_specs:
            if any(isinstance(d, str) for d in s.shape):
                raise ValueError(f"metadata: state {s.name!r} has a dynamic shape")
        check_tree(meta["input_tree"], "metadata: input_tree", len(self.input_specs))
        check_tree(meta["output_tree"], "metadata: output_tree", len(self.output_specs))
        if meta["input_tree"]["kind"] != "tuple" or len(meta["input_tree"]["items"]) != 2:
            raise ValueError("metadata: input_tree must be the pair (args, kwargs)")
        try:
            graph = parse_graph(text)
            verify(graph)
        except (ValueError, TypeError, KeyError, IndexError, AssertionError, RecursionError, MemoryError) as e:
            raise ValueError(f"graph section: {e}") from None
        n_in, n_state = len(self.input_specs), len(state_specs)
        if len(graph.inputs) != n_in + n_state:
            raise ValueError(f"the graph has {len(graph.inputs)} inputs; the metadata lists {n_in} inputs and "
                             f"{n_state} state tensors")
        for k, (node, spec) in enumerate(zip(graph.inputs, self.input_specs + state_specs)):
            shape = tuple(self.example_sizes[d] if isinstance(d, str) else d for d in spec.shape)
            if node.name != spec.name or node.shape != shape or node.dtype != spec.dtype:
                raise ValueError(f"graph input {k} is %{node.name}: {node.dtype.name}{list(node.shape)}; the "
                                 f"metadata says {spec.name}: {spec.dtype.name}{list(shape)}")
        names = [s.name for s in state_specs]
        if set(state) != set(names) or len(set(names)) != len(names):
            raise ValueError(f"the tensor section holds {sorted(state)}; the metadata lists state {names}")
        for s in state_specs:
            arr = state[s.name]
            if tuple(arr.shape) != s.shape or arr.dtype != s.dtype.np_dtype:
                raise ValueError(f"state tensor {s.name!r} is {arr.dtype}{list(arr.shape)}; the metadata says "
                                 f"{s.dtype.name}{list(s.shape)}")
        n_out, ups = len(self.output_specs), meta["state_updates"]
        if len(graph.outputs) != n_out + len(ups):
            raise ValueError(f"the graph has {len(graph.outputs)} outputs; the metadata lists {n_out} outputs and "
                             f"{len(ups)} state updates")
        for node, spec in zip(graph.outputs, self.output_specs):
            if node.dtype != spec.dtype or len(node.shape) != len(spec.shape) or any(
                    isinstance(d, int) and d != n for d, n in zip(spec.shape, node.shape)):
                raise ValueError(f"output {spec.name!r} is {spec}; the graph returns "
                                 f"{node.dtype.name}{list(node.shape)}")
        by_name = dict(zip(names, graph.inputs[n_in:]))
        for nm, node in zip(ups, graph.outputs[n_out:]):
            if not isinstance(nm, str) or nm not in by_name:
                raise ValueError(f"metadata: state update {nm!r} names no state tensor")
            if by_name[nm].shape != node.shape or by_name[nm].dtype != node.dtype:
                raise ValueError(f"state update {nm!r} has another type than the state it replaces")
        self._tokens = dynamic_dims.tokenize(text)
        dim_names = set(self.dims)
        self.dim_map = [dynamic_dims.value_from_json(e, self._tokens, dim_names, f"metadata: dim_map[{k}]",
                                                     meta["format_version"])
                        for k, e in enumerate(meta["dim_map"])]
        for dv in self.dim_map:
            if not dynamic_dims.close(dv.value(self.example_sizes), float(self._tokens[dv.token]), dv.kind):
                raise ValueError(f"metadata: dim_map entry for token {dv.token} does not give the graph's value "
                                 f"{self._tokens[dv.token]} at the example sizes")
        if dim_names and not self.dim_map:
            raise ValueError("metadata: dynamic dims are declared but the graph has no dynamic values")
        self.graph = graph
        self.state = {nm: state[nm] for nm in names}
        self.state_specs = state_specs
        self.state_updates = list(ups)

    # -- the graph for concrete sizes --------------------------------------------------------
    def instantiate(self, **dims: int) -> Graph:
        """The graph for concrete sizes of the dynamic dims (every dim by name); the last
        `MAX_INSTANCES` are cached (with their compiled code)."""
        if set(dims) != set(self.dims):
            raise TypeError(f"instantiate: give every dynamic dim by name: {sorted(self.dims)}; got {sorted(dims)}")
        for nm, size in dims.items():
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
                raise TypeError(f"instantiate: {nm} must be an int, got {type(size).__name__}")
            self.dims[nm].check(int(size), f"instantiate({nm}={size})")
        sizes = {nm: int(s) for nm, s in dims.items()}
        key = tuple(sorted(sizes.items()))
        if sizes == self.example_sizes:
            return self.graph
        g = self._graphs.get(key)
        if g is None:
            text = dynamic_dims.instantiate_text(self._tokens, self.dim_map, sizes)
            try:
                g = parse_graph(text)
                verify(g)
            except (ValueError, TypeError, AssertionError) as e:
                shown = ", ".join(f"{k}={v}" for k, v in key)
                raise ValueError(f"{self.name}: the program cannot run with {shown}: {e}") from None
            self._graphs[key] = g
            if len(self._graphs) > MAX_INSTANCES:  # the least recently made goes (with its compiled code)
                self._graphs.pop(next(iter(self._graphs)))
        return g

    # -- calling -----------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        """Run like the original function; state updates are written into `self.state`."""
        outputs, self.state = self.apply(self.state, *args, **kwargs)
        return outputs

    def apply(self, state: dict[str, np.ndarray], *args, **kwargs) -> tuple[Any, dict[str, np.ndarray]]:
        """Run on `state` (every state tensor by name): (outputs, the updated state as a new dict)."""
        arrays, sizes = self._arguments(args, kwargs)
        state_arrays = self._state_arrays(state)
        graph = self.instantiate(**sizes)
        results = executable(graph, self.backend).run(arrays + state_arrays)
        n = len(self.output_specs)
        from ..frontend.tensor import Tensor
        outputs = build_tree(self.metadata["output_tree"], [Tensor._make(r) for r in results[:n]])
        new_state = dict(state)
        for nm, r in zip(self.state_updates, results[n:]):
            new_state[nm] = r
        return outputs, new_state

    def _state_arrays(self, state: dict) -> list[np.ndarray]:
        if not isinstance(state, dict):
            raise TypeError(f"{self.name}: state must be a dict of arrays by name, got {type(state).__name__}")
        missing = [s.name for s in self.state_specs if s.name not in state]
        if missing:
            raise KeyError(f"{self.name}: state is missing {missing}")
        out = []
        for s in self.state_specs:
            arr = _array_of(state[s.name], f"state {s.name!r}")
            if tuple(arr.shape) != s.shape or arr.dtype != s.dtype.np_dtype:
                raise ValueError(f"{self.name}: state {s.name!r} must be {s.dtype.name}{list(s.shape)}, got "
                                 f"{arr.dtype}{list(arr.shape)}")
            out.append(arr)
        return out

    def _arguments(self, args: tuple, kwargs: dict) -> tuple[list[np.ndarray], dict[str, int]]:
        tree = self.metadata["input_tree"]
        tensors: list = []
        constants: list = []
        a_tree, k_tree = tree["items"]
        if not (match_tree(a_tree, args, _is_tensor, "args", tensors, constants)
                and match_tree(k_tree, kwargs, _is_tensor, "kwargs", tensors, constants)):
            raise TypeError(f"{self.name}: expected arguments structured as (args, kwargs) = {describe_tree(tree)} "
                            f"(T: a tensor), got {_describe_value((args, kwargs))}")
        for path, want, got in constants:
            if not (type(got) is type(want) and (got == want or (got != got and want != want))):
                raise ValueError(f"{self.name}: {path} was {want!r} when the program was exported (it is specialised "
                                 f"on that value); got {got!r}")
        arrays, sizes = [], {}
        for spec, x in zip(self.input_specs, tensors):
            arr = _array_of(x, f"argument {spec.name!r}")
            if arr.dtype != spec.dtype.np_dtype:
                raise TypeError(f"{self.name}: argument {spec.name!r} must be {spec.dtype.name}, got "
                                f"{arr.dtype}")
            if arr.ndim != len(spec.shape):
                raise ValueError(f"{self.name}: argument {spec.name!r} must have {len(spec.shape)} dims "
                                 f"{_shape_text(spec.shape)}, got {arr.ndim}: {tuple(arr.shape)}")
            for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
                if isinstance(want, str):
                    self.dims[want].check(int(got), f"{self.name}: argument {spec.name!r}, axis {axis}")
                    if sizes.setdefault(want, int(got)) != got:
                        raise ValueError(f"{self.name}: argument {spec.name!r}, axis {axis} has size {got}, but dim "
                                         f"{want!r} is {sizes[want]} in an earlier argument")
                elif want != got:
                    raise ValueError(f"{self.name}: argument {spec.name!r}, axis {axis} must have size {want}, "
                                     f"got {got} (shape {tuple(arr.shape)})")
            arrays.append(_c_order(arr))
        return arrays, sizes

    # -- storing and describing ----------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the program to a `.kiln` file (docs/export.md describes the format)."""
        import safetensors.numpy
        state = {k: _c_order(v) for k, v in self.state.items()}
        # always the current format: an older file's metadata (its dim map) is written as this version's
        meta = dict(self.metadata, format_version=FORMAT_VERSION, dim_map=[dv.to_json() for dv in self.dim_map])
        write_file(path, {b"META": json.dumps(meta, indent=1).encode("utf-8"),
                          b"GRPH": str(self.graph).encode("utf-8"),
                          b"TENS": safetensors.numpy.save(state)})

    def to_onnx(self, path: str | os.PathLike, opset: int | None = None) -> None:
        """Write an ONNX model (kiln.export.onnx)."""
        from .onnx import write_onnx
        return write_onnx(self, path, opset=opset)

    def to_shared_library(self, directory: str | os.PathLike, name: str = "model", *,
                          dims: dict[str, int] | None = None):
        """Write `directory/libNAME.so` and `NAME.h` (kiln.export.shared_library), built for the
        example sizes or the dynamic dims' sizes `dims`; returns the library's path."""
        from .shared_library import write_shared_library
        return write_shared_library(self, directory, name=name, dims=dims)

    def symbolic_attrs(self) -> list[dict[str, Any]]:
        """Per node of `graph`, its attributes with each number that moves with a dynamic dim
        replaced by the stored fit's expression (kiln.export.dynamic_dims; the ONNX writer reads it)."""
        return dynamic_dims.symbolic_attrs(self.graph, self._tokens, self.dim_map)

    def kernel_count(self) -> int:
        """Kernels of the fusion plan of `graph` (at the example sizes)."""
        from ..passes.fusion import plan_fusion
        return len(plan_fusion(self.graph).kernels)

    def signature(self) -> str:
        ins = ", ".join(str(s) for s in self.input_specs)
        outs = ", ".join(str(s) for s in self.output_specs)
        return f"{self.name}({ins}) -> ({outs})"

    def __repr__(self) -> str:
        n = sum(int(a.size) for a in self.state.values())
        return f"<kiln.ExportedProgram {self.signature()}; {len(self.state)} state tensors, {n} values>"


def _array_of(x: Any, what: str) -> np.ndarray:
    from ..frontend.tensor import Tensor
    if isinstance(x, Tensor):
        if x.is_tracer:
            raise TypeError(f"{what} is a tensor inside a kiln.compile trace; call the exported program eagerly")
        return x._cell.value
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{what} must be a kiln tensor or numpy array, got {type(x).__name__}")


def _c_order(arr: np.ndarray) -> np.ndarray:
    """`arr` in C order, keeping 0-d arrays 0-d (np.ascontiguousarray makes them 1-d)."""
    return arr if arr.flags.c_contiguous else np.array(arr, order="C")


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _describe_value(v: Any) -> str:
    if _is_tensor(v):
        return "T"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {_describe_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_describe_value(x) for x in v) + "]"
    if isinstance(v, tuple):
        inner = ", ".join(_describe_value(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    return repr(v) if isinstance(v, (int, float, str, bool, type(None))) else type(v).__name__


def load_exported(path: str | os.PathLike) -> ExportedProgram:
    """Load a `.kiln` file written by `ExportedProgram.save`; ExportFormatError names the file and the fault."""
    import safetensors.numpy
    path = os.fspath(path)
    version, sections = read_versioned(path)
    try:
        meta = json.loads(sections[b"META"].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ExportFormatError(path, f"metadata section is not JSON ({e})") from None
    if isinstance(meta, dict) and meta.get("format_version") != version:
        raise ExportFormatError(path, f"metadata says format version {meta.get('format_version')!r}, the header "
                                      f"{version}")
    try:
        text = sections[b"GRPH"].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ExportFormatError(path, f"graph section is not UTF-8 text ({e})") from None
    try:
        state = safetensors.numpy.load(sections[b"TENS"])
    except Exception as e:  # safetensors raises its own error types for malformed data
        raise ExportFormatError(path, f"tensor section is not a safetensors file ({e})") from None
    return ExportedProgram(meta, text, state, path)


# ======================================================================================
# export
# ======================================================================================

def export(fn_or_module: Callable, *example_args, dynamic_shapes: Any = None, kwargs: dict | None = None,
           name: str | None = None) -> ExportedProgram:
    """Trace `fn_or_module(*example_args, **kwargs)` into an ExportedProgram (see docs/export.md).

    `dynamic_shapes`: as torch.export, one entry per positional argument (tuple, or dict by
    parameter name), each None or `{axis: kiln.Dim(name)}`. A module in eval mode is exported
    frozen (its parameters are copied into the program's state, no gradients traced)."""
    from ..frontend.creation import zeros
    from ..frontend.compile import CompiledFunction, _sanitize
    from ..frontend.tensor import Tensor
    from ..nn.modules.module import Module
    from .capture import capture
    kwargs = dict(kwargs or {})
    module = fn_or_module if isinstance(fn_or_module, Module) else None
    if module is None and not callable(fn_or_module):
        raise TypeError(f"kiln.export: expected a function or nn.Module, got {type(fn_or_module).__name__}")
    fn = fn_or_module.fn if isinstance(fn_or_module, CompiledFunction) else fn_or_module  # traced as Python
    sig_fn = module.forward if module is not None else fn
    args = tuple(Tensor._make(np.array(a)) if isinstance(a, np.ndarray) else a for a in example_args)
    for k, a in enumerate(args):
        if isinstance(a, Tensor) and a.is_tracer:
            raise TypeError(f"kiln.export: example argument {k} is a tensor inside a trace")
    name = _sanitize(name or (type(module).__name__ if module is not None else getattr(fn, "__name__", "fn")))
    dyn = normalize_dynamic_shapes(sig_fn, args, dynamic_shapes, lambda x: isinstance(x, Tensor))
    arg_names = _leaf_names(sig_fn, args, kwargs)
    base = capture(fn, args, kwargs, name, module, arg_names)
    dims: dict[str, Dim] = {}
    example: dict[str, int] = {}
    for k, axes in dyn.items():
        for axis, d in axes.items():
            size = int(args[k].shape[axis])
            if example.setdefault(d.name, size) != size:
                raise ValueError(f"kiln.export: dim {d.name!r} is {example[d.name]} in one example argument and "
                                 f"{size} in argument {k}, axis {axis}")
            dims[d.name] = d

    def resized(sizes: dict[str, int]) -> tuple:
        out = list(args)
        for k, axes in dyn.items():
            shape = list(args[k].shape)
            for axis, d in axes.items():
                shape[axis] = sizes[d.name]
            t = zeros(*shape, dtype=args[k].dtype)
            out[k] = t.requires_grad_(True) if args[k].requires_grad else t
        return tuple(out)

    corners, checks = dynamic_dims.sample_sizes(example)
    traced = []
    for sizes in corners + checks:
        c = capture(fn, resized(sizes), kwargs, name, module, arg_names)
        _same_structure(base, c, sizes)
        traced.append((sizes, c))
    dim_map = dynamic_dims.fit(str(base.graph), example, [str(c.graph) for _, c in traced[:len(corners)]],
                               [(s, str(c.graph)) for s, c in traced[len(corners):]]) if dims else []
    inputs = []
    for k, spec in enumerate(base.inputs):
        shape = list(spec.shape)
        arg_k = _tensor_arg_position(args, kwargs, k)
        for axis, d in dyn.get(arg_k, {}).items():
            shape[axis] = d.name
        inputs.append({"name": spec.name, "shape": shape, "dtype": spec.dtype.name})
    outputs = []
    for j, spec in enumerate(base.outputs):
        shapes = [c.outputs[j].shape for _, c in traced[:len(corners)]]
        outputs.append({"name": spec.name, "shape": _output_shape(spec.shape, shapes, example),
                        "dtype": spec.dtype.name})
    meta = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kiln_version": _kiln_version(), "name": name,
        "inputs": inputs, "input_tree": base.input_tree, "outputs": outputs, "output_tree": base.output_tree,
        "state": [{"name": n, "shape": list(a.shape), "dtype": _dtype_name(a)} for n, a in base.state.items()],
        "state_updates": base.state_updates,
        "dims": {n: dict(d.to_json(), example=example[n]) for n, d in dims.items()},
        "dim_map": [av.to_json() for av in dim_map],
        "specialized_on": base.specialized_on,
        "python_values": base.python_values,
        "frozen": module is not None and not module.training,
        "training": None if module is None else bool(module.training),
        "dropped_outputs": base.dropped,
    }
    prog = ExportedProgram(meta, str(base.graph), base.state)
    for node, traced_node in zip(prog.graph.nodes, base.graph.nodes):
        node.loc = traced_node.loc  # the user's file and line, for errors (the text form does not hold them)
    return prog


def _leaf_names(fn: Callable, args: tuple, kwargs: dict) -> list[str | None]:
    """A name per tensor leaf of (args, kwargs): the parameter name for a tensor passed directly,
    `name_0`, `name_1`, ... for the tensors inside a container argument."""
    import inspect
    from ..frontend.pytree import tree_flatten
    from ..frontend.tensor import Tensor
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names: list[str | None] = []
    items = [(params[k] if k < len(params) else None, a) for k, a in enumerate(args)] + list(kwargs.items())
    for pname, a in items:
        leaves = [x for x in tree_flatten(a)[0] if isinstance(x, Tensor)]
        if isinstance(a, Tensor):
            names.append(pname)
        else:
            names += [f"{pname}_{j}" if pname else None for j in range(len(leaves))]
    return names


def _dtype_name(a: np.ndarray) -> str:
    from ..ir.dtypes import from_numpy_dtype
    return from_numpy_dtype(a.dtype).name


def _tensor_arg_position(args: tuple, kwargs: dict, k: int) -> int | None:
    """The positional argument holding the k-th tensor leaf, if it is a tensor argument itself."""
    from ..frontend.pytree import tree_flatten
    from ..frontend.tensor import Tensor
    count = 0
    for pos, a in enumerate(args):
        leaves = [x for x in tree_flatten(a)[0] if isinstance(x, Tensor)]
        if count <= k < count + len(leaves):
            return pos if isinstance(a, Tensor) else None
        count += len(leaves)
    return None


def _output_shape(shape: tuple, corner_shapes: list[tuple], example: dict) -> list:
    """An output's shape: an axis that changes with the dims is the dim's name when it equals
    that dim, else its expression such as `2*batch+1` or `batch*time` (multilinear, as the export
    checked on the graph); `corner_shapes` holds the output's shape at each corner size."""
    result: list = []
    for axis, size in enumerate(shape):
        axis_size = dynamic_dims.fit_shape_axis(example, int(size), [int(s[axis]) for s in corner_shapes])
        result.append(axis_size)
    return result


def _same_structure(a, b, sizes: dict) -> None:
    shown = ", ".join(f"{k}={v}" for k, v in sizes.items())
    if (list(a.state) != list(b.state) or a.state_updates != b.state_updates
            or a.input_tree != b.input_tree or a.output_tree != b.output_tree):
        raise dynamic_dims.DynamicShapeError(f"kiln.export: the traced program's state or signature changes with the "
                                       f"dynamic dims (traced again with {shown}); mark those axes static")
    for n, arr in a.state.items():
        if b.state[n].shape != arr.shape:
            raise dynamic_dims.DynamicShapeError(f"kiln.export: state {n!r} has shape {arr.shape} at the example sizes "
                                           f"and {b.state[n].shape} with {shown}; state cannot depend on a dynamic dim")
