"""Eager autograd: a tape of primitive applications and the backward engine.

Each recorded BackwardNode is one primitive application; its gradient comes from the
primitive's VJP rule in kiln.ir.primitives, the same rule graph autodiff uses.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Sequence

from ..ir.primitives import Primitive, get_primitive
from ..ir.ruleops import RuleOps

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


def set_grad_enabled(mode: bool) -> None:
    _state.grad_enabled = bool(mode)


class _GradMode:
    _mode: bool

    def __enter__(self):
        self._prev = is_grad_enabled()
        set_grad_enabled(self._mode)
        return self

    def __exit__(self, *exc):
        set_grad_enabled(self._prev)
        return False

    def __call__(self, fn):

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager / decorator that disables gradient recording."""
    _mode = False


class enable_grad(_GradMode):
    """Context manager / decorator that enables gradient recording."""
    _mode = True


class Aval:
    """Shape and dtype of a value the VJP rule does not read (not saved)."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = shape
        self.dtype = dtype


class SavedValue:
    """A tensor value saved for backward, with the version it had when saved."""

    __slots__ = ("value", "vc", "version", "shape", "dtype", "trace", "grad_fn", "output_nr", "acc", "is_output")

    def __init__(self, t, is_output: bool = False):
        self.value = t._cell.value
        self.trace = t._cell.trace
        self.vc = t._vc
        self.version = t._vc[0]
        self.shape = t.shape
        self.dtype = t.dtype
        self.is_output = is_output  # its grad_fn is the saving node itself (set after saving)
        self.grad_fn = t._grad_fn
        self.output_nr = t._output_nr
        self.acc = t._accumulator() if (t._requires_grad and t._grad_fn is None and not is_output) else None


class AccumulateGrad:
    """The sink for a leaf tensor's gradient."""

    __slots__ = ("tensor", "hooks", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor

    n_outputs = 1

    def name(self) -> str:
        return "AccumulateGrad"


# grad_fn names as PyTorch prints them, where kiln's primitive name differs
_TORCH_NAMES = {"reduce_sum": "Sum", "reduce_max": "Amax", "reduce_min": "Amin", "reduce_prod": "Prod",
                "logistic": "Sigmoid", "select": "Where", "broadcast_to": "Expand", "reshape": "View",
                "cast": "ToCopy", "matmul": "Mm", "concat": "Cat", "pad": "ConstantPadNd", "scatter_add": "ScatterAdd"}


class BackwardNode:
    """One recorded primitive application: inputs' edges plus what its VJP needs."""

    __slots__ = ("prim", "attrs", "next", "saved_in", "saved_out", "in_avals", "out_aval", "freed",
                 "retained", "hooks", "__weakref__")

    def __init__(self, prim: Primitive, attrs: dict[str, Any], inputs: Sequence, out):
        self.prim = prim
        self.attrs = attrs
        self.next = [_edge(t) for t in inputs]
        self.in_avals = [Aval(t.shape, t.dtype) for t in inputs]
        self.out_aval = Aval(out.shape, out.dtype)
        what = prim.saved_for([k for k, t in enumerate(inputs) if t._requires_grad])
        self.saved_in = [SavedValue(t) if ("i" in what or str(k) in what) else None for k, t in enumerate(inputs)]
        self.saved_out = SavedValue(out, is_output=True) if "o" in what else None
        self.freed = False
        self.retained = None  # weakref to a non-leaf tensor that called retain_grad()
        self.hooks: dict | None = None  # {output index: {handle id: fn}} from Tensor.register_hook

    n_outputs = 1

    def name(self) -> str:
        base = _TORCH_NAMES.get(self.prim.name) or "".join(p.capitalize() for p in self.prim.name.split("_"))
        return base + "Backward0"

    def run(self, grads: list, create_graph: bool) -> Sequence:
        return _apply_rule(self, grads[0])

    def release(self) -> None:
        if self.saved_out is not None or any(s is not None for s in self.saved_in):
            self.freed = True
            self.saved_in = [None] * len(self.saved_in)
            self.saved_out = None

    @property
    def next_functions(self):
        return tuple(e if e is not None else (None, 0) for e in self.next)

    def __repr__(self) -> str:
        return f"<{self.name()}>"


def _edge(t):
    """Where the gradient of input `t` goes: (node, output index), or None if it needs none."""
    if not t.requires_grad:
        return None
    return _edge_of(t)


def _unpack(saved: SavedValue, node: BackwardNode, which: str):
    from .tensor import Tensor  # function-local: tensor.py builds on this module (apply records BackwardNodes)
    if saved.vc[0] != saved.version:
        dims = ", ".join(str(s) for s in saved.shape)
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an inplace operation: "
            f"[{saved.dtype.name} [{dims}]], which is {which} of {node.name()}, is at version {saved.vc[0]}; "
            f"expected version {saved.version} instead.")
    t = Tensor._make(saved.value, saved.trace)
    # keep the saved tensor's autograd identity, so create_graph=True differentiates through it
    if saved.is_output:
        t._grad_fn, t._requires_grad = node, True
    elif saved.grad_fn is not None:
        t._grad_fn, t._output_nr, t._requires_grad = saved.grad_fn, saved.output_nr, True
    elif saved.acc is not None:
        t._acc, t._requires_grad = saved.acc, True
    return t


_FREED_MSG = (
            "Trying to backward through the graph a second time (or directly access saved tensors after they "
            "have already been freed). Saved intermediate values of the graph are freed when you call "
            ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
            "graph a second time or if you need to access saved tensors after calling backward.")


def _apply_rule(node: BackwardNode, g):
    if node.freed:
        raise RuntimeError(_FREED_MSG)
    inputs = [node.in_avals[k] if s is None else _unpack(s, node, f"input {k}") for k, s in enumerate(node.saved_in)]
    out = _unpack(node.saved_out, node, "output 0") if node.saved_out is not None else node.out_aval
    return node.prim.vjp(RuleOps(_bind_skipping_unsaved), g, inputs, out, **node.attrs)


def _bind_skipping_unsaved(name: str, *args, **attrs):
    """Bind for VJP rules: a computation that reads an unsaved value yields only its type (an Aval).

    Such values are cotangents of inputs that need no gradient; the engine drops them.
    """
    from .tensor import apply  # function-local: tensor.py builds on this module (apply records BackwardNodes)
    if any(isinstance(a, Aval) for a in args):
        shape, dtype = get_primitive(name).abstract_eval(args, attrs)
        return Aval(tuple(shape), dtype)
    return apply(name, *args, **attrs)


def _toposort(roots) -> list:
    """Backward nodes reachable from roots, each after every node that feeds it a gradient."""
    order, seen = [], set()
    for root in roots:
        if root is None or id(root) in seen:
            continue
        stack = [(root, False)]
        while stack:
            n, done = stack.pop()
            if done:
                order.append(n)
                continue
            if id(n) in seen:
                continue
            seen.add(id(n))
            stack.append((n, True))
            for e in getattr(n, "next", ()):
                if e is not None and id(e[0]) not in seen:
                    stack.append((e[0], False))
    order.reverse()
    return order


def _run_hooks(hooks: dict, slots: list) -> list:
    """Tensor.register_hook functions: each may return a replacement gradient."""
    slots = list(slots)
    for nr, fns in hooks.items():
        for fn in list(fns.values()):
            if slots[nr] is not None:
                r = fn(slots[nr])
                if r is not None:
                    slots[nr] = r
    return slots


def _edge_of(t) -> tuple:
    if t._grad_fn is not None:
        return (t._grad_fn, t._output_nr)
    return (t._accumulator(), 0)


def run_backward(roots: Sequence, grads: Sequence, retain_graph: bool = False, create_graph: bool = False,
                 inputs: Sequence | None = None) -> list | None:
    """Propagate `grads` from `roots` (tensors) through the tape.

    With `inputs` given, returns their gradients (autograd.grad) instead of accumulating into `.grad`.
    """
    from .tensor import active_trace, apply  # function-local: tensor.py builds on this module
    tr = active_trace()
    if tr is not None:
        tr.ran_backward = True
    pending: dict[int, list] = {}

    def send(edge, g) -> None:
        node, nr = edge
        slots = pending.setdefault(id(node), [None] * node.n_outputs)
        slots[nr] = g if slots[nr] is None else apply("add", slots[nr], g)

    root_nodes = []
    for k, (t, g) in enumerate(zip(roots, grads)):
        if not t.requires_grad:
            raise RuntimeError(f"element {k} of tensors does not require grad and does not have a grad_fn")
        if g.dtype != t.dtype:  # PyTorch casts a given gradient to the output's dtype
            g = apply("cast", g, dtype=t.dtype)
        e = _edge_of(t)
        root_nodes.append(e[0])
        send(e, g)
    want: dict[tuple, list[int]] | None = None
    results: dict[tuple, Any] = {}
    if inputs is not None:
        want = {}
        for k, t in enumerate(inputs):
            n, nr = _edge_of(t)
            want.setdefault((id(n), nr), []).append(k)
    order = _toposort(root_nodes)
    prev = is_grad_enabled()
    set_grad_enabled(create_graph)
    try:
        for node in order:
            slots = pending.pop(id(node), None)
            if slots is None or all(g is None for g in slots):
                continue
            hooks = node.tensor._hooks if isinstance(node, AccumulateGrad) else getattr(node, "hooks", None)
            if hooks:
                slots = _run_hooks(hooks, slots)
            if want is not None:
                for nr, g in enumerate(slots):
                    if (id(node), nr) in want and g is not None:
                        results[(id(node), nr)] = g
            if isinstance(node, AccumulateGrad):
                if want is None:
                    node.tensor._accumulate_grad(slots[0], create_graph)
                continue
            if want is None and node.retained is not None:
                t = node.retained()
                if t is not None:
                    t._accumulate_grad(slots[0], create_graph)
            cts = node.run(slots, create_graph)
            for nxt, ct in zip(node.next, cts):
                if nxt is None or ct is None:
                    continue
                if isinstance(ct, Aval):
                    raise AssertionError(f"{node.name()}: a needed cotangent read an unsaved value "
                                         f"(fix `saves`/`save_deps` of primitive {node.prim.name!r})")
                send(nxt, ct)
            if not retain_graph:
                node.release()
    finally:
        set_grad_enabled(prev)
    if want is not None:
        out = [None] * len(inputs)
        for key, ks in want.items():
            for k in ks:
                out[k] = results.get(key)
        return out
    return None
