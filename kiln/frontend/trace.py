"""Tracing: run a Python function on symbolic tensors and record an ir.Graph.

Tensors that the function reads without receiving them as arguments (parameters,
optimizer state, the random generator) are *lifted*: they become extra graph inputs,
read again at every call. In-place updates of them, and assignments to their `.grad`,
become extra graph outputs that the caller writes back after running the graph.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

from ..ir.graph import Graph, Node
from ..ir.primitives import ShapeError
from .operands import _constant_tensor
from .source_location import user_location
from .tensor import Tensor, active_trace, set_active_trace

class Trace:
    """One recording: the graph under construction and the tensors lifted into it."""

    def __init__(self, name: str = "main"):
        self.graph = Graph(name)
        self.lifted: list[tuple[Tensor, Node, Any, Any]] = []  # (tensor, input node, saved value, saved grad_fn)
        self.sources: list[Callable[[], Any]] = []  # per lifted tensor: how a later call finds it
        self._grad_of: dict[int, Tensor] = {}  # id(grad tensor) -> the tensor whose .grad it was
        self.grad_writes: dict[int, tuple[Tensor, Any]] = {}  # id -> (tensor, .grad before the trace)
        self.active = True
        self.ran_backward = False  # the traced code called backward(): its outputs are not differentiated again
        self.guards: list[tuple[Callable[[], Any], Any]] = []  # Python state the trace specialised on
        self._grad_guarded: set[int] = set()
        self._stop_cache: dict[int, Node] = {}

    # -- recording -------------------------------------------------------------------------
    def emit(self, prim, args, attrs) -> Tensor:
        nodes = [self.node_of(a) for a in args]
        try:
            shape, dtype = prim.abstract_eval(nodes, attrs)
        except ShapeError as e:
            raise ShapeError(f"{e} (at {user_location()})") from None
        node = self.graph.add_node(prim.name, nodes, attrs, shape, dtype, loc=user_location())
        return Tensor._make(node, self)

    def node_of(self, t: Tensor) -> Node:
        if t._base is not None and t._view_synced != t._vc[0]:
            t._resync_view()  # its base was updated in place since this view was made
        cell = t._cell
        if cell.trace is self:
            return self._stopped(cell.value) if t._detached else cell.value
        if cell.trace is not None:
            raise RuntimeError("a tensor from another kiln.compile trace was used here; tensors created while "
                               "tracing must be returned from the compiled function, not stored")
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
        self.lifted.append((t, node, t._cell.value, t._grad_fn))
        owner = self._grad_of.get(id(t))
        # a `.grad` is found through its owner at call time: backward() replaces grad objects
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

    def note_grad_write(self, t: Tensor) -> None:
        if id(t) not in self.grad_writes:
            self.grad_writes[id(t)] = (t, t._grad)

    # -- closing ---------------------------------------------------------------------------
    def finish(self) -> tuple[list[tuple[int, Tensor]], list[tuple[Tensor, Any]]]:
        """Restore lifted tensors; return (mutated lifted tensors by index, final .grad of written tensors)."""
        mutated = []
        for k, (t, node, value, grad_fn) in enumerate(self.lifted):
            if t._cell.value is not node:
                mutated.append((k, t._cell.value))
        grad_final = [(t, t._grad) for (t, _before) in self.grad_writes.values()]
        for t, node, value, grad_fn in self.lifted:
            t._cell.value = value
            t._cell.trace = None
            t._grad_fn = grad_fn
        for t, before in self.grad_writes.values():
            t._grad = before
        self.active = False
        return mutated, grad_final


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


def guard_attr(obj: Any, attr: str) -> Any:
    """Read `obj.attr`; while tracing, later calls of the compiled function retrace if it changes.

    Used for Python state that changes what gets traced, e.g. `Module.training`.
    """
    tr = active_trace()
    if tr is None:
        return getattr(obj, attr)
    ref = weakref.ref(obj)
    return tr.guard(lambda: getattr(ref(), attr, None) if ref() is not None else None)
