"""The workload registry: columns, `Prepared` steps, `Skip`, and `@register`.

A workload is a function `build(column, quick) -> Prepared`; it raises `Skip(reason)` when a
column cannot run here (a missing package, ...). A workload lists the columns it applies to
(`register(..., columns=...)`); the others are not run and not shown. Columns:

- `numpy`                    the same computation written directly in numpy (kernel workloads)
- `kiln eager`               kiln tensors, eager numpy execution
- `kiln.compile[llvm]`       the step wrapped in `kiln.compile(..., backend="llvm")`: native code
- `kiln.compile[reference]`  the same, on the reference interpreter (numpy, node by node)
- `torch eager`              PyTorch, eager
- `torch.compile`            PyTorch with `torch.compile` (run in a subprocess with a time box, see harness)
- `jax.jit`                  JAX with `jax.jit` (skipped when jax is not installed)

PEERS are the columns that are not kiln: what a user would pick instead. Each row's
"best peer" ratio divides by the fastest of them in the same run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

COLUMNS = ["numpy", "kiln eager", "kiln.compile[llvm]", "kiln.compile[reference]", "torch eager",
           "torch.compile", "jax.jit"]
PEERS = ["numpy", "torch eager", "torch.compile", "jax.jit"]
KILN_COMPILE = {"kiln.compile[llvm]": "llvm", "kiln.compile[reference]": "reference"}
SUBPROCESS_COLUMNS = {"torch.compile"}  # long warm-ups: run under a wall-clock time box


class Skip(Exception):
    """This (workload, column) cannot run here; the message says why."""


@dataclass
class Prepared:
    """A ready-to-time step and what to report about it."""

    step: Callable[[], Any]  # one step; returns the loss tensor / the result
    loss_of: Callable[[Any], float]  # a float summary of what step() returned (loss, checksum)
    notes: list[str] = field(default_factory=list)
    # raises AssertionError (with what differs) when step()'s first result is wrong; None: no check
    check: Callable[[Any], None] | None = None
    bytes_moved: int | None = None  # bytes one step must read + write at least (for GB/s)
    flops: int | None = None  # floating-point operations of one step (for GFLOP/s: a matmul's 2mnk)
    # kiln.compile columns: `lower()` returns the step's `kiln.Lowered` (for benchmarks.profile)
    lower: Callable[[], Any] | None = None


@dataclass
class Workload:
    name: str
    description: str
    build: Callable[[str, bool], Prepared]
    columns: list[str]


REGISTRY: dict[str, Workload] = {}


def register(name: str, description: str, columns: list[str] | None = None):
    """Add `build(column, quick) -> Prepared` to the registry for `columns` (default: all)."""
    cols = list(COLUMNS) if columns is None else list(columns)
    bad = [c for c in cols if c not in COLUMNS]
    if bad:
        raise ValueError(f"workload {name!r}: unknown column(s) {bad}; known: {COLUMNS}")

    def deco(fn: Callable[[str, bool], Prepared]) -> Callable[[str, bool], Prepared]:
        REGISTRY[name] = Workload(name, description, fn, cols)
        return fn
    return deco


def kiln_backend(column: str) -> str:
    """The kiln.compile backend a `kiln.compile[...]` column names."""
    try:
        return KILN_COMPILE[column]
    except KeyError:
        raise ValueError(f"column {column!r} is not a kiln.compile column ({list(KILN_COMPILE)})") from None
