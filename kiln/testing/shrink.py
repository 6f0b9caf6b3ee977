"""Shrink a failing program to a small one that still fails the same way.

Greedy, to a fixed point: try each simpler candidate — fewer outputs, a step dropped (its uses
read the step's first operand instead), unused arguments dropped, each argument simplified
(no alias, contiguous, no `requires_grad`, ones instead of random values, smaller or fewer
dims) — and keep the first that still fails with the same backend, kind and call. Candidates
that do not run eagerly are not programs and are skipped.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterator

from .program import InputSpec, Program, Step


def drop_step(prog: Program, k: int) -> Program:
    """`prog` without step `k`; its uses read the step's first operand instead."""
    n_in = len(prog.inputs)
    v = n_in + k
    stand_in = prog.steps[k].args[0] if prog.steps[k].args else None

    def remap(a: int) -> int:
        if a == v:
            if stand_in is None:
                raise ValueError("a step without operands has no stand-in")
            return stand_in
        return a - 1 if a > v else a

    steps = prog.steps[:k] + tuple(replace(s, args=tuple(remap(a) for a in s.args)) for s in prog.steps[k + 1:])
    outputs = tuple(dict.fromkeys(remap(o) for o in prog.outputs))
    return replace(prog, steps=steps, outputs=outputs)


def drop_unused_inputs(prog: Program) -> Program:
    """`prog` without the arguments no step reads (an aliased argument keeps what it aliases)."""
    n_in = len(prog.inputs)
    used = {a for s in prog.steps for a in s.args if a < n_in} | {o for o in prog.outputs if o < n_in}
    used |= {s.alias for i, s in enumerate(prog.inputs) if i in used and s.alias is not None}
    if len(used) == n_in:
        return prog
    keep = [i for i in range(n_in) if i in used]
    new_index = {old: new for new, old in enumerate(keep)}

    def remap(a: int) -> int:
        return new_index[a] if a < n_in else a - (n_in - len(keep))

    inputs = tuple(replace(prog.inputs[i], alias=None if prog.inputs[i].alias is None
                           else new_index[prog.inputs[i].alias]) for i in keep)
    steps = tuple(replace(s, args=tuple(remap(a) for a in s.args)) for s in prog.steps)
    return replace(prog, inputs=inputs, steps=steps, outputs=tuple(remap(o) for o in prog.outputs))


def _simpler_inputs(spec: InputSpec) -> Iterator[InputSpec]:
    if spec.alias is not None:
        yield replace(spec, alias=None, layout="contiguous")
    if spec.layout != "contiguous" and spec.alias is None:
        yield replace(spec, layout="contiguous")
    if spec.requires_grad:
        yield replace(spec, requires_grad=False)
    if spec.fill != "ones":
        yield replace(spec, fill="ones")
    for d, s in enumerate(spec.shape):
        if s > 1:
            yield replace(spec, shape=spec.shape[:d] + (1,) + spec.shape[d + 1:])
            if s > 3:
                yield replace(spec, shape=spec.shape[:d] + (s // 2,) + spec.shape[d + 1:])
    if spec.shape:
        yield replace(spec, shape=spec.shape[1:])


def candidates(prog: Program) -> Iterator[Program]:
    """Simpler programs than `prog`, most reducing first."""
    if len(prog.outputs) > 1:
        for o in reversed(prog.outputs):
            yield replace(prog, outputs=(o,))
    for k in reversed(range(len(prog.steps))):
        try:
            yield drop_unused_inputs(drop_step(prog, k))
        except ValueError:
            continue
    pruned = drop_unused_inputs(prog)
    if pruned is not prog:
        yield pruned
    for i, spec in enumerate(prog.inputs):
        for simpler in _simpler_inputs(spec):
            yield prog.with_inputs(prog.inputs[:i] + (simpler,) + prog.inputs[i + 1:])
    if not prog.training:
        yield replace(prog, training=True)


def shrink(prog: Program, still_fails: Callable[[Program], bool], max_checks: int = 400) -> Program:
    """The smallest program reached greedily from `prog` for which `still_fails` holds."""
    checks = 0
    improved = True
    while improved and checks < max_checks:
        improved = False
        for cand in candidates(prog):
            if not cand.outputs or not cand.steps:
                continue
            checks += 1
            if still_fails(cand):
                prog, improved = cand, True
                break
            if checks >= max_checks:
                break
    return prog


def shrink_failure(prog: Program, failure, max_checks: int = 400, isolate: bool = False, setup=None) -> Program:
    """Shrink `prog`, keeping `failure` (a `kiln.testing.fuzz.Failure`: same backend, kind and call).
    With `isolate`, each candidate runs in a subprocess (`kiln.testing.isolate.check_isolated`,
    which runs the file `setup` first)."""
    from .fuzz import Invalid, check_program
    from .isolate import check_isolated
    variants = () if failure.call in ("first", "same") else (failure.call,)

    def still_fails(cand: Program) -> bool:
        try:
            if isolate:
                f = check_isolated(cand, [failure.backend], variants=variants, setup=setup)
            else:
                f = check_program(cand, [failure.backend], variants=variants)
        except Invalid:
            return False
        return f is not None and f.same_as(failure)

    return shrink(prog, still_fails, max_checks)
