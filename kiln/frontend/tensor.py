"""The Tensor and the one dispatch point, `apply`, through which every primitive runs.

A Tensor's value lives in a `_Cell`: a numpy array when eager on the CPU, a
`cuda_device.DeviceArray` when eager on the CUDA device (each primitive then runs as a cached
one-primitive kernel, `kiln.runtime.cuda_eager`), or an ir Node while a `kiln.compile` trace is
recording. Aliases (`detach()`, `.data`) share the cell, so an
in-place update seen through one is seen through all, eager or traced.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from ..ir import dtypes as dt
from ..ir.dtypes import DType
from ..ir.graph import Node
from ..ir.primitives import MOVEMENT, get_primitive
from ..runtime.cuda_device import DeviceArray
from .autograd import AccumulateGrad, BackwardNode, is_grad_enabled, no_grad, run_backward
from .dims import _norm_dim
from .layouts import layout, strided
from .printing import format_array
from .source_location import user_location
from .view_strides import makes_view


class Size(tuple):
    """A tensor's shape: a tuple of ints, as torch.Size."""

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n

    def __repr__(self) -> str:
        return f"kiln.Size([{', '.join(str(s) for s in self)}])"


class device:
    """A device name: 'cpu' or 'cuda' (CUDA device 0: 'cuda' and 'cuda:0' are equal)."""

    def __init__(self, spec="cpu", index: int | None = None):
        if isinstance(spec, device):
            spec, index = spec.type, spec.index
        spec = str(spec)
        if ":" in spec:
            spec, idx = spec.split(":", 1)
            index = int(idx)
        if spec not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {spec}")
        self.type = spec
        self.index = index

    def __eq__(self, other):
        try:
            other = device(other)
        except (RuntimeError, TypeError, ValueError):
            return NotImplemented
        return self.type == other.type and (self.index or 0) == (other.index or 0)

    def __hash__(self):
        return hash((self.type, self.index or 0))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + (f", index={self.index})" if self.index is not None else ")")


CPU = device("cpu")
CUDA = device("cuda", 0)


def _check_device(spec) -> device:
    """The device `spec` names (cpu, cuda, cuda:0), checked usable; RuntimeError naming why not."""
    d = device(spec)
    if d.type != "cpu":
        from ..runtime.cuda_device import current
        why = current().unavailable_reason()
        if why is not None:
            raise RuntimeError(f"device {d} is not available: no CUDA device is usable here ({why}); use "
                               "device='cpu', or KILN_CUDA_SIM=1 for the host simulator (see docs/cuda.md)")
        if d.index not in (None, 0):
            raise RuntimeError(f"device {d} is not available: kiln uses CUDA device 0 only")
        return CUDA
    return CPU


def _mixed_devices(first: device, second: device) -> RuntimeError:
    return RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                        f"{first} and {second}!")


def to_device_value(value, d: device):
    """A tensor value (numpy array or DeviceArray) on device `d`: the same object when already there."""
    if d.type == "cuda":
        return value if type(value) is DeviceArray else DeviceArray.from_numpy(value)
    return value.numpy() if type(value) is DeviceArray else value


_NP_TO_DTYPE = {d.np_dtype: d for d in dt.ALL_DTYPES}


class _Cell:
    __slots__ = ("value", "trace")

    def __init__(self, value, trace=None):
        self.value = value
        self.trace = trace


# -- tracing hooks (the trace module installs the active trace here) -----------------
_tls = threading.local()


def active_trace():
    return getattr(_tls, "trace", None)


def set_active_trace(trace) -> Any:
    prev = getattr(_tls, "trace", None)
    _tls.trace = trace
    return prev


class TracingError(RuntimeError):
    """Something inside `kiln.compile` needs a concrete value that only exists at run time."""


def _escaped(t) -> RuntimeError:
    return RuntimeError("this tensor was created while tracing a kiln.compile function and escaped it "
                        "(for example stored in a global); return it from the function instead")


def apply(name: str, *args: "Tensor", **attrs) -> "Tensor":
    """Apply primitive `name` to tensors: eager numpy, or a new node in the active trace."""
    prim = get_primitive(name)
    trace = active_trace()
    for a in args:
        if a._base is not None and a._view_synced != a._vc[0]:
            a._resync_view()
    if trace is None:
        on_device = False
        for a in args:
            if a._cell.trace is not None:
                raise _escaped(a)
            if a._cell.value.__class__ is DeviceArray:
                on_device = True
        if on_device:
            out = _apply_on_device(prim, args, attrs)
        else:
            prim.abstract_eval(args, attrs)
            arr = prim.impl(*[a._cell.value for a in args], **attrs)
            out = Tensor._make(arr, None)
            if not args or (len(args) == 1 and (args[0]._operand_constant or args[0]._cell.value.ndim == 0)):
                out._operand_constant = True  # made from literals or a 0-d tensor: may join a CUDA operation
            if prim.kind == MOVEMENT and len(args) == 1 and np.may_share_memory(arr, args[0]._cell.value):
                _mark_view(out, args[0], name, attrs)
    else:
        out = trace.emit(prim, args, attrs)
        if prim.kind == MOVEMENT and len(args) == 1:
            view = _traced_view(trace, args[0], name, attrs, out.shape)
            if view:
                _mark_view(out, args[0], name, attrs)
            if name == "reshape":
                src = args[0]
                base = src._base if src._base is not None else src
                trace.reshapes.append((base, src._view_chain, attrs, out.shape, view, out, base._vc[0], out._vc[0]))
    if prim.vjp is not None and is_grad_enabled():
        for a in args:
            if a._requires_grad:
                if out.dtype.is_floating_point:
                    out._grad_fn = BackwardNode(prim, attrs, args, out)
                    out._requires_grad = True
                break
    return out


def _apply_on_device(prim, args, attrs) -> "Tensor":
    """Eager `prim` on CUDA tensors: one cached one-primitive kernel on the device. A CPU operand is
    accepted (and copied over) only when 0-d, as in PyTorch, or made by an op from Python numbers or a
    0-d tensor (the literal of `x * 2`, a 0-d hyperparameter broadcast to `x`'s shape)."""
    from ..runtime.cuda_eager import run_primitive
    shape, dtype = prim.abstract_eval(args, attrs)
    arrays = []
    for a in args:
        v = a._cell.value
        if v.__class__ is not DeviceArray:
            if v.ndim != 0 and not a._operand_constant:
                first = args[0].device
                raise _mixed_devices(first, CPU if first.type == "cuda" else CUDA)
            v = DeviceArray.from_numpy(v)
            if a._operand_constant:
                a._cell.value = v  # an op's literal moves for good (autograd may save it for backward)
        arrays.append(v)
    out = Tensor._make(run_primitive(prim.name, attrs, arrays, shape, dtype), None)
    if prim.kind == MOVEMENT and len(args) == 1 and args[0]._cell.value.__class__ is DeviceArray:
        _mark_view(out, args[0], prim.name, attrs)  # a copy on the device: in-place writes go through the base
    return out


def _traced_view(trace, src: "Tensor", name: str, attrs: dict, shape) -> bool:
    """Is movement op `name` on traced `src` a view, as it would be eagerly (not a pad, not a
    reshape that must copy, not empty)?"""
    base = src._base if src._base is not None else src
    return makes_view(name, attrs, base.shape, src._view_chain, shape, trace.root_strides.get(id(base)))


def _mark_view(out: "Tensor", src: "Tensor", name: str, attrs: dict) -> None:
    """Record that `out` is a view of `src`'s root base (shared version counter, replayable chain)."""
    out._vc = src._vc
    out._base = src._base if src._base is not None else src
    out._view_chain = src._view_chain + ((name, attrs),)
    out._view_synced = src._vc[0]


def _replay(base: "Tensor", chain) -> "Tensor":
    v = base
    for name, attrs in chain:
        v = apply(name, v, **attrs)
    return v


class Tensor:
    """An n-dimensional array with PyTorch's semantics (eager numpy, or traced inside kiln.compile)."""

    __array_priority__ = 1000
    _operand_constant = False  # made by an op from Python numbers or a 0-d tensor (a constant, broadcast)

    def __new__(cls, *args, **kwargs):
        """The legacy constructor, as torch.Tensor: `Tensor(data)` copies data as float32,
        `Tensor(*sizes)` makes a (zero-filled) float32 tensor of that shape."""
        if cls is not Tensor:
            return object.__new__(cls)
        from .creation import tensor, zeros  # function-local: creation builds on Tensor (Tensor(data) is tensor(data))
        if kwargs:
            raise TypeError(f"Tensor() got unexpected keyword arguments {sorted(kwargs)}; use kiln.tensor(...)")
        if len(args) == 1 and not isinstance(args[0], (int, np.integer)):
            return tensor(args[0], dtype=dt.float32)
        return zeros(*args, dtype=dt.float32)

    def __init__(self, *args, **kwargs):
        pass

    @classmethod
    def _make(cls, value, trace=None) -> "Tensor":
        t = object.__new__(cls)
        t._cell = _Cell(value, trace)
        t._vc = [0]
        t._base = None
        t._view_chain = ()
        t._view_synced = 0
        t._detached = False  # a detach()/.data alias: inside a trace, reads go through stop_gradient
        t._requires_grad = False
        t._grad_fn = None
        t._output_nr = 0
        t._grad = None
        t._acc = None
        t._hooks = None  # leaf gradient hooks {0: {id: fn}}
        return t

    # -- metadata --------------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._cell.value.shape)

    def size(self, dim: int | None = None):
        if dim is None:
            return self.shape
        return self.shape[_norm_dim(dim, self.ndim)]

    @property
    def dtype(self) -> DType:
        v = self._cell.value
        try:
            return _NP_TO_DTYPE[v.dtype]
        except KeyError:
            return v.dtype if isinstance(v, Node) else dt.from_numpy_dtype(v.dtype)

    @property
    def device(self) -> device:
        cell = self._cell
        if cell.value.__class__ is DeviceArray:
            return CUDA
        if cell.trace is not None:
            return cell.trace.device  # a traced value: the device of the trace's inputs
        return CPU

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def is_cpu(self) -> bool:
        return self.device.type == "cpu"

    @property
    def layout(self) -> layout:
        return strided

    # Device and layout predicates of PyTorch: kiln tensors are dense, strided CPU or CUDA tensors.
    is_xpu = is_mps = is_meta = is_xla = is_ipu = is_mtia = is_maia = is_vulkan = property(lambda self: False)
    is_sparse = is_sparse_csr = is_quantized = is_mkldnn = is_nested = property(lambda self: False)

    def is_complex(self) -> bool:
        """False: kiln has no complex dtypes."""
        return False

    def is_signed(self) -> bool:
        """True for every dtype but bool (kiln has no unsigned integer dtypes)."""
        return not self.dtype.is_bool

    def is_conj(self) -> bool:
        return False

    def is_neg(self) -> bool:
        return False

    def is_inference(self) -> bool:
        """False: kiln has no inference mode (`no_grad` tensors are ordinary tensors, as in PyTorch)."""
        return False

    @property
    def ndim(self) -> int:
        return len(self._cell.value.shape)

    def dim(self) -> int:
        return self.ndim

    ndimension = dim

    def numel(self) -> int:
        return self.shape.numel()

    nelement = numel

    def element_size(self) -> int:
        return self.dtype.itemsize

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def is_contiguous(self, memory_format=None) -> bool:
        """Whether the elements lie in memory in the order `memory_format` names (default: row-major),
        as PyTorch answers it; eager views (a transpose, a strided slice) are not contiguous. A traced
        value is logical: always contiguous."""
        v = self._cell.value
        if not isinstance(v, np.ndarray):
            return True  # traced (logical) or on the device (always row-major)
        name = getattr(memory_format, "name", "contiguous_format")
        if name in ("contiguous_format", "preserve_format"):
            return bool(v.flags.c_contiguous)
        rank = {"channels_last": 4, "channels_last_3d": 5}.get(name)
        if rank is None:
            raise ValueError(f"is_contiguous: unknown memory_format {memory_format!r}")
        if v.ndim != rank:
            return False
        order = (0,) + tuple(range(2, rank)) + (1,)  # N, spatial..., C: the channels-last layout
        expected, stride = [0] * rank, v.itemsize
        for d in reversed(order):
            expected[d] = stride
            stride *= v.shape[d]
        return all(v.shape[d] == 1 or v.strides[d] == expected[d] for d in range(rank))

    @property
    def is_tracer(self) -> bool:
        """True while this tensor is a symbolic value inside a kiln.compile trace."""
        return self._cell.trace is not None

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    __hash__ = object.__hash__

    # -- concrete values -----------------------------------------------------------------
    def _concrete(self, what: str) -> np.ndarray:
        """The value as a numpy array (a host copy for a CUDA tensor); TracingError while traced."""
        if self._cell.trace is not None:
            raise TracingError(
                f"{user_location()}: {what} needs the tensor's value, but inside kiln.compile tensors are "
                "symbolic, so Python control flow cannot depend on them. Use kiln.where(cond, a, b) to select "
                "values, or move this logic outside the compiled function.")
        v = self._cell.value
        return v.numpy() if v.__class__ is DeviceArray else v

    def _host_only(self, what: str) -> None:
        if self._cell.value.__class__ is DeviceArray:
            raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() to copy the "
                            f"tensor to host memory first. (in {what})")

    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self._requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        if not force:
            self._host_only("Tensor.numpy()")
        return self._concrete("Tensor.numpy()")

    def __array__(self, dtype=None, copy=None):
        self._host_only("numpy.asarray(tensor)")
        arr = self._concrete("converting a tensor to a numpy array")
        if dtype is not None:
            arr = arr.astype(dtype)
        return np.array(arr, copy=True) if copy else arr

    def item(self):
        arr = self._concrete("Tensor.item()")
        if arr.size != 1:
            raise RuntimeError(f"a Tensor with {arr.size} elements cannot be converted to Scalar")
        return arr.reshape(()).item()

    def tolist(self):
        return self._concrete("Tensor.tolist()").tolist()

    def __bool__(self) -> bool:
        arr = self._concrete("using a tensor as a Python bool (if/while/and/or)")
        if arr.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous")
        return bool(arr.reshape(()))

    def __float__(self) -> float:
        arr = self._concrete("float(tensor)")
        if arr.size != 1:
            raise TypeError("only one element tensors can be converted to Python scalars")
        return float(arr.reshape(()))

    def __int__(self) -> int:
        arr = self._concrete("int(tensor)")
        if arr.size != 1:
            raise TypeError("only one element tensors can be converted to Python scalars")
        return int(arr.reshape(()))

    def __index__(self) -> int:
        if not (self.dtype.is_integer or self.dtype.is_bool) or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self._concrete("using a tensor as an index"))

    def __repr__(self) -> str:
        if self._cell.trace is not None:
            v = self._cell.value
            return f"tensor(<traced %{v.name}: {v.dtype.short}[{','.join(map(str, v.shape))}]>)"
        arr = self._concrete("printing a tensor")
        extras = [f"device='{self.device}'"] if self._cell.value.__class__ is DeviceArray else []
        if arr.size == 0:
            body = "[]" if arr.ndim == 1 else f"[], size={tuple(arr.shape)}"
        else:
            body = format_array(arr)
        d = self.dtype
        if d not in (dt.float32, dt.int64, dt.bool_):
            extras.append(f"dtype=kiln.{d.name}")
        if self._grad_fn is not None:
            extras.append(f"grad_fn=<{self._grad_fn.name()}>")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    __str__ = __repr__

    # -- autograd ------------------------------------------------------------------------
    def _sync_view(self) -> None:
        """Re-derive a view whose base was updated in place since (its history may now need grad)."""
        if self._base is not None and self._view_synced != self._vc[0]:
            self._resync_view()

    @property
    def requires_grad(self) -> bool:
        self._sync_view()
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if self._grad_fn is not None and not requires_grad:
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want to use a "
                               "computed variable in a subgraph that doesn't require differentiation use "
                               "var_no_grad = var.detach().")
        if requires_grad and not self.dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point dtype can require gradients "
                               f"(this one is {self.dtype.name})")
        self._requires_grad = bool(requires_grad)
        return self

    @property
    def grad_fn(self):
        self._sync_view()
        return self._grad_fn

    @property
    def _version(self) -> int:
        """How many in-place updates this tensor's storage has had (shared by its views), as PyTorch's."""
        return self._vc[0]

    @property
    def is_leaf(self) -> bool:
        self._sync_view()
        return self._grad_fn is None

    @property
    def grad(self):
        tr = active_trace()
        if tr is not None:
            tr.guard_grad_presence(self)
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got {type(value).__name__}")
            if tuple(value.shape) != tuple(self.shape):
                raise RuntimeError(f"assigned grad has data of a different size: {tuple(value.shape)} "
                                   f"vs {tuple(self.shape)}")
        tr = active_trace()
        if tr is not None:
            tr.note_grad_write(self)
        self._grad = value

    def _accumulator(self) -> AccumulateGrad:
        if self._acc is None:
            self._acc = AccumulateGrad(self)
        return self._acc

    def _accumulate_grad(self, g: "Tensor", create_graph: bool) -> None:
        if g.dtype != self.dtype:
            g = apply("cast", g, dtype=self.dtype)
        if self.grad is None:
            if create_graph:
                self.grad = g
            else:
                fresh = apply("cast", g, dtype=g.dtype) if g._cell.trace is None else Tensor._make(g._cell.value, g._cell.trace)
                fresh._requires_grad = False
                fresh._grad_fn = None
                self.grad = fresh
        elif create_graph:
            self.grad = self._grad + g
        else:
            with no_grad():
                self._grad.add_(g)

    def register_hook(self, hook) -> "_HookHandle":
        """Call `hook(grad)` when this tensor's gradient is computed; a returned tensor replaces it."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._grad_fn is None:
            if self._hooks is None:
                self._hooks = {0: {}}
            table = self._hooks[0]
        else:
            node = self._grad_fn
            if getattr(node, "hooks", None) is None:
                node.hooks = {}
            table = node.hooks.setdefault(self._output_nr, {})
        return _HookHandle(table, hook)

    def retain_grad(self) -> None:
        if self._grad_fn is None:
            return
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        self._grad_fn.retained = weakref.ref(self)

    def backward(self, gradient=None, retain_graph=None, create_graph: bool = False, inputs=None) -> None:
        from .creation import ones_like, tensor as _tensor  # function-local: creation builds on Tensor
        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            gradient = ones_like(self)
        elif not isinstance(gradient, Tensor):
            gradient = _tensor(gradient, dtype=self.dtype)
        if tuple(gradient.shape) != tuple(self.shape):
            raise RuntimeError(f"Mismatch in shape: grad_output[0] has a shape of {tuple(gradient.shape)} and "
                               f"output[0] has a shape of {tuple(self.shape)}.")
        if retain_graph is None:
            retain_graph = create_graph
        if inputs is not None:
            inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
            grads = run_backward([self], [gradient], retain_graph, create_graph, inputs=inputs)
            for t, g in zip(inputs, grads):
                if g is not None:
                    t._accumulate_grad(g, create_graph)
            return
        run_backward([self], [gradient], retain_graph, create_graph)

    def detach(self) -> "Tensor":
        t = Tensor._make(None)
        t._cell = self._cell
        t._vc = self._vc
        t._base = self._base
        t._view_chain = self._view_chain
        t._view_synced = self._view_synced
        t._detached = True
        return t

    def detach_(self) -> "Tensor":
        self._grad_fn = None
        self._requires_grad = False
        return self

    @property
    def data(self) -> "Tensor":
        return self.detach()

    @data.setter
    def data(self, other: "Tensor") -> None:
        if tuple(other.shape) != tuple(self.shape) or other.dtype != self.dtype:
            # PyTorch allows swapping in any storage; kiln keeps shape/dtype fixed so traces stay valid.
            raise RuntimeError(f"assigning .data of shape {tuple(other.shape)} {other.dtype.name} to a tensor of "
                               f"shape {tuple(self.shape)} {self.dtype.name}; kiln requires the same shape and dtype")
        self._assign_value(other._cell.value if other._cell.trace is None else other)

    # -- in-place machinery ------------------------------------------------------------
    def _check_inplace(self, result: "Tensor") -> None:
        if is_grad_enabled() and self._grad_fn is None and self._requires_grad:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        if tuple(result.shape) != tuple(self.shape):
            raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast shape "
                               f"{list(result.shape)}")
        if self._base is not None and is_grad_enabled() and self._base._grad_fn is None and self._base._requires_grad:
            raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place operation.")

    def _assign_through_base(self, result: "Tensor") -> "Tensor":
        """In-place update of a view: scatter the new values into the base, then re-derive the view.

        This keeps autograd (the base's history gains a scatter) and tracing (the base is
        rebound) right, as PyTorch's view+inplace handling does.
        """
        base = self._base
        for name, attrs in self._view_chain:
            if name == "broadcast_to":
                raise RuntimeError("unsupported operation: more than one element of the written-to tensor refers "
                                   "to a single memory location (it is an expanded view). Please clone() the tensor "
                                   "before performing the operation.")
        n = base.numel()
        with no_grad():
            iota = apply("iota", shape=(n,), axis=0, dtype=dt.int64)
            pos = _replay(apply("reshape", iota, shape=tuple(base.shape)), self._view_chain)
            pos = apply("reshape", pos, shape=(pos.numel(),))
        flat = apply("reshape", base, shape=(n,))
        vals = apply("reshape", result, shape=(result.numel(),))
        new = apply("scatter", flat, pos, vals, axis=0)
        base._assign_(apply("reshape", new, shape=tuple(base.shape)))
        self._resync_view()
        return self

    def _resync_view(self) -> None:
        """Re-derive this view from its base after the base changed (value when traced, history always)."""
        base = self._base
        if (self._cell.trace is None and active_trace() is None and not (base._requires_grad and is_grad_enabled())
                and self._cell.value.__class__ is not DeviceArray):
            self._view_synced = self._vc[0]  # eager CPU memory is shared: nothing to re-derive
            return
        v = _replay(base, self._view_chain)
        self._cell.value = v._cell.value
        self._cell.trace = v._cell.trace
        if not self._detached:  # a detach()/.data alias shares the values, never the history
            self._grad_fn, self._output_nr = v._grad_fn, v._output_nr
            self._requires_grad = v._requires_grad
        self._view_synced = self._vc[0]

    def _assign_value(self, new) -> None:
        """Replace this tensor's value by `new` (ndarray, or a traced Tensor) in place, bumping the version."""
        tr = active_trace()
        if tr is None:
            arr = self._cell.value
            src = new if isinstance(new, (np.ndarray, DeviceArray)) else new._cell.value
            if arr.__class__ is DeviceArray or src.__class__ is DeviceArray:
                _assign_device_value(arr, src)
                self._vc[0] += 1
                return
            if not arr.flags.writeable:
                if 0 in arr.strides and arr.size > 1:
                    raise RuntimeError("unsupported operation: more than one element of the written-to tensor "
                                       "refers to a single memory location (it is an expanded view). Please clone() "
                                       "the tensor before performing the operation.")
                raise RuntimeError("cannot write into this tensor in place: it shares memory with a read-only numpy "
                                   "array (from_numpy of a non-writeable array); clone() it first")
            np.copyto(arr, src, casting="unsafe")
        else:
            if self._base is not None:
                raise RuntimeError("in-place update of a view inside kiln.compile is not supported yet; write to "
                                   "the base tensor (x[idx] = value) instead")
            tr.write(self, new)
        self._vc[0] += 1

    def _assign_(self, result: "Tensor") -> "Tensor":
        """Make `result` (computed out of place from self) this tensor's new value, with its autograd history."""
        self._check_inplace(result)
        if result.dtype != self.dtype:
            result = apply("cast", result, dtype=self.dtype)
        if is_grad_enabled() and self._requires_grad and not result._requires_grad:
            # PyTorch: the tensor still requires grad, and its old history gets a zero gradient
            # (x.clone().zero_()); a select on a constant true mask keeps the values bit for bit
            keep = apply("constant", value=True, shape=tuple(self.shape), dtype=dt.bool_)
            result = apply("select", keep, result, self)
        base = self._base
        if base is not None and (active_trace() is not None or base._cell.value.__class__ is DeviceArray or (
                is_grad_enabled() and (result._requires_grad or base._requires_grad))):
            return self._assign_through_base(result)
        self._assign_value(result if result._cell.trace is not None or active_trace() else result._cell.value)
        if result._requires_grad and is_grad_enabled():
            self._grad_fn = result._grad_fn
            self._output_nr = result._output_nr
            self._requires_grad = True
        return self


def _assign_device_value(arr, src) -> None:
    """Write `src` into `arr` in place where one of them is on the CUDA device (same shape)."""
    if arr.__class__ is DeviceArray:
        if src.__class__ is not DeviceArray:
            src = np.asarray(src)
            if src.ndim != 0 and tuple(src.shape) != arr.shape:
                raise _mixed_devices(CUDA, CPU)
            src = DeviceArray.from_numpy(np.broadcast_to(src.astype(arr.dtype), arr.shape))
        if src.dtype != arr.dtype or src.shape != arr.shape:
            raise RuntimeError(f"writing a {src.dtype}{list(src.shape)} device array into a {arr.dtype}"
                               f"{list(arr.shape)} tensor in place")
        arr.device.copy(arr.buffer, src.buffer, arr.nbytes)
    else:
        np.copyto(arr, src.numpy(), casting="unsafe")


class _HookHandle:
    """Returned by register_hook; `remove()` unregisters the hook."""

    _next = 0

    def __init__(self, table: dict, fn):
        _HookHandle._next += 1
        self.id = _HookHandle._next
        self._table = table
        table[self.id] = fn

    def remove(self) -> None:
        self._table.pop(self.id, None)

