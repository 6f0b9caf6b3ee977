"""A fuzzed program as data: its inputs, its steps (lines of ordinary kiln code) and its outputs.

A `Program` renders to Python source (`render`) that uses only kiln's public API: a function
`program(v0, v1, ...)`, the input specs, and the helpers of `PRELUDE` that build the inputs
and run a function with a backward pass. The fuzzer executes that source, and a regression
test is that same source written to a file, so what fails in the fuzzer is what the file runs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

LAYOUTS = ("contiguous", "transposed", "strided", "offset", "expanded")
FILLS = ("grid", "ones", "zeros")


@dataclass(frozen=True)
class InputSpec:
    """One argument: its shape, dtype, how it is laid out in memory (a view of a leaf tensor
    for every layout but contiguous), whether its leaf requires grad, and its values.
    `alias` is the index of an earlier argument this one is (`same`) or shares memory with
    (`detach`): the layout then says which."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = "contiguous"
    requires_grad: bool = False
    fill: str = "grid"
    alias: int | None = None

    def as_tuple(self) -> tuple:
        return (self.shape, self.dtype, self.layout, self.requires_grad, self.fill, self.alias)


@dataclass(frozen=True)
class Step:
    """One line: `code` with `{0}`, `{1}`, ... standing for the values `args` (indices into
    inputs + step results). An expression gives a new value; a statement (`stmt=True`: an
    in-place update such as `{0}[1:] = 0.5`) updates `args[0]`, which is then its value."""

    code: str
    args: tuple[int, ...]
    family: str = "exact"
    stmt: bool = False

    def line(self) -> str:
        return self.code.format(*(f"v{a}" for a in self.args))


@dataclass(frozen=True)
class Program:
    inputs: tuple[InputSpec, ...]
    steps: tuple[Step, ...]
    outputs: tuple[int, ...]
    seed: int = 0
    training: bool = True  # the guarded module's `training` flag at the call

    @property
    def n_values(self) -> int:
        return len(self.inputs) + len(self.steps)

    @property
    def families(self) -> frozenset[str]:
        return frozenset({"exact"} | {s.family for s in self.steps})

    def with_inputs(self, inputs) -> "Program":
        return replace(self, inputs=tuple(inputs))

    def function_source(self, name: str = "program") -> str:
        n = len(self.inputs)
        lines = [f"def {name}({', '.join(f'v{i}' for i in range(n))}):"]
        for k, s in enumerate(self.steps):
            v = n + k
            if s.stmt:
                lines.append(f"    {s.line()}")
                lines.append(f"    v{v} = v{s.args[0]}")
            else:
                lines.append(f"    v{v} = {s.line()}")
        outs = ", ".join(f"v{o}" for o in self.outputs)
        lines.append(f"    return ({outs},)")
        return "\n".join(lines) + "\n"


# The helpers every rendered program uses (`kiln/testing/prelude.py`: public kiln API only),
# imported by each program and by each regression test file it writes.
PRELUDE = """\
import numpy as np

import kiln
from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401
"""


def render(program: Program, name: str = "program") -> str:
    """The program's full source: PRELUDE, the function, and its specs as `SPECS`."""
    specs = ",\n    ".join(repr(s.as_tuple()) for s in program.inputs)
    return (PRELUDE + "\n\n" + program.function_source(name) + "\n\n"
            + f"SPECS = [\n    {specs},\n]\nSEED = {program.seed}\nTRAINING = {program.training}\n")


def load(program: Program) -> dict[str, Any]:
    """Execute the program's source; the namespace holds `program`, `run`, `SPECS`, ..."""
    ns: dict[str, Any] = {"__name__": "kiln_fuzz_program"}
    exec(compile(render(program), "<kiln fuzz program>", "exec"), ns)
    return ns
