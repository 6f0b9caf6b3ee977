"""The closed primitive set. Each primitive is registered once, with:

- `shape_rule(avals, **attrs) -> (shape, dtype)`: abstract evaluation and input checks,
- `impl(*arrays, **attrs) -> ndarray`: the numpy reference (eager CPU and test oracle),
- `vjp(ops, g, inputs, out, **attrs) -> tuple`: cotangent per input (None: no gradient),
  written against `RuleOps`, so eager autograd and graph autodiff share it,
- `saves` / `save_deps`: what the VJP reads (eager autograd saves only that),
- `kind` and `props` (a `Prop` flag set: view, expensive, scatter, ...): what the fusion
  planner and codegen need to know, queried with `prims_with(prop)` / `Primitive.has(prop)`.

`registry` holds the table and `register`; each family module (elementwise, reduction,
movement, index, linalg, conv, creation) imports only the registry and registers its
primitives when imported. This package imports them all and re-exports the public API.
"""
from . import elementwise, reduction, movement, index, linalg, creation, conv  # noqa: F401  (registration order)
from .creation import random_bits
from .elementwise import erf
from .movement import broadcast_shapes
from .registry import (CONV, CREATION, ELEMENTWISE, INDEX, KINDS, MATMUL, MOVEMENT, PRIMITIVES, RANDOM, REDUCTION,
                       Primitive, Prop, ShapeError, get_primitive, prims_with, register)

__all__ = ["CONV", "CREATION", "ELEMENTWISE", "INDEX", "KINDS", "MATMUL", "MOVEMENT", "PRIMITIVES", "RANDOM",
           "REDUCTION", "Primitive", "Prop", "ShapeError", "broadcast_shapes", "erf", "get_primitive", "prims_with",
           "random_bits", "register"]
