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


# The helpers every rendered program uses: public kiln API only (they are written into each
# regression test file as they are).
PRELUDE = '''\
import numpy as np

import kiln

F = kiln.nn.functional


class Flag(kiln.nn.Module):
    """Python state a compiled function is guarded on: forward branches on `self.training`."""

    def forward(self, x):
        return x * 2 if self.training else x - 1


flag = Flag()


def make_input(spec, seed, i, leaves, args):
    """The leaf tensor (gradients land on it; None for an alias) and the argument (a view of the leaf)
    of input `i` with `spec`; `leaves` and `args` are those made so far (an alias refers to one:
    `same` passes that argument again, `detach` its detached alias, `overlap` the view
    `leaf[:-1]` of an `offset` argument `leaf[1:]`)."""
    shape, dtype, layout, requires_grad, fill, alias = spec
    if alias is not None:
        if layout == "overlap":
            return None, leaves[alias][:-1]
        return None, (args[alias] if layout == "same" else args[alias].detach())
    rng = np.random.default_rng([seed, i])
    nd = len(shape)
    if layout == "transposed" and nd >= 2:
        stored = tuple(reversed(shape))
    elif layout == "strided" and nd >= 1:
        stored = shape[:-1] + (2 * shape[-1],)
    elif layout == "offset" and nd >= 1:
        stored = (shape[0] + 1,) + shape[1:]
    elif layout == "expanded" and nd >= 1:
        stored = (1,) + shape[1:]
    else:
        stored = shape
    if fill == "ones":
        data = np.ones(stored)
    elif fill == "zeros":
        data = np.zeros(stored)
    elif dtype == "bool":
        data = rng.random(stored) < 0.5
    elif dtype.startswith("int"):
        data = rng.integers(-5, 6, stored)
    else:
        data = rng.integers(-16, 17, stored) / 8  # a dyadic grid: small sums and products are exact
    leaf = kiln.tensor(np.asarray(data).astype(dtype), requires_grad=requires_grad)
    if layout == "transposed" and nd >= 2:
        return leaf, leaf.permute(*reversed(range(nd)))
    if layout == "strided" and nd >= 1:
        return leaf, leaf[..., ::2]
    if layout == "offset" and nd >= 1:
        return leaf, leaf[1:]
    if layout == "expanded" and nd >= 1:
        return leaf, leaf.expand(*shape)
    return leaf, leaf


def make_inputs(specs, seed):
    """The leaves and the arguments of `specs` (see `make_input`)."""
    leaves, args = [], []
    for i, spec in enumerate(specs):
        leaf, arg = make_input(spec, seed, i, leaves, args)
        leaves.append(leaf)
        args.append(arg)
    return leaves, args


def loss_of(outs):
    """A scalar loss over the float outputs that need gradients, with a position-dependent cotangent."""
    loss = None
    for o in outs:
        if o.dtype.is_floating_point and o.requires_grad:
            w = ((kiln.arange(o.numel()) % 7 + 1) / 4).to(o.dtype).reshape(o.shape)
            term = (o * w).sum().double()
            loss = term if loss is None else loss + term
    return loss


def run(fn, specs, seed, training=True):
    """Call `fn` on fresh inputs of `specs` and backpropagate `loss_of` its outputs; return the
    outputs, the leaves' gradients and the arguments' values after the call (in-place updates)."""
    flag.train(training)
    leaves, args = make_inputs(specs, seed)
    kiln.manual_seed(seed)
    outs = fn(*args)
    values = [o.detach().numpy().copy() for o in outs]
    loss = loss_of(outs)
    if loss is not None:
        loss.backward()
    grads = [None if leaf is None or leaf.grad is None else leaf.grad.numpy().copy() for leaf in leaves]
    after = [a.detach().numpy().copy() for a in args]
    return {"output": values, "grad": grads, "argument": after}
'''


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
