"""Ahead-of-time lowering for people reading code: `kiln.compile(f).lower(*args)`.

    lowered = kiln.compile(f).lower(kiln.ShapeDtype((8, 16), kiln.float32))
    print(lowered.as_text("kernels"))     # or traced | optimized | plan | llvm | llvm-opt | asm
                                          # (backend="cuda": cuda | ptx)
    g = lowered.compile()                 # the callable (shares the compiled program)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..ir.dtypes import get_dtype
from ..runtime.backend import executable
from .compile import trace_function
from .creation import zeros

STAGES = ("traced", "optimized", "plan", "kernels", "llvm", "llvm-opt", "asm", "cuda", "ptx")


@dataclass(frozen=True)
class ShapeDtype:
    """An argument given by shape and dtype only (like `jax.ShapeDtypeStruct`): no data needed."""
    shape: tuple[int, ...]
    dtype: Any = "float32"
    requires_grad: bool = False

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "dtype", get_dtype(self.dtype))


def _materialize(x):
    if isinstance(x, ShapeDtype):
        t = zeros(x.shape, dtype=x.dtype)
        if x.requires_grad:
            t.requires_grad_(True)
        return t
    if isinstance(x, (list, tuple)):
        return type(x)(_materialize(v) for v in x)
    if isinstance(x, dict):
        return {k: _materialize(v) for k, v in x.items()}
    return x


class Lowered:
    """One traced specialisation of a compiled function, with every pipeline stage as text."""

    def __init__(self, fn, traced, entry, args, kwargs):
        self._fn = fn
        self._traced = traced
        self._entry = entry
        self._args, self._kwargs = args, kwargs

    def _graphs(self):
        e = self._entry
        if e.autograd is not None:
            return [e.autograd.forward, e.autograd.backward]
        return [e.graph]

    def _executables(self):
        return [executable(g, self._fn.backend) for g in self._graphs()]

    def as_text(self, stage: str = "kernels") -> str:
        """The program at `stage`: traced | optimized | plan | kernels | llvm | llvm-opt | asm
        (the llvm backend) | cuda | ptx (the cuda backend)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        if stage == "traced":
            return str(self._traced)
        if stage == "optimized":
            return "\n".join(str(g) for g in self._graphs())
        parts = []
        for ex in self._executables():
            stages = getattr(ex, "stages", None)
            if stages is None:
                raise ValueError(f"stage {stage!r} needs a compiling backend; this function runs on "
                                 f"{self._fn.backend or 'the reference interpreter'}")
            parts.append(stages(stage))
        return "\n".join(parts)

    def compile(self):
        """The compiled callable (already holding this specialisation)."""
        return self._fn

    def __repr__(self) -> str:
        return f"<Lowered {self._fn.name}: stages {', '.join(STAGES)}>"


def lower_function(cf, args: Sequence, kwargs: dict) -> Lowered:
    args = _materialize(tuple(args))
    kwargs = _materialize(dict(kwargs))
    traced = trace_function(cf.fn, args, kwargs, name=cf.name, autograd=False, optimize=False).graph
    entry, _ = cf._lookup(args, kwargs, count=False)
    lowered = Lowered(cf, traced, entry, args, kwargs)
    lowered._executables()  # compile now, as `lower` promises
    return lowered
