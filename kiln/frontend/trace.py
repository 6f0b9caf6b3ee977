"""Tracing: run a Python function on symbolic tensors and record an ir.Graph.

Tensors that the function reads without receiving them as arguments (parameters,
optimizer state, the random generator) are *lifted*: they become extra graph inputs,
read again at every call. In-place updates of them, and assignments to their `.grad`,
become extra graph outputs that the caller writes back after running the graph.

State *stored* while tracing (a module attribute set in `forward`, optimizer state created
on the first `step()`, a Python number written into a param group) is a *state write*:
its tensors become graph outputs and the store is redone with real tensors after every
call, and the trace is guarded on what the slot held at entry, so code that branches on
"is the state there yet?" retraces once it is (see `Trace.state_writes`).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.primitives import ShapeError
from .guards import GuardCollector
from .operands import _constant_tensor
from .pytree import tree_flatten
from .source_location import user_location
from ..runtime.cuda_device import DeviceArray
from .tensor import CPU, Tensor, _replay, active_trace, set_active_trace

class Trace:
    """One recording: the graph under construction and the tensors lifted into it."""

    device = CPU  # CUDA once a CUDA tensor is lifted (what traced tensors' .device says)

    def __init__(self, name: str = "main"):
        self.graph = Graph(name)
        self.lifted: list[tuple[Tensor, Node, Any, Any]] = []  # (tensor, input node, saved value, saved grad_fn)
        self._lifted_requires_grad: list[bool] = []  # per lifted tensor, restored by finish
        self.argument_bases: dict[int, int] = {}  # id(base shared by tensor arguments) -> argument index
        self.root_strides: dict[int, tuple[int, ...]] = {}  # lifted tensors not row-major: their element strides
        # reshapes decided view-or-copy from a base's strides, with the versions of base and result
        # then: (base, chain, attrs, shape, view, result, base version, result version)
        self.reshapes: list[tuple] = []
        self.sources: list[Callable[[], Any]] = []  # per lifted tensor: how a later call finds it
        self._grad_of: dict[int, Tensor] = {}  # id(grad tensor) -> the tensor whose .grad it was
        self.grad_writes: dict[int, tuple[Tensor, Any]] = {}  # id -> (tensor, .grad before the trace)
        self.active = True
        self.ran_backward = False  # the traced code called backward(): its outputs are not differentiated again
        self.guards: list[tuple[Callable[[], Any], Any]] = []  # Python state the trace specialised on
        self.python_values = GuardCollector()  # globals, closure cells, module attributes the code reads
        self._grad_guarded: set[int] = set()
        self._stop_cache: dict[int, Node] = {}
        self._made: set[int] = set()  # ids of the tensors this trace created (emit)
        self._stale_views: dict[int, Tensor] = {}  # views made before the trace, re-derived inside it
        self._slots: dict[Any, _Slot] = {}  # Python containers the traced code may store state into
        self._guard_tokens: set[Any] = set()
        for owner in list(_state_owners):
            for token, get, put, what in owner._traced_state_slots():
                self.note_store(token, get, put, what, loc="<entry>")

    # -- recording -------------------------------------------------------------------------
    def emit(self, prim, args, attrs) -> Tensor:
        nodes = [self.node_of(a) for a in args]
        try:
            shape, dtype = prim.abstract_eval(nodes, attrs)
        except ShapeError as e:
            raise ShapeError(f"{e} (at {user_location()})") from None
        node = self.graph.add_node(prim.name, nodes, attrs, shape, dtype, loc=user_location())
        out = Tensor._make(node, self)
        self._made.add(id(out))
        return out

    def node_of(self, t: Tensor) -> Node:
        if t._base is not None and t._view_synced != t._vc[0]:
            t._resync_view()  # its base was updated in place since this view was made
        cell = t._cell
        if cell.trace is self:
            if t._base is not None and id(t) not in self._made:
                self._stale_views.setdefault(id(t), t)  # made eagerly, re-derived here: made eager again by finish
            return self._stopped(cell.value) if t._detached else cell.value
        if cell.trace is not None:
            made = getattr(cell.value, "loc", None)
            raise RuntimeError("a tensor from another kiln.compile trace was used here"
                               + (f" (it was created at {made})" if made else "")
                               + "; tensors created while tracing must be returned from the compiled function, or "
                               "stored on a module, an optimizer's state or a param group (which kiln.compile "
                               "writes back), not kept elsewhere")
        node = self.lift(t)
        return self._stopped(node) if t._detached else node

    def _stopped(self, node: Node) -> Node:
        """`stop_gradient(node)`, made once per node, so graph autodiff sees detach()."""
        stop = self._stop_cache.get(id(node))
        if stop is None:
            stop = self.graph.add_node("stop_gradient", [node], {}, node.shape, node.dtype, loc=user_location())
            self._stop_cache[id(node)] = stop
        return stop

    def lift(self, t: Tensor, name: str | None = None) -> Node:
        """Make eager tensor `t` a graph input for the rest of the trace (restored by `finish`)."""
        if name is None:
            name = f"c{sum(1 for n in self.graph.inputs if n.name.startswith('c'))}"
        node = self.graph.add_input(t.shape, t.dtype, name=name)
        arr = t._cell.value
        if isinstance(arr, np.ndarray) and not arr.flags.c_contiguous and arr.itemsize:
            self.root_strides[id(t)] = tuple(s // arr.itemsize for s in arr.strides)
        if t._cell.value.__class__ is DeviceArray:
            self.device = t.device  # traced values report the device of the trace's inputs
        self.lifted.append((t, node, t._cell.value, t._grad_fn))
        self._lifted_requires_grad.append(t._requires_grad)
        owner = self._grad_of.get(id(t))
        # a `.grad` is found through its owner at call time: backward() replaces grad objects;
        # the base that tensor arguments share, through the call's arguments (compile.ArgumentBase)
        if id(t) in self.argument_bases:
            from .compile import ArgumentBase  # function-local: compile builds on this module
            self.sources.append(ArgumentBase(self.argument_bases[id(t)], t))
        else:
            self.sources.append((lambda o=owner: o._grad) if owner is not None else (lambda t=t: t))
        t._cell.value = node
        t._cell.trace = self
        t._grad_fn = None
        return node

    def write(self, t: Tensor, new) -> None:
        """In-place update of `t` during the trace: rebinds its cell to the new symbolic value."""
        if isinstance(new, Tensor):
            node = self.node_of(new)
        else:  # a concrete array written while tracing: record it as a constant
            node = self.node_of(_constant_tensor(new))
        if t._cell.trace is not self:
            self.node_of(t)
        t._cell.value = node

    def guard(self, read: Callable[[], Any]) -> Any:
        """Specialise on the Python value `read()` returns: a later call retraces if it changes."""
        value = read()
        self.guards.append((read, value))
        return value

    def guard_grad_presence(self, t: Tensor) -> None:
        """Reading `t.grad` before the trace assigned it: specialise on whether it was None at entry."""
        if id(t) in self.grad_writes or id(t) in self._grad_guarded:
            return
        if t._grad is not None and t._grad._cell.trace is None:
            self._grad_of[id(t._grad)] = t
        self._grad_guarded.add(id(t))
        ref = weakref.ref(t)
        self.guard(lambda: ref() is not None and ref()._grad is None)

    def guard_once(self, token: Any, read: Callable[[], Any]) -> None:
        """`guard(read)`, at most once per `token` in this trace."""
        if token not in self._guard_tokens:
            self._guard_tokens.add(token)
            self.guard(read)

    def note_grad_write(self, t: Tensor) -> None:
        if id(t) not in self.grad_writes:
            self.grad_writes[id(t)] = (t, t._grad)

    # -- state stored while tracing ----------------------------------------------------------
    def note_store(self, token: Any, get: Callable[[], Any], put: Callable[[Any], None], what: str,
                   loc: str | None = None) -> None:
        """The traced code is about to store into a slot (`get()` reads it, `put(v)` writes it).

        The first note per `token` records what the slot held at entry; `state_writes` then
        decides whether the store must be redone after every call."""
        if token not in self._slots:
            entry = get()
            tensors = [(k, leaf) for k, leaf in enumerate(tree_flatten(entry)[0]) if isinstance(leaf, Tensor)]
            self._slots[token] = _Slot(get, put, state_kind(entry), what, loc or user_location(), tensors)

    def state_writes(self, n_args: int) -> list["StateWrite"]:
        """The stores to redo after every call, in slot order; guards each on the slot's entry kind.

        A slot needs a write when it now holds tensors this trace computed (they become graph
        outputs), one of the `n_args` argument tensors (the first lifted; each call passes its
        own), or a Python value different from its entry value. Slots that hold only other eager
        tensors need nothing: those objects persist, and in-place updates of them are already
        written back."""
        lifted = {id(t): k for k, (t, *_rest) in enumerate(self.lifted)}
        lifted_cells = {id(t._cell): k for k, (t, *_rest) in enumerate(self.lifted)}
        writes = []
        for slot in self._slots.values():
            value = slot.get()
            leaves, spec = tree_flatten(value)
            out: list[tuple] = []
            traced = python = False
            for leaf in leaves:
                if not isinstance(leaf, Tensor):
                    out.append(("const", leaf))
                    python = True
                elif leaf._cell.trace is None:
                    out.append(("const", leaf))
                elif leaf._cell.trace is not self:
                    raise RuntimeError(f"{slot.what} (stored at {slot.loc}) holds a tensor from another "
                                       "kiln.compile trace")
                elif id(leaf) in lifted:
                    out.append(("lifted", lifted[id(leaf)]))
                    traced = traced or lifted[id(leaf)] < n_args
                elif leaf._base is not None and id(leaf._base) in lifted and not leaf._detached:
                    out.append(("view", lifted[id(leaf._base)], leaf._view_chain))
                    traced = True
                else:
                    out.append(("node", self.node_of(leaf)))
                    traced = True
            if not traced and not (python and state_kind(value) != slot.entry):
                continue
            self.guards.append((lambda s=slot: state_kind(s.get()), slot.entry))
            writes.append(StateWrite(slot.put, spec, out, slot.what))
            # the tensors the slot held at entry, if the graph read them, are found through the slot at
            # each call: the write-back replaces them (`m.h = m.h + x` reads the new `m.h` next time)
            for pos, t in slot.entry_tensors:
                k = lifted_cells.get(id(t._cell))  # lifted itself or through an alias (detach(), .data)
                if k is not None and k >= n_args:
                    self.sources[k] = (lambda s=slot, pos=pos, t=t: _leaf_at(s.get(), pos, t))
        return writes

    # -- closing ---------------------------------------------------------------------------
    def finish(self) -> tuple[list[tuple[int, Tensor]], list[tuple[Tensor, Any]]]:
        """Restore lifted tensors; return (mutated lifted tensors by index, final .grad of written tensors)."""
        mutated = []
        for k, (t, node, value, grad_fn) in enumerate(self.lifted):
            if t._cell.value is not node:
                mutated.append((k, t._cell.value))
        grad_final = [(t, t._grad) for (t, _before) in self.grad_writes.values()]
        for (t, node, value, grad_fn), requires_grad in zip(self.lifted, self._lifted_requires_grad):
            t._cell.value = value
            t._cell.trace = None
            t._grad_fn = grad_fn
            t._requires_grad = requires_grad  # an in-place update with a value needing grad set it while tracing
        for t, before in self.grad_writes.values():
            t._grad = before
        for t in self._stale_views.values():
            if t._cell.trace is self and t._base._cell.trace is None:
                _rederive_view(t)
        self.active = False
        return mutated, grad_final


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


#: What `get()` of a state slot returns when the slot is empty (an attribute or key not set).
ABSENT = _Absent()


def state_kind(value: Any) -> Any:
    """The structure of a stored value that traced code may branch on: Python values exactly,
    tensors only as "a tensor" (their shapes and dtypes are checked as lifted inputs)."""
    if isinstance(value, Tensor):
        return "T"
    if value is None or value is ABSENT or isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, value)
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(state_kind(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((("T", id(k)) if isinstance(k, Tensor) else k, state_kind(v))
                              for k, v in value.items()))
    return ("obj", type(value).__qualname__)


def _leaf_at(value: Any, pos: int, entry: Tensor) -> Any:
    """The eager tensor at leaf `pos` of a stored value; `entry` (the tensor the trace read)
    until the first call has written the slot back (it still holds the trace's value then).
    None when the value no longer has such a leaf (the guards then retrace)."""
    leaves = tree_flatten(value)[0]
    leaf = leaves[pos] if pos < len(leaves) else None
    if isinstance(leaf, Tensor) and leaf._cell.trace is not None:
        return entry
    return leaf if isinstance(leaf, Tensor) else None


@dataclass
class _Slot:
    get: Callable[[], Any]
    put: Callable[[Any], None]
    entry: Any  # state_kind of the value at entry
    what: str  # e.g. "Net.mask", for messages
    loc: str  # the user's line of the first store
    entry_tensors: list = None  # (leaf position, tensor) of the value at entry


@dataclass
class StateWrite:
    """A store to redo after each call: `put(tree_unflatten(spec, values of leaves))`.

    Leaves: ("node", Node) a value the graph computes (a graph output), ("lifted", k) the
    k-th lifted tensor itself, ("view", k, chain) a view of it, ("const", v) a Python value."""

    put: Callable[[Any], None]
    spec: Any
    leaves: list[tuple]
    what: str


_state_owners: "weakref.WeakSet[Any]" = weakref.WeakSet()


def watch_state(owner: Any) -> None:
    """Snapshot `owner`'s state slots at the start of every trace (e.g. an optimizer's per-parameter state).

    `owner._traced_state_slots()` yields `(token, get, put, what)` per slot; see `Trace.note_store`."""
    _state_owners.add(owner)


def _rederive_view(t: Tensor) -> None:
    """Make view `t`, re-derived from its base inside a trace, an eager view of that base again."""
    with suspended():
        v = _replay(t._base, t._view_chain)
    t._cell.value, t._cell.trace = v._cell.value, None
    if not t._detached:
        t._grad_fn, t._output_nr, t._requires_grad = v._grad_fn, v._output_nr, v._requires_grad
    t._view_synced = t._vc[0]


class tracing:
    """Context manager that makes `trace` the active trace."""

    def __init__(self, trace: Trace):
        self.trace = trace

    def __enter__(self):
        if active_trace() is not None:
            raise RuntimeError("nested kiln.compile tracing is not supported: call the inner compiled function's "
                               "plain Python version, or compile only the outer function")
        self._prev = set_active_trace(self.trace)
        return self.trace

    def __exit__(self, *exc):
        set_active_trace(self._prev)
        return False


class suspended:
    """Run a block eagerly even while a trace is recording (e.g. to create optimizer state once).

    Tensors created inside are ordinary eager tensors; when the traced code later uses
    them they are lifted like any other captured tensor, so their values are read (and
    their in-place updates written back) at every call of the compiled function.
    """

    def __enter__(self):
        self._prev = set_active_trace(None)
        return self

    def __exit__(self, *exc):
        set_active_trace(self._prev)
        return False


def guard_module(module: Any) -> None:
    """A module is being called while tracing: guard its `training` flag and the Python values
    its `forward` reads from `self` (`self.scale`, a Dropout's `p`), so that changing them retraces."""
    tr = active_trace()
    if tr is not None:
        guard_attr(module, "training")
        tr.python_values.add_module(module)


def guard_attr(obj: Any, attr: str) -> Any:
    """Read `obj.attr`; while tracing, later calls of the compiled function retrace if it changes.

    Used for Python state that changes what gets traced, e.g. `Module.training`.
    """
    tr = active_trace()
    if tr is None:
        return getattr(obj, attr)
    ref = weakref.ref(obj)
    return tr.guard(lambda: getattr(ref(), attr, None) if ref() is not None else None)
