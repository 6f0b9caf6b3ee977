"""`kiln.compile`: trace a function per input signature, cache the graph, run it."""
from __future__ import annotations

import functools
import inspect
import re
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .. import config
from ..ir.graph import Graph, Node
from ..ir.dtypes import DType
from ..ir.parser import parse_graph
from ..ir.verifier import verify
from ..passes import default_pipeline
from ..passes.autodiff import SplitGraphs, split_joint, vjp_graph
from ..passes.manager import dump_writer as _dump_writer
from ..runtime.backend import check_backend_name, executable, run_graph
from .autograd import _FREED_MSG, _edge, is_grad_enabled
from .pytree import spec_key, tree_flatten, tree_unflatten
from ..runtime.cuda_device import DeviceArray
from .tensor import Tensor, _mixed_devices, _replay, active_trace, device
from .trace import StateWrite, Trace, tracing
from .view_strides import reshape_is_view



#: Held while tracing (the lifted tensors' cells hold symbolic values then) and while a compiled
#: call reads its inputs or writes results back, so that calls from other threads never see a
#: tensor in the middle of another thread's trace. Native code runs without it.
_STATE_LOCK = threading.RLock()


def _leaf_key(x: Any) -> Any:
    if isinstance(x, Tensor):
        cell = x._cell
        if cell.trace is not None:
            raise RuntimeError("a traced tensor was passed to a compiled function from outside its trace")
        # (shape, numpy dtype, requires_grad), read without the properties: this runs on every call
        # (the dtype object itself: `dtype.name` costs more than the rest of the key)
        v = cell.value
        return (v.shape, v.dtype, x._requires_grad)
    if x is None or isinstance(x, (bool, int, float, str, complex, DType)):
        return (type(x).__name__, x)
    try:
        hash(x)
    except TypeError:
        return ("id", type(x).__name__, id(x))
    if type(x).__hash__ is object.__hash__:
        return ("id", type(x).__name__, id(x))
    return ("v", type(x).__name__, x)


@dataclass
class CompiledEntry:
    """One traced specialisation: the graph and how to feed and unpack it."""

    graph: Graph
    n_args: int  # explicit tensor arguments (first graph inputs)
    captured_get: list[Callable[[], Any]]  # read the lifted tensors at call time (graph inputs after the arguments)
    out_spec: Any
    out_leaves: list[Any]  # per output leaf: ("out", k) graph output index, or ("const", value)
    mutations: list[tuple[int, int]]  # (graph output index, lifted index) write-backs
    grad_sets: list[tuple[Tensor, int | None]]  # tensors whose .grad is set: output index or None
    captured_sig: list[tuple] = field(default_factory=list)
    autograd: SplitGraphs | None = None  # forward/backward graphs when outputs need gradients
    wrt: list[int] = field(default_factory=list)  # lifted indices the backward differentiates
    diff_outputs: list[int] = field(default_factory=list)  # graph outputs that get a grad_fn

    guards: list = field(default_factory=list)  # (read, value): Python state the trace specialised on
    pins: list = field(default_factory=list)  # objects guarded by identity, kept alive (see frontend.guards)
    state_writes: list[StateWrite] = field(default_factory=list)  # stores redone after each call ("node" -> output index)
    # (argument k, argument j, view chain): argument k shares argument j's root base and is reached
    # from it by `chain` (() for the base itself), for every argument of a group sharing a base
    # (the trace reads the base through argument j, see `_arguments_as_roots`); which arguments
    # share a base at all is part of the cache key (`alias_key`)
    view_guards: list[tuple[int, int, tuple]] = field(default_factory=list)
    # (argument k, view chain, reshape attrs, shape, was a view): a reshape of argument k whose
    # being a view or a copy mattered (an in-place update followed); it depends on k's strides
    stride_guards: list[tuple] = field(default_factory=list)
    # graph outputs that are new values eagerly (not an argument or a view of one) but that the run
    # may hand back as an input's memory (the optimized graph passes an input through: `x * 1`,
    # `x.clone()`): copied when they share memory with an input (see `_unshared_outputs`)
    fresh_outputs: frozenset = frozenset()
    # user output leaf position -> (lifted index, view chain, detach the root, detach the result): an
    # output that is eagerly an argument or lifted tensor, or a view of one (`x`, `x[1:]`, `x.T`,
    # `x.detach()`). The call rebuilds it from the call's own tensor after the write-backs, so it
    # shares that tensor's memory, version counter and autograd history, as in PyTorch, on every
    # backend (the graph still computes the value, for export and the transforms)
    output_views: dict = field(default_factory=dict)

    def captured_now(self, tensors: Sequence[Tensor] | None = None) -> list[Tensor]:
        """The captured tensors as of now (e.g. a parameter's current `.grad` object); the base of
        arguments that share one is read through `tensors`, the call's tensor arguments."""
        return [get(tensors) if isinstance(get, ArgumentBase) else get() for get in self.captured_get]

    def guards_hold(self, tensors: Sequence[Tensor] | None = None) -> bool:
        return self.captured_if_guards_hold(tensors) is not None

    def captured_if_guards_hold(self, tensors: Sequence[Tensor] | None = None) -> list[Tensor] | None:
        """The captured tensors as of now when every guard holds for this call, else None (one
        pass: the call runs on the very tensors the guards checked)."""
        if not (self.view_guards or self.stride_guards or self.captured_get or self.guards):
            return []  # nothing to check: a program of its arguments alone (the dispatch benchmark's x + 1)
        if self.view_guards:
            if tensors is None:
                return None
            for k, j, chain in self.view_guards:
                tj, tk = tensors[j], tensors[k]
                if ((tk._base if tk._base is not None else tk) is not (tj._base if tj._base is not None else tj)
                        or tk._view_chain != chain):
                    return None
        if self.stride_guards:
            if tensors is None:
                return None
            for k, chain, attrs, shape, view in self.stride_guards:
                if reshape_is_view(tensors[k]._cell.value, chain, attrs, shape) != view:
                    return None
        captured = self.captured_now(tensors)
        sig = self.__dict__.get("_captured_arrays_sig")
        if sig is None:  # (shape, numpy dtype) per captured tensor: compared without the properties
            sig = self.__dict__["_captured_arrays_sig"] = [(tuple(shape), dtype.np_dtype)
                                                            for shape, dtype in self.captured_sig]
        for t, (shape, dtype) in zip(captured, sig):
            if t is None:
                return None
            v = t._cell.value
            if v.shape != shape or v.dtype != dtype:
                return None
        for read, value in self.guards:
            if read() != value:
                return None
        return captured


@dataclass
class CacheInfo:
    hits: int
    misses: int
    signatures: list

    def __repr__(self) -> str:
        return f"CacheInfo(hits={self.hits}, misses={self.misses}, signatures={len(self.signatures)})"


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompiledFunction:
    """A function specialised and cached per input signature; call it like the original."""

    def __init__(self, fn: Callable, *, recompile_limit: int = 8, name: str | None = None,
                 backend: str | None = None, mode: str | None = None):
        self.fn = fn
        self.backend = check_backend_name(backend) if backend is not None else None
        mode = "default" if mode is None else mode
        if mode not in COMPILE_MODES:
            raise ValueError(f"kiln.compile: mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
        self.mode = mode
        self.recompile_limit = recompile_limit
        self.name = _sanitize(name or getattr(fn, "__name__", "fn"))
        self._cache: dict[Any, CompiledEntry] = {}
        self._hits = 0
        self._misses = 0
        self._warned = False
        self._flat_specs: dict[int, Any] = {}
        functools.update_wrapper(self, fn)

    # -- public API ------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if active_trace() is not None:  # called from inside another trace: inline
            return self.fn(*args, **kwargs)
        with _STATE_LOCK:  # one hold: the lookup, and the reads of the tensors the guards checked
            entry, leaves, captured = self._find(args, kwargs)
            prepared = self._inputs(entry, leaves, captured)
        return self._run(entry, leaves, captured, prepared)

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._hits, self._misses, [k for k, v in self._cache.items() for _ in v])

    def cache_clear(self) -> None:
        self._cache.clear()
        self._hits = self._misses = 0

    def lower(self, *args, **kwargs):
        """Trace and compile for these arguments without running (as JAX's `jit(f).lower`):
        tensors or `kiln.ShapeDtype` specs. Returns a `kiln.Lowered` whose `as_text(stage)`
        shows each stage and whose `compile()` gives the callable."""
        from .lowered import lower_function  # function-local: lowered builds on this module
        return lower_function(self, args, kwargs)

    def graph_for(self, *args, **kwargs) -> Graph:
        """The graph this function runs for these arguments (traced now if not cached)."""
        entry, _ = self._lookup(args, kwargs, count=False)
        return entry.graph if entry.autograd is None else entry.autograd.forward

    # -- internals ---------------------------------------------------------------------------
    def _lookup(self, args, kwargs, count: bool = True):
        entry, leaves, _ = self._find(args, kwargs, count)
        return entry, leaves

    def _find(self, args, kwargs, count: bool = True):
        """(entry, flat leaves, the captured tensors the guards checked) for this call: a cache hit
        whose every guard holds, else a new trace."""
        sig = None
        if not kwargs:
            # the common call, positional tensors only: the spec depends on their count alone, and
            # each tensor's key is `_leaf_key`'s, inlined (this runs on every call)
            sig = []
            for a in args:
                if type(a) is not Tensor:
                    sig = None
                    break
                cell = a._cell
                if cell.trace is not None:
                    _leaf_key(a)  # raises: a tensor of another trace
                v = cell.value
                sig.append((v.shape, v.dtype, a._requires_grad))
        if sig is not None:
            leaves = list(args)
            n = len(args)
            if n > 1 and (args[0]._cell is args[1]._cell if n == 2 else len({id(a._cell) for a in args}) != n):
                raise _passed_twice()
            sk = self._flat_specs.get(n)
            if sk is None:
                sk = self._flat_specs[n] = spec_key(tree_flatten((args, kwargs))[1])
            aliases = alias_key(args) if n > 1 else None
            key = (sk, tuple(sig), is_grad_enabled(), aliases)
        else:
            leaves, spec = tree_flatten((args, kwargs))
            cells = [id(x._cell) for x in leaves if isinstance(x, Tensor)]
            if len(set(cells)) != len(cells):
                raise _passed_twice()
            sk = spec_key(spec)
            aliases = alias_key([x for x in leaves if isinstance(x, Tensor)]) if len(cells) > 1 else None
            key = (sk, tuple([_leaf_key(x) for x in leaves]), is_grad_enabled(), aliases)
        entries = self._cache.get(key)
        if entries is None:
            entries = self._cache[key] = []
        tensors = None
        for entry in entries:
            if (entry.view_guards or entry.stride_guards) and tensors is None:
                tensors = [x for x in leaves if isinstance(x, Tensor)]
            captured = entry.captured_if_guards_hold(tensors)
            if captured is not None:
                if count:
                    self._hits += 1
                return entry, leaves, captured
        if count:
            self._misses += 1
        entry = self._trace(args, kwargs)
        entries.append(entry)
        n = sum(len(v) for v in self._cache.values())
        if n > self.recompile_limit and not self._warned:
            self._warned = True
            warnings.warn(f"kiln.compile: {self.name} has been traced for {n} different input "
                          f"signatures (recompile_limit={self.recompile_limit}); each new shape, dtype or "
                          "non-tensor argument value retraces. Pass fixed shapes, or raise recompile_limit.",
                          RuntimeWarning, stacklevel=3)
        return entry, leaves, None

    def _trace(self, args, kwargs) -> CompiledEntry:
        return trace_function(self.fn, args, kwargs, name=self.name)

    @staticmethod
    def _inputs(entry: CompiledEntry, leaves, captured: list[Tensor] | None):
        """(tensor arguments, captured tensors, the arrays the program reads) of a call; under
        `_STATE_LOCK`."""
        tensors = leaves if len(leaves) == entry.n_args else [x for x in leaves if isinstance(x, Tensor)]
        if captured is None:
            captured = entry.captured_now(tensors)
        arrays = [t._cell.value for t in tensors]
        if captured:
            arrays += [t._cell.value for t in captured]
        return tensors, captured, arrays

    def _run(self, entry: CompiledEntry, leaves, captured: list[Tensor] | None = None, prepared=None):
        if prepared is None:
            with _STATE_LOCK:
                prepared = self._inputs(entry, leaves, captured)
        tensors, captured, arrays = prepared
        backend = self.backend
        if backend is None:
            for a in arrays:
                if a.__class__ is DeviceArray:
                    backend = "cuda"  # CUDA tensors in: the program runs on the device
                    break
        if entry.autograd is None:
            d = entry.__dict__
            run = d.get("_run_main")
            if run is None or d["_run_backend"] != backend:
                ex = executable(entry.graph, backend)
                # reduce-overhead: a backend that can (cuda) replays the program as one captured graph
                run = getattr(ex, "run_captured", ex.run) if self.mode == "reduce-overhead" else ex.run
                d["_run_main"] = run
                d["_run_backend"] = backend
                # outputs the backend allocated for this call alone: wrapped without a copy
                d["_owned_outputs"] = getattr(ex, "owned_outputs", frozenset())
            results = run(arrays)
            with _STATE_LOCK:
                return finish_call(entry, tensors, results, captured, d["_owned_outputs"])[0]
        split = entry.autograd
        results = list(run_graph(split.forward, arrays, backend))
        results[split.n_outputs:] = saved_before_write_back(entry, tensors + captured, results[split.n_outputs:])
        with _STATE_LOCK:
            out, by_index = finish_call(entry, tensors, results[:split.n_outputs])
        lifted = tensors + captured
        node = CompiledBackward(self.name, split.backward, results[split.n_outputs:],
                                [_edge(lifted[k]) for k in entry.wrt],
                                [(by_index[k].shape, by_index[k].dtype) for k in entry.diff_outputs], backend)
        for j, k in enumerate(entry.diff_outputs):
            t = by_index[k]
            t._grad_fn, t._output_nr, t._requires_grad = node, j, True
        return out


class CompiledBackward:
    """Autograd node for one call of a compiled function: runs its compiled backward graph."""

    retained = None

    def __init__(self, name: str, graph: Graph, saved: list, next_edges: list, out_types: list,
                 backend: str | None = None):
        self.fn_name = name
        self.backend = backend
        self.graph = graph
        self.saved = saved
        self.next = next_edges
        self.out_types = out_types
        self.n_outputs = len(out_types)

    def name(self) -> str:
        return "CompiledFunctionBackward"

    def __repr__(self) -> str:
        return f"<CompiledFunctionBackward of {self.fn_name}>"

    def run(self, grads: list, create_graph: bool) -> list:
        if create_graph:
            raise RuntimeError(f"create_graph=True (double backward) through the compiled function {self.fn_name} "
                               "is not supported; differentiate the plain Python function instead")
        if self.saved is None:
            raise RuntimeError(_FREED_MSG)
        cts = []
        for g, (shape, dtype) in zip(grads, self.out_types):
            if g is None:
                cts.append(np.zeros(tuple(shape), dtype.np_dtype))  # copied in by the cuda backend
            elif g.is_tracer:
                raise RuntimeError(f"backward through an eager call of the compiled function {self.fn_name} "
                                   "cannot be traced; call the compiled function inside the traced code instead")
            else:
                v = g._cell.value
                if v.__class__ is DeviceArray and self.backend != "cuda":
                    v = v.numpy()
                elif v.__class__ is not DeviceArray and self.backend == "cuda" and g.ndim:
                    raise _mixed_devices(device("cuda", 0), device("cpu"))
                cts.append(v if v.__class__ is DeviceArray and v.dtype == dtype.np_dtype
                           else np.asarray(v, dtype=dtype.np_dtype))
        return [Tensor._make(r) for r in run_graph(self.graph, list(self.saved) + cts, self.backend)]

    def release(self) -> None:
        self.saved = None


def saved_before_write_back(entry: CompiledEntry, lifted: list[Tensor], saved: list) -> list:
    """The values a compiled backward saved, safe from the call's write-backs: a saved graph input
    the call updates in place is that tensor's own memory (the backward would read the new
    values, e.g. a `stack` of an argument updated after it), so it is copied first."""
    if not entry.mutations:
        return saved
    written = [lifted[k]._cell.value for _, k in entry.mutations]
    return [np.array(v, copy=True) if isinstance(v, np.ndarray) and any(np.may_share_memory(v, w) for w in written)
            else v for v in saved]


def finish_call(entry: CompiledEntry, arg_tensors: list[Tensor], results: list[np.ndarray],
                captured: list[Tensor] | None = None, owned: frozenset = frozenset()):
    """Write back mutations and `.grad` assignments, then build the user's outputs. `owned`: the
    graph outputs the backend allocated for this call alone (no input's memory, no other
    output's), stored as a `.grad` without a copy.

    Returns (outputs as the function returned them, {graph output index: output tensor})."""
    if entry.out_spec[0] == "leaf" and not (entry.mutations or entry.grad_sets or entry.state_writes
                                            or entry.fresh_outputs or entry.output_views):
        kind, v = entry.out_leaves[0]  # one output and nothing to write back: the dispatch path
        if kind == "out":
            t = Tensor._make(results[v])
            return t, {v: t}
        return v, {}
    if (not entry.mutations and not entry.grad_sets and not entry.state_writes and not entry.fresh_outputs
            and not entry.output_views):
        lifted = arg_tensors
    else:
        lifted = arg_tensors + (entry.captured_now(arg_tensors) if captured is None else captured)
    if entry.fresh_outputs:
        results = _unshared(entry.fresh_outputs, results, lifted)
    for out_idx, lift_idx in entry.mutations:
        lifted[lift_idx]._assign_value(results[out_idx])
    for t, out_idx in entry.grad_sets:
        t._grad = None if out_idx is None else Tensor._make(
            results[out_idx] if out_idx in owned else _copied(results[out_idx]))
    for w in entry.state_writes:
        w.put(tree_unflatten(w.spec, [_state_value(leaf, lifted, results) for leaf in w.leaves]))
    outs = []
    by_index = {}
    views = entry.output_views
    for j, (kind, v) in enumerate(entry.out_leaves):
        if kind == "out":
            t = by_index[v] = Tensor._make(results[v])
            outs.append(t if not views or j not in views else _rebuilt_view(views[j], lifted))
        else:
            outs.append(v)
    return tree_unflatten(entry.out_spec, outs), by_index


def _unshared(fresh: frozenset, results: list, lifted: list[Tensor]) -> list:
    """`results` with each output in `fresh` that shares memory with a lifted tensor copied."""
    results = list(results)
    for k in fresh:
        r = results[k]
        for t in lifted:
            v = t._cell.value
            if r is v or (r.__class__ is np.ndarray and v.__class__ is np.ndarray and np.may_share_memory(r, v)):
                results[k] = _copied(r)
                break
    return results


def _unshared_outputs(graph: Graph, fresh: list[int]) -> frozenset:
    """Of the user outputs `fresh` (new values eagerly), those whose node in the optimized
    `graph` reaches a graph input through movement ops, casts or stop_gradient only: a backend
    may return the input's own memory (or a view of it) for those."""
    from ..ir.primitives import MOVEMENT, get_primitive
    out = set()
    for k in fresh:
        n = graph.outputs[k]
        while n.op != "input" and len(n.inputs) == 1 and (
                n.op in ("cast", "stop_gradient") or get_primitive(n.op).kind == MOVEMENT):
            n = n.inputs[0]
        if n.op == "input":
            out.add(k)
    return frozenset(out)


def _output_view(o: Tensor, lifted_cells: dict[int, int], lifted: list[Tensor]) -> tuple | None:
    """How to rebuild traced output `o` from the lifted tensors at each call, when eagerly it is one
    of them, its detach() alias or a view of those: (lifted index, view chain, detach the root,
    detach the result); None for an output that is a new tensor."""
    root = o._base if o._base is not None else o
    k = lifted_cells.get(id(root._cell))
    if k is None:
        return None
    detach_root = root is not lifted[k]
    if detach_root and not root._detached:
        return None  # shares the cell some other way: keep the computed value
    return (k, o._view_chain, detach_root, o._detached and not detach_root and o is not root)


def _rebuilt_view(view: tuple, lifted: list[Tensor]) -> Tensor:
    """An output recorded by `_output_view`, rebuilt from this call's lifted tensors (eagerly: it
    shares their memory and version counter, and its history reaches them)."""
    k, chain, detach_root, detach_out = view
    t = lifted[k]
    if detach_root:
        t = t.detach()
    if chain:
        t = _replay(t, chain)
    return t.detach() if detach_out else t


def _is_eager_alias(t: Tensor, lifted_cells) -> bool:
    """Is traced output `t` an argument or lifted tensor, its detach() alias, or a view of one of
    those (sharing its memory eagerly)? `lifted_cells`: the ids of the lifted tensors' cells."""
    return id((t._base if t._base is not None else t)._cell) in lifted_cells


def _state_value(leaf: tuple, lifted: list[Tensor], results: list[np.ndarray]) -> Any:
    """The value a state write stores for one leaf (see `trace.StateWrite`), after a call."""
    kind = leaf[0]
    if kind == "out":
        return Tensor._make(_copied(results[leaf[1]]))
    if kind == "lifted":
        return lifted[leaf[1]]
    if kind == "view":
        return _replay(lifted[leaf[1]], leaf[2])
    return leaf[1]


def _copied(value):
    """A result value in new memory (a numpy array, or a DeviceArray on its device)."""
    return value.copy() if value.__class__ is DeviceArray else np.array(value, copy=True)


def _passed_twice() -> RuntimeError:
    """One tensor (or its detach()/.data alias: the same storage cell) given as two arguments: the
    traced program would treat them as independent values. Checked on every call, cache hit or not."""
    return RuntimeError("the same tensor (or an alias of it) was passed twice to a compiled function; pass it once")


class ArgumentBase:
    """How a later call finds the base that tensor arguments share: through argument `index`
    (the base of the call's own arguments, not the tensor the first call had)."""

    def __init__(self, index: int, traced: Tensor):
        self.index = index
        self.traced = traced  # the base at trace time (what `captured_now()` without arguments gives)

    def __call__(self, tensors: Sequence[Tensor] | None = None) -> Tensor | None:
        return self.traced if tensors is None else tensors[self.index]._base


def alias_key(tensors: Sequence[Tensor]) -> tuple[int, ...] | None:
    """Which tensor arguments are views of one base (the same root tensor), for the cache key:
    None when no two are (the common call), else per argument the index of the first argument
    with its root. A program traced for independent arguments reads each as its own value; one
    traced for aliased arguments reads them through their base (an in-place update through one
    is seen by the others): neither may run for the other's call."""
    roots = [id(t._base if t._base is not None else t) for t in tensors]
    if len(set(roots)) == len(roots):
        return None
    first: dict[int, int] = {}
    return tuple(first.setdefault(r, k) for k, r in enumerate(roots))


def _arguments_as_roots(leaves: list) -> tuple[list[tuple], list[tuple], dict[int, int]]:
    """Tensor arguments that are eager views of a base outside the arguments, for the trace.

    A view argument whose base no other argument shares becomes a root for the trace: views of
    it and in-place updates through them read and write the argument (a graph input, written back
    into the shared memory after the call). Arguments sharing a base keep it (an update through
    one is seen by the others); a base that is no argument is read at each call through the first
    of them (`ArgumentBase`). Every argument of such a group is guarded on its view chain
    (`view_guards`; a base passed beside its views on the empty chain), and which arguments share
    a base is part of the cache key (`alias_key`). Without this the trace captured the base as
    the first call's tensor and read it, stale, on every later call.
    Returns (what `_restore_views` puts back, the view guards, {id(shared base): argument index})."""
    tensors = [x for x in leaves if isinstance(x, Tensor)]
    first: dict[int, int] = {}
    count: dict[int, int] = {}
    for k, x in enumerate(tensors):
        root = x._base if x._base is not None else x
        first.setdefault(id(root), k)
        count[id(root)] = count.get(id(root), 0) + 1
    saved, guards, shared = [], [], {}
    for k, x in enumerate(tensors):
        if x._base is None:
            if count[id(x)] > 1:  # a base passed beside views of it
                guards.append((k, first[id(x)], ()))
            continue
        if count[id(x._base)] == 1:
            if x._view_synced != x._vc[0]:
                x._resync_view()  # its base was updated in place since the view was made
            saved.append((x, x._base, x._view_chain))
            x._base, x._view_chain = None, ()
        elif id(x._base) not in {id(t) for t in tensors}:
            j = first[id(x._base)]
            if tensors[j]._base is not x._base:  # the first of the group is the base's own view
                j = k
                first[id(x._base)] = k
            shared.setdefault(id(x._base), j)
            guards.append((k, shared[id(x._base)], x._view_chain))
        else:  # a view passed beside its base
            guards.append((k, first[id(x._base)], x._view_chain))
    return saved, guards, shared


def _stride_guards(trace: Trace, tensors: list[Tensor]) -> list[tuple]:
    """The reshapes of arguments whose being a view mattered: the argument (or the reshape's
    result, when it was a copy) was updated in place after it (see `CompiledEntry.stride_guards`)."""
    index = {id(t): k for k, t in enumerate(tensors)}
    guards = []
    for base, chain, attrs, shape, view, out, base_version, out_version in trace.reshapes:
        k = index.get(id(base))
        if k is not None and (base._vc[0] != base_version or out._vc[0] != out_version):
            g = (k, chain, attrs, shape, view)
            if g not in guards:
                guards.append(g)
    return guards


def _restore_views(saved: list[tuple]) -> None:
    for x, base, chain in saved:
        x._base, x._view_chain = base, chain
        x._view_synced = x._vc[0]


def trace_function(fn: Callable, args: tuple, kwargs: dict, name: str = "main",
                   autograd: bool = True, optimize: bool = True) -> CompiledEntry:
    """Trace `fn(*args, **kwargs)` into a CompiledEntry (graph + calling convention).

    With `autograd` and grad mode on, outputs that depend on inputs requiring grad get a
    compiled backward: the graph is differentiated and split into forward and backward.
    """
    with _STATE_LOCK:
        return _trace_function(fn, args, kwargs, name, autograd, optimize)


def _trace_function(fn, args, kwargs, name, autograd, optimize) -> CompiledEntry:
    leaves, spec = tree_flatten((args, kwargs))
    arg_names = _arg_names(fn, args, kwargs, leaves)
    name = _sanitize(name)
    trace = Trace(name)
    seen_cells: set[int] = set()
    trace.python_values.add_function(fn)
    unviewed, view_guards, trace.argument_bases = _arguments_as_roots(leaves)
    with tracing(trace):
        try:
            for x, nm in zip(leaves, arg_names):
                if isinstance(x, Tensor):
                    if id(x._cell) in seen_cells:
                        raise _passed_twice()
                    seen_cells.add(id(x._cell))
                    trace.lift(x, name=nm)
            out = fn(*args, **kwargs)
            out_leaves_raw, out_spec = tree_flatten(out)
            out_nodes: list[Node] = []
            out_leaves = []
            fresh = []  # graph outputs that are new tensors eagerly
            lifted_cells = {id(t._cell): k for k, (t, *_rest) in enumerate(trace.lifted)}
            output_views = {}
            written = {id(t._cell) for t, node, *_ in trace.lifted if t._cell.value is not node}  # updated in place
            for o in out_leaves_raw:
                if isinstance(o, Tensor):
                    node = trace.node_of(o)
                    view = _output_view(o, lifted_cells, [t for t, *_ in trace.lifted])
                    root = o._base if o._base is not None else o
                    if view is not None and o._requires_grad and id(root._cell) in written:
                        # updated in place with a differentiable value: its new history is the
                        # compiled backward's, which a view rebuilt eagerly would not carry
                        view = None
                    if view is not None:
                        output_views[len(out_leaves)] = view
                    elif not _is_eager_alias(o, lifted_cells):
                        fresh.append(len(out_nodes))
                    out_leaves.append(("out", len(out_nodes)))
                    out_nodes.append(node)
                else:
                    out_leaves.append(("const", o))
            state_writes = trace.state_writes(sum(isinstance(x, Tensor) for x in leaves))
        except BaseException:
            trace.finish()
            _restore_views(unviewed)
            raise
    mutated, grad_final = trace.finish()
    _restore_views(unviewed)
    n_args = sum(isinstance(x, Tensor) for x in leaves)
    mutations = []
    for lift_idx, node in mutated:
        mutations.append((len(out_nodes), lift_idx))
        out_nodes.append(node)
    grad_sets = []
    for t, g in grad_final:
        if g is None:
            grad_sets.append((t, None))
        elif g._cell.trace is trace:
            grad_sets.append((t, len(out_nodes)))
            out_nodes.append(g._cell.value)
        elif g is not t._grad:
            raise RuntimeError("a .grad assigned inside kiln.compile must be computed inside the function")
    for w in state_writes:  # values the graph computes for stored state become outputs too
        for j, leaf in enumerate(w.leaves):
            if leaf[0] == "node":
                w.leaves[j] = ("out", len(out_nodes))
                out_nodes.append(leaf[1])
    trace.graph.set_outputs(out_nodes)
    captured = [t for t, *_ in trace.lifted[n_args:]]
    entry = CompiledEntry(trace.graph, n_args, trace.sources[n_args:], out_spec, out_leaves, mutations, grad_sets,
                          [(tuple(t.shape), t.dtype) for t in captured],
                          guards=trace.guards + trace.python_values.guards(), pins=trace.python_values.pins,
                          state_writes=state_writes, view_guards=view_guards,
                          stride_guards=_stride_guards(trace, [x for x in leaves if isinstance(x, Tensor)]),
                          output_views=output_views)
    if config.get().verify:
        check_graph(trace.graph)
    _dump(trace.graph, name)
    if optimize:
        entry.graph = optimize_graph(trace.graph, name)
    if autograd and is_grad_enabled() and not trace.ran_backward:
        _attach_backward(entry, [t for t, *_ in trace.lifted], [k for k, o in out_leaves if k == "out"], trace.graph)
    entry.fresh_outputs = _unshared_outputs(entry.graph if entry.autograd is None else entry.autograd.forward, fresh)
    return entry


def _attach_backward(entry: CompiledEntry, lifted: list[Tensor], user_outputs: list,
                     traced: Graph | None = None) -> None:
    """Differentiate the graph w.r.t. the lifted tensors that require grad (AOTAutograd-style).

    Which outputs need grad, and which inputs get one, is read from the `traced` graph (the
    program as written, before optimization): a rewrite that drops a dependence (a select on a
    constant mask, from `x.clone().zero_()`) must not drop the output's `requires_grad` or turn
    the input's zero gradient into None, as eager keeps them."""
    g = traced if traced is not None else entry.graph
    wrt = [k for k, t in enumerate(lifted) if t.requires_grad and t.dtype.is_floating_point]
    if not wrt:
        return
    reach = {g.inputs[k] for k in wrt}
    for n in g.nodes:  # gradients flow through float values only (not through a cast to an integer)
        if n.dtype.is_floating_point and any(i in reach for i in n.inputs):
            reach.add(n)
    diff = [k for k in range(len(user_outputs)) if g.outputs[k] in reach and g.outputs[k].dtype.is_floating_point]
    if not diff:
        return
    needed = {id(g.outputs[k]) for k in diff}  # what the differentiated outputs are computed from
    for n in reversed(g.nodes):
        if id(n) in needed and n in reach:
            needed.update(id(i) for i in n.inputs)
    wrt = [k for k in wrt if id(g.inputs[k]) in needed]  # an input they do not read keeps .grad None
    if not wrt:
        return
    entry.autograd = forward_backward(entry.graph, wrt, diff)
    entry.wrt, entry.diff_outputs = wrt, diff


def forward_backward(graph: Graph, wrt: list[int], outputs: list[int]) -> SplitGraphs:
    """vjp → split → optimize: differentiate `graph` w.r.t. inputs `wrt` for `outputs`, split the
    joint graph into forward and backward, check both (`verify` setting) and optimize both (dumped
    as `<name>_fwd` and `<name>_bwd`). Shared by the compiled-autograd path and `kiln.vjp`."""
    joint = vjp_graph(graph, wrt, outputs=outputs)
    split = split_joint(joint, len(graph.inputs), len(graph.outputs))
    if config.get().verify:
        check_graph(split.forward)
        check_graph(split.backward)
    split.forward = optimize_graph(split.forward, graph.name + "_fwd")
    split.backward = optimize_graph(split.backward, graph.name + "_bwd")
    return split


def check_graph(graph: Graph) -> None:
    """Debug check (KILN_VERIFY=1): the graph verifies and its text form parses back to an equal graph."""
    verify(graph)
    text = str(graph)
    again = parse_graph(text)
    if again != graph:
        raise AssertionError(f"IR text did not round-trip:\n{text}\n---\n{again}")


def _arg_names(fn, args, kwargs, leaves) -> list[str | None]:
    """Graph input names from the Python parameter names, where that is unambiguous."""
    names: list[str | None] = [None] * len(leaves)
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return names
    if len(leaves) == len(args) + len(kwargs) and all(not isinstance(a, (list, tuple, dict)) for a in args):
        for k in range(len(args)):
            if k < len(params) and params[k].isidentifier():
                names[k] = params[k]
        for k, key in enumerate(kwargs):
            names[len(args) + k] = key
    return names


def _sanitize(name: str) -> str:
    return re.sub(r"\W", "_", name).strip("_") or "fn"


def optimize_graph(graph: Graph, name: str) -> Graph:
    """Run the pass pipeline; with the `dump` setting (KILN_DUMP), every pass's graph and the
    plans are dumped, numbered after the files already written there."""
    if not config.get().passes:
        return graph
    writer = _dump_writer()
    return default_pipeline().run_report(graph, prefix=f"{name}-", plans=False, writer=writer).graph


def _dump(graph: Graph, name: str) -> None:
    writer = _dump_writer()
    if writer is not None:
        writer.write(f"{name}-traced", graph)


def compile(fn: Callable | None = None, **options) -> Any:
    """Compile `fn` (decorator, with or without options): trace per input signature and cache.

    Options: `recompile_limit` (default 8) — warn once a function has been traced for
    more signatures than this; `backend` — "llvm" (native code for the host CPU),
    "reference" (the numpy interpreter) or "cuda"; default: the `KILN_BACKEND` setting (llvm);
    `mode` — "default", or "reduce-overhead": on the cuda backend the program is captured into a
    CUDA graph on its first call and replayed (inputs copied into static buffers); elsewhere the
    same as default. ("max-autotune" and "max-autotune-no-cudagraphs" are accepted, as default.)
    """
    if fn is None:
        return lambda f: CompiledFunction(f, **options)
    return CompiledFunction(fn, **options)


def make_graph(fn: Callable) -> Callable[..., Graph]:
    """Like `jax.make_jaxpr`: `kiln.make_graph(fn)(*args)` returns the traced Graph without running it."""
    def build(*args, **kwargs) -> Graph:
        return trace_function(fn, args, kwargs, name=_sanitize(getattr(fn, "__name__", "main")),
                              autograd=False, optimize=False).graph
    return build
