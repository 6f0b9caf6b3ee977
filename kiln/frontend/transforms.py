"""Function transforms as in JAX: `kiln.grad`, `kiln.value_and_grad`, `kiln.vjp`.

Each traces the function into a graph and differentiates the *graph* with
kiln.passes.autodiff (the primitives' VJP rules), then runs the result; traces are
cached per input signature like kiln.compile.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..passes.autodiff import vjp_graph
from ..runtime.backend import run_graph
from .compile import (CompiledEntry, CompiledFunction, finish_call, forward_backward, optimize_graph,
                      saved_before_write_back, trace_function)
from .pytree import tree_flatten
from .tensor import Tensor


def _tensor_leaf_index(args: tuple, argnum: int) -> int:
    if not 0 <= argnum < len(args):
        raise ValueError(f"argnums {argnum} is out of range for a call with {len(args)} positional arguments")
    if not isinstance(args[argnum], Tensor):
        raise TypeError(f"argument {argnum} must be a Tensor to differentiate with respect to it, "
                        f"got {type(args[argnum]).__name__}")
    before, _ = tree_flatten(args[:argnum])
    return sum(isinstance(x, Tensor) for x in before)


class GradFunction(CompiledFunction):
    """`fn` differentiated w.r.t. positional arguments `argnums` (a scalar-valued fn)."""

    def __init__(self, fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
                 with_value: bool = False):
        super().__init__(fn, name=getattr(fn, "__name__", "fn") + "_grad")
        self.argnums = argnums
        self.has_aux = has_aux
        self.with_value = with_value

    def _argnums(self) -> tuple[int, ...]:
        return (self.argnums,) if isinstance(self.argnums, int) else tuple(self.argnums)

    def _trace(self, args, kwargs) -> CompiledEntry:
        entry = trace_function(self.fn, args, kwargs, name=self.name, autograd=False)
        value_leaf = entry.out_leaves[0]
        if self.has_aux and not (isinstance(entry.out_spec, tuple) and entry.out_spec[0] in ("tuple", "list")):
            raise TypeError("has_aux=True needs the function to return a (value, aux) pair")
        kind, idx = value_leaf
        if kind != "out":
            raise TypeError("the differentiated function must return a tensor (or (tensor, aux) with has_aux=True)")
        node = entry.graph.outputs[idx]
        if node.shape != () or not node.dtype.is_floating_point:
            raise TypeError(f"grad requires a scalar floating-point output, got {node.dtype.name}{list(node.shape)}; "
                            "use kiln.vjp for non-scalar outputs")
        wrt = [_tensor_leaf_index(args, a) for a in self._argnums()]
        n_out = len(entry.graph.outputs)
        entry.graph = optimize_graph(vjp_graph(entry.graph, wrt, outputs=[idx], seed_ones=True), self.name)
        entry.wrt = wrt
        entry.diff_outputs = [n_out]  # where the gradients start
        return entry

    def _run(self, entry: CompiledEntry, leaves, captured=None, prepared=None):
        tensors = [x for x in leaves if isinstance(x, Tensor)]
        arrays = [t._cell.value for t in tensors] + [t._cell.value for t in entry.captured_now()]
        results = run_graph(entry.graph, arrays, self.backend)
        n_out = entry.diff_outputs[0]
        out, _ = finish_call(entry, tensors, results[:n_out])
        grads = tuple(Tensor._make(r) for r in results[n_out:])
        g = grads[0] if isinstance(self.argnums, int) else grads
        if self.has_aux:
            value, aux = out[0], out[1]
            return ((value, aux), g) if self.with_value else (g, aux)
        return (out, g) if self.with_value else g


def grad(fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """The gradient of scalar-valued `fn` w.r.t. positional argument(s) `argnums` (as jax.grad)."""
    return GradFunction(fn, argnums, has_aux, with_value=False)


def value_and_grad(fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """`(fn(*args), grad(fn)(*args))` from one joint forward+backward graph (as jax.value_and_grad)."""
    return GradFunction(fn, argnums, has_aux, with_value=True)


def vjp(fn: Callable, *primals: Tensor) -> tuple[Any, Callable]:
    """`(fn(*primals), vjp_fn)`; `vjp_fn(cotangent)` returns one gradient per primal (as jax.vjp).

    The forward graph returns the values the backward needs; `vjp_fn` runs only the
    backward graph.
    """
    for k, p in enumerate(primals):
        if not isinstance(p, Tensor):
            raise TypeError(f"vjp: primal {k} must be a Tensor, got {type(p).__name__}")
    entry = trace_function(fn, primals, {}, name=getattr(fn, "__name__", "fn") + "_vjp", autograd=False)
    g = entry.graph
    user = [v for kind, v in entry.out_leaves if kind == "out"]
    split = forward_backward(g, list(range(len(primals))), user)
    captured = entry.captured_now(list(primals))
    arrays = [p._cell.value for p in primals] + [t._cell.value for t in captured]
    results = run_graph(split.forward, arrays)
    saved = saved_before_write_back(entry, list(primals) + captured, list(results[split.n_outputs:]))
    out, by_index = finish_call(entry, list(primals), results[:split.n_outputs])

    def vjp_fn(cotangents):
        cts, _ = tree_flatten(cotangents)
        if len(cts) != len(user):
            raise ValueError(f"vjp_fn expects {len(user)} cotangent(s), one per output, got {len(cts)}")
        arrs = []
        for k, (c, o) in enumerate(zip(cts, user)):
            node = g.outputs[o]
            arr = np.asarray(c._cell.value if isinstance(c, Tensor) else c, dtype=node.dtype.np_dtype)
            if arr.shape != node.shape:
                raise ValueError(f"cotangent {k} has shape {arr.shape}, the output has shape {node.shape}")
            arrs.append(arr)
        return tuple(Tensor._make(r) for r in run_graph(split.backward, list(saved) + arrs))

    return out, vjp_fn
