"""ONNX export: an exported program's optimized graph as an ONNX model (default opset 18).

    write_onnx(exported, "model.onnx")        # or exported.to_onnx("model.onnx")

One table, `ONNX_BUILDERS`, maps each kiln primitive to the function that writes its ONNX nodes;
`NO_ONNX_EQUIVALENT` names the primitives that have none (with why). The program's state
(parameters, buffers) becomes initializers named by their state names. Dynamic dims stay
symbolic: the input and output types carry the dim's name, and every attribute that depends on
it (a reshape target, a broadcast shape, a slice bound) is computed from the inputs' run-time
shapes (`Shape` → `Mul`/`Add` → `Concat`), as the fit `kiln.export` stored in the program says
(`ExportedProgram.symbolic_attrs`, kiln.export.dynamic_dims).
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable

import numpy as np

from ..ir import dtypes as dt
from ..ir.graph import Node
from ..ir.primitives import PRIMITIVES
from .dynamic_dims import DimExpr, DimValue, dim_sources, is_dynamic

DEFAULT_OPSET = 18
MIN_OPSET = 18  # Pad's `axes`, ReduceMax/Min/Prod taking axes as an input


class UnsupportedPrimitive(ValueError):
    """A primitive in the graph has no ONNX equivalent."""


class ONNXExportError(ValueError):
    """The graph cannot be written as ONNX (a value the format cannot express)."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'kiln[onnx]' (or pip install onnx)") \
            from None
    return onnx


def _elem_type(d: dt.DType) -> int:
    onnx = _onnx()
    return {"bool": onnx.TensorProto.BOOL, "int32": onnx.TensorProto.INT32, "int64": onnx.TensorProto.INT64,
            "float16": onnx.TensorProto.FLOAT16, "float32": onnx.TensorProto.FLOAT,
            "float64": onnx.TensorProto.DOUBLE}[d.name]


class _Writer:
    """Accumulates ONNX nodes and initializers; `op` appends one node and returns its output name."""

    def __init__(self, exported, opset: int):
        self.onnx = _onnx()
        self.exported = exported
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0
        self._consts: dict[tuple, str] = {}
        self._dims: dict[str, str] = {}
        self._dim_sources = dim_sources(exported)
        self._input_names = [spec.name for spec in exported.input_specs]
        self.current: Node | None = None

    def fresh(self, hint: str = "t") -> str:
        self._count += 1
        return f"_{hint}{self._count}"

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs) -> str:
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0]

    def const(self, value, dtype: dt.DType | np.dtype = dt.int64) -> str:
        """An initializer holding `value` (deduplicated)."""
        npd = dtype.np_dtype if isinstance(dtype, dt.DType) else np.dtype(dtype)
        arr = np.asarray(value, dtype=npd)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self.fresh("c")
            self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def dim(self, name: str) -> str:
        """A 1-element int64 tensor holding dynamic dim `name`'s run-time size."""
        if name not in self._dims:
            k, axis = self._dim_sources[name]
            self._dims[name] = self.op("Shape", [self._input_names[k]], start=axis, end=axis + 1)
        return self._dims[name]

    def int_tensor(self, values) -> str:
        """A 1-D int64 tensor of `values` (ints or `DimExpr`s): an initializer when all are static,
        otherwise computed from the inputs' shapes."""
        values = list(values)
        if not any(isinstance(v, DimExpr) for v in values):
            return self.const([int(v) for v in values])
        parts, run = [], []
        for v in values:
            if isinstance(v, DimExpr):
                if run:
                    parts.append(self.const(run))
                    run = []
                parts.append(self._expr(v))
            else:
                run.append(int(v))
        if run:
            parts.append(self.const(run))
        return parts[0] if len(parts) == 1 else self.op("Concat", parts, axis=0)

    def scalar(self, v: DimValue, dtype: dt.DType) -> str:
        """A 1-element tensor of `dtype` holding a dim-dependent float (a mean's divisor, its `1/n`)."""
        if not all(float(a).is_integer() for _, a in v.expr.terms):
            n = self.current
            raise ONNXExportError(f"node %{n.name} ({n.op}{_from(n)}) holds {v.expr}, whose coefficients are not "
                                  "integers; the ONNX writer computes dim-dependent values in int64")
        ints = DimExpr(tuple((m, int(a)) for m, a in v.expr.terms))
        x = self.op("Cast", [self._expr(ints)], to=_elem_type(dtype))
        return self.op("Reciprocal", [x]) if v.kind == "recip" else x

    def _expr(self, v: DimExpr) -> str:
        acc = None
        for mono, a in v.terms:
            term = None
            for d in mono:
                term = self.dim(d) if term is None else self.op("Mul", [term, self.dim(d)])
            if term is None:
                term = self.const([a])
            elif a != 1:
                term = self.op("Mul", [term, self.const([a])])
            acc = term if acc is None else self.op("Add", [acc, term])
        return acc

    def static(self, attrs: dict, key: str):
        """Attribute `key`, which must not depend on a dynamic dim."""
        value = attrs[key]
        if is_dynamic(value):
            n = self.current
            raise ONNXExportError(f"attribute {key!r} of node %{n.name} ({n.op}{_from(n)}) depends on a dynamic dim "
                                  f"({_fmt(value)}); the ONNX writer supports that only for shapes and slice bounds")
        return value


def _fmt(value) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def _from(n: Node) -> str:
    return f", from {n.loc}" if n.loc else ""


# ---- builders: (writer, node, input names, attributes with DimExpr entries) -> output name -------------------

def _same(op_type: str) -> Callable:
    """A primitive that is exactly one ONNX operator on the same inputs."""
    return lambda w, n, xs, a: w.op(op_type, xs)


def _log1p(w, n, xs, a):
    return w.op("Log", [w.op("Add", [xs[0], w.const(1, n.dtype)])])


def _rsqrt(w, n, xs, a):
    return w.op("Reciprocal", [w.op("Sqrt", xs)])


def _ne(w, n, xs, a):
    return w.op("Not", [w.op("Equal", xs)])


def _nonzero_divisor(w, n, y: str) -> str:
    """An integer divisor with 0 replaced by 1, as kiln's integer division reads it (no trap)."""
    zero = w.const(0, n.dtype)
    return w.op("Where", [w.op("Equal", [y, zero]), w.const(1, n.dtype), y])


def _div(w, n, xs, a):
    x, y = xs
    return w.op("Div", [x, y if n.dtype.is_floating_point else _nonzero_divisor(w, n, y)])


def _floor_divide(w, n, xs, a):
    x, y = xs
    if n.dtype.is_floating_point:
        return w.op("Floor", [w.op("Div", [x, y])])
    # integers: truncated quotient, minus one where the remainder is non-zero and the signs differ
    zero = w.const(0, n.dtype)
    safe = _nonzero_divisor(w, n, y)
    q = w.op("Div", [x, safe])
    r = w.op("Mod", [x, safe], fmod=1)
    adjust = w.op("And", [w.op("Not", [w.op("Equal", [r, zero])]),
                          w.op("Xor", [w.op("Less", [r, zero]), w.op("Less", [safe, zero])])])
    return w.op("Sub", [q, w.op("Cast", [adjust], to=_elem_type(n.dtype))])


def _remainder(w, n, xs, a):
    x, y = xs
    if not n.dtype.is_floating_point:
        return w.op("Mod", [x, _nonzero_divisor(w, n, y)], fmod=0)
    # numpy's remainder: fmod, then the divisor added where the signs differ
    zero = w.const(0, n.dtype)
    r = w.op("Mod", xs, fmod=1)
    fix = w.op("And", [w.op("Not", [w.op("Equal", [r, zero])]),
                       w.op("Xor", [w.op("Less", [r, zero]), w.op("Less", [y, zero])])])
    return w.op("Where", [fix, w.op("Add", [r, y]), r])


def _cast(w, n, xs, a):
    return w.op("Cast", xs, to=_elem_type(n.dtype))


def _reduce(op_type: str) -> Callable:
    def build(w, n, xs, a):
        axes = w.static(a, "axes")
        if not axes:
            return w.op("Identity", xs)
        return w.op(op_type, [xs[0], w.const(list(axes))], keepdims=int(bool(a["keepdims"])))
    return build


def _arg(op_type: str) -> Callable:
    def build(w, n, xs, a):
        return w.op(op_type, xs, axis=int(w.static(a, "axis")), keepdims=int(bool(a["keepdims"])), select_last_index=0)
    return build


def _reshape(w, n, xs, a):
    shape = list(a["shape"])
    dynamic = [k for k, s in enumerate(shape) if isinstance(s, DimExpr)]
    if len(dynamic) == 1 and all(s > 0 for s in shape if not isinstance(s, DimExpr)):
        shape[dynamic[0]] = -1  # the one dim the others leave: right for every size
        return w.op("Reshape", [xs[0], w.const(shape)])
    allow_zero = int(any(not isinstance(s, DimExpr) and s == 0 for s in shape))
    return w.op("Reshape", [xs[0], w.int_tensor(shape)], allowzero=allow_zero)


def _permute(w, n, xs, a):
    return w.op("Transpose", xs, perm=[int(p) for p in w.static(a, "perm")])


def _broadcast_to(w, n, xs, a):
    return w.op("Expand", [xs[0], w.int_tensor(a["shape"])])


def _slice(w, n, xs, a):
    starts, stops, steps = a["starts"], a["stops"], a["steps"]
    src = n.inputs[0].shape
    axes = [k for k in range(len(src))
            if not (starts[k] == 0 and steps[k] == 1 and not isinstance(stops[k], DimExpr) and stops[k] == src[k])]
    if not axes:
        return w.op("Identity", xs)
    # a dynamic bound is computed from the run-time sizes
    return w.op("Slice", [xs[0], w.int_tensor([starts[k] for k in axes]), w.int_tensor([stops[k] for k in axes]),
                          w.const(axes), w.int_tensor([steps[k] for k in axes])])


def _pad(w, n, xs, a):
    lo, hi, interior = (w.static(a, k) for k in ("lo", "hi", "interior"))
    value = w.const(a["value"], n.dtype)
    x = xs[0]
    shape = list(n.inputs[0].shape)
    for axis, i in enumerate(interior):
        if i and shape[axis] > 1:
            # interior padding: put i fill values after every element (a new axis padded at its end),
            # merge the axes back, and drop the fill after the last element
            s = shape[axis]
            x = w.op("Unsqueeze", [x, w.const([axis + 1])])
            nd = len(shape) + 1
            pads = [0] * (2 * nd)
            pads[nd + axis + 1] = i
            x = w.op("Pad", [x, w.const(pads), value], mode="constant")
            merged = shape[:axis] + [s * (i + 1)] + shape[axis + 1:]
            x = w.op("Reshape", [x, w.const(merged)])
            x = w.op("Slice", [x, w.const([0]), w.const([(s - 1) * (i + 1) + 1]), w.const([axis])])
            shape[axis] = (s - 1) * (i + 1) + 1
    if any(lo) or any(hi):
        x = w.op("Pad", [x, w.const(list(lo) + list(hi)), value], mode="constant")
    return x if x is not xs[0] else w.op("Identity", xs)


def _concat(w, n, xs, a):
    return w.op("Concat", xs, axis=int(w.static(a, "axis")))


def _gather(w, n, xs, a):
    axis = int(w.static(a, "axis"))
    x = _crop_to_index(w, n, xs[0], axis)
    return w.op("GatherElements", [x, xs[1]], axis=axis)


def _crop_to_index(w, n, x: str, axis: int) -> str:
    """kiln's gather reads the leading block of x where the index is smaller (torch.gather); ONNX wants equal dims."""
    xs, ids = n.inputs[0].shape, n.inputs[1].shape
    axes = [d for d in range(len(xs)) if d != axis and ids[d] < xs[d]]
    if not axes:
        return x
    return w.op("Slice", [x, w.const([0] * len(axes)), w.const([ids[d] for d in axes]), w.const(axes)])


def _scatter(reduction: str) -> Callable:
    def build(w, n, xs, a):
        return w.op("ScatterElements", xs, axis=int(w.static(a, "axis")), reduction=reduction)
    return build


def _constant(w, n, xs, a):
    value = a["value"]
    if isinstance(value, (list, tuple)):
        if is_dynamic(a["shape"]):
            w.static(a, "shape")
        return w.op("Identity", [w.const(np.asarray(value).reshape(tuple(a["shape"])), n.dtype)])
    if isinstance(value, DimValue):  # a fill that moves with a dim: computed, then expanded
        v = w.scalar(value, n.dtype)
        if not a["shape"]:
            return w.op("Reshape", [v, w.const([], dt.int64)])
        return w.op("Expand", [v, w.int_tensor(a["shape"])])
    fill = w.onnx.numpy_helper.from_array(np.asarray([value], dtype=n.dtype.np_dtype))
    if not a["shape"]:
        return w.op("Identity", [w.const(value, n.dtype)])
    return w.op("ConstantOfShape", [w.int_tensor(a["shape"])], value=fill)


def _iota(w, n, xs, a):
    shape, axis = a["shape"], int(w.static(a, "axis"))
    if not shape:
        return w.op("Identity", [w.const(0, n.dtype)])
    size = shape[axis]
    limit = w.int_tensor([size])
    limit = w.op("Squeeze", [limit, w.const([0])])
    r = w.op("Range", [w.const(0), limit, w.const(1)])
    line = [1] * len(shape)
    line[axis] = -1
    r = w.op("Reshape", [r, w.const(line)])
    r = w.op("Expand", [r, w.int_tensor(shape)])
    return r if n.dtype == dt.int64 else w.op("Cast", [r], to=_elem_type(n.dtype))


def _conv(w, n, xs, a):
    padding = w.static(a, "padding")
    return w.op("Conv", xs, strides=list(w.static(a, "strides")), dilations=list(w.static(a, "dilation")),
                group=int(w.static(a, "groups")), pads=[p[0] for p in padding] + [p[1] for p in padding],
                kernel_shape=list(n.inputs[1].shape[2:]))


#: primitive -> (builder, the ONNX operators it writes)
ONNX_BUILDERS: dict[str, tuple[Callable, str]] = {
    "neg": (_same("Neg"), "Neg"), "abs": (_same("Abs"), "Abs"), "sign": (_same("Sign"), "Sign"),
    "exp": (_same("Exp"), "Exp"), "log": (_same("Log"), "Log"), "log1p": (_log1p, "Log(Add(x, 1))"),
    "sqrt": (_same("Sqrt"), "Sqrt"), "rsqrt": (_rsqrt, "Reciprocal(Sqrt)"), "sin": (_same("Sin"), "Sin"),
    "cos": (_same("Cos"), "Cos"), "tanh": (_same("Tanh"), "Tanh"), "logistic": (_same("Sigmoid"), "Sigmoid"),
    "erf": (_same("Erf"), "Erf"), "floor": (_same("Floor"), "Floor"), "logical_not": (_same("Not"), "Not"),
    "stop_gradient": (_same("Identity"), "Identity"),
    "add": (_same("Add"), "Add"), "sub": (_same("Sub"), "Sub"), "mul": (_same("Mul"), "Mul"),
    "div": (_div, "Div (integers: a zero divisor read as 1, as kiln)"),
    "floor_divide": (_floor_divide, "Floor(Div) (floats); Div, Mod, Where (integers)"),
    "remainder": (_remainder, "Mod(fmod=1) and a sign fix (floats); Mod (integers)"),
    "pow": (_same("Pow"), "Pow"), "maximum": (_same("Max"), "Max"), "minimum": (_same("Min"), "Min"),
    "eq": (_same("Equal"), "Equal"), "ne": (_ne, "Not(Equal)"), "lt": (_same("Less"), "Less"),
    "le": (_same("LessOrEqual"), "LessOrEqual"), "gt": (_same("Greater"), "Greater"),
    "ge": (_same("GreaterOrEqual"), "GreaterOrEqual"), "logical_and": (_same("And"), "And"),
    "logical_or": (_same("Or"), "Or"), "logical_xor": (_same("Xor"), "Xor"),
    "select": (_same("Where"), "Where"), "cast": (_cast, "Cast"),
    "reduce_sum": (_reduce("ReduceSum"), "ReduceSum"), "reduce_max": (_reduce("ReduceMax"), "ReduceMax"),
    "reduce_min": (_reduce("ReduceMin"), "ReduceMin"), "reduce_prod": (_reduce("ReduceProd"), "ReduceProd"),
    "argmax": (_arg("ArgMax"), "ArgMax"), "argmin": (_arg("ArgMin"), "ArgMin"),
    "reshape": (_reshape, "Reshape"), "permute": (_permute, "Transpose"), "broadcast_to": (_broadcast_to, "Expand"),
    "slice": (_slice, "Slice"), "pad": (_pad, "Pad (interior: Unsqueeze, Pad, Reshape, Slice)"),
    "concat": (_concat, "Concat"), "gather": (_gather, "GatherElements"),
    "scatter_add": (_scatter("add"), "ScatterElements(reduction=add)"),
    "scatter": (_scatter("none"), "ScatterElements"), "matmul": (_same("MatMul"), "MatMul"),
    "constant": (_constant, "ConstantOfShape (filled), an initializer (listed values)"),
    "iota": (_iota, "Range, Reshape, Expand"), "conv": (_conv, "Conv"),
}

#: primitives with no ONNX equivalent, and why
NO_ONNX_EQUIVALENT: dict[str, str] = {
    "random_uniform": "kiln's counter-based generator (same numbers for the same seed and offset) has no ONNX "
                      "counterpart; ONNX RandomUniform draws other numbers",
}


def coverage_table() -> str:
    """The primitive coverage table docs/export.md shows (Markdown), generated from `ONNX_BUILDERS`."""
    rows = ["| kiln primitive | ONNX |", "|---|---|"]
    for name in PRIMITIVES:
        if name in ONNX_BUILDERS:
            rows.append(f"| `{name}` | {ONNX_BUILDERS[name][1]} |")
        else:
            rows.append(f"| `{name}` | none: {NO_ONNX_EQUIVALENT.get(name, 'not written yet')} |")
    return "\n".join(rows)


def _value_info(onnx, name: str, spec) -> Any:
    shape = [s if isinstance(s, str) else int(s) for s in spec.shape]
    return onnx.helper.make_tensor_value_info(name, _elem_type(spec.dtype), shape)


def _check_opset(opset: int | None) -> int:
    onnx = _onnx()
    newest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset is None else opset
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"write_onnx: opset must be an integer from {MIN_OPSET} to {newest} (the installed onnx's "
                         f"newest), got {opset!r}")
    return opset


def to_onnx_model(exported, opset: int | None = None):
    """The ONNX ModelProto of `exported` (checked with `onnx.checker`)."""
    onnx = _onnx()
    opset = _check_opset(opset)
    g = exported.graph
    n_user = len(exported.input_specs)
    if len(g.inputs) != n_user + len(exported.state):
        raise ValueError(f"write_onnx: the graph has {len(g.inputs)} inputs, but the program declares {n_user} "
                         f"inputs and {len(exported.state)} state tensors")
    for node in g.nodes:  # name the first primitive without an equivalent before doing any work
        if node.op not in ONNX_BUILDERS:
            raise UnsupportedPrimitive(f"primitive {node.op!r} (node %{node.name}{_from(node)}) has no ONNX "
                                       f"equivalent" + (f": {NO_ONNX_EQUIVALENT[node.op]}"
                                                        if node.op in NO_ONNX_EQUIVALENT else ""))
    attrs = exported.symbolic_attrs()
    w = _Writer(exported, opset)
    names: dict[int, str] = {}
    for k, node in enumerate(g.inputs):
        if k < n_user:
            names[id(node)] = exported.input_specs[k].name
        else:
            if node.name not in exported.state:
                raise ValueError(f"write_onnx: state input %{node.name} has no entry in the program's state")
            arr = np.ascontiguousarray(exported.state[node.name], dtype=node.dtype.np_dtype)
            if arr.shape != node.shape:
                raise ValueError(f"write_onnx: state {node.name!r} has shape {arr.shape}, the graph expects "
                                 f"{node.shape}")
            w.initializers.append(onnx.numpy_helper.from_array(arr, node.name))
            names[id(node)] = node.name
    for node, a in zip(g.nodes, attrs):
        w.current = node
        builder = ONNX_BUILDERS[node.op][0]
        names[id(node)] = builder(w, node, [names[id(i)] for i in node.inputs], a)
    outputs = []
    for spec, node in zip(exported.output_specs, g.outputs):
        w.nodes.append(onnx.helper.make_node("Identity", [names[id(node)]], [spec.name]))
        outputs.append(_value_info(onnx, spec.name, spec))
    graph = onnx.helper.make_graph(w.nodes, _safe_name(g.name),
                                   [_value_info(onnx, s.name, s) for s in exported.input_specs], outputs,
                                   initializer=w.initializers)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="kiln", ir_version=_ir_version(onnx, opset))
    onnx.checker.check_model(model, full_check=True)
    return model


def _ir_version(onnx, opset: int) -> int:
    """The oldest IR version that carries `opset` (runtimes reject IR versions newer than they know)."""
    for _release, ir, ai_onnx, *_ in onnx.helper.VERSION_TABLE:
        if ai_onnx >= opset:
            return ir
    return onnx.IR_VERSION


def _safe_name(name: str) -> str:
    return name or "main"


def write_onnx(exported, path: str | os.PathLike, opset: int | None = None) -> None:
    """Write `exported` (an ExportedProgram) to `path` as an ONNX model at `opset` (default 18).

    Raises UnsupportedPrimitive naming the first node whose primitive has no ONNX equivalent."""
    onnx = _onnx()
    model = to_onnx_model(exported, opset)
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"write_onnx: directory {parent!r} of path {path!r} does not exist")
    onnx.save_model(model, path)
