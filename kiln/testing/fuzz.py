"""The differential fuzzer: random programs run eagerly, on the reference interpreter and on
every available native backend, forward and backward, compared under `kiln.testing.tolerances`.

    python -m kiln.testing.fuzz --n 1000 --seed 7            # fuzz; shrink and write each failure
    python -m kiln.testing.fuzz --n 300 --seed 0 --json s.json   # the CI batch, with its counts

For each program (`kiln.testing.generate`) and backend, the compiled function is called:

1. on the program's inputs: outputs, the gradients of a scalar loss (`.backward()` through the
   compiled backward) and the arguments after the call (in-place updates) must match eager;
2. again on new data of the same signature (a cache hit);
3. once more on a variant — new shapes, dtypes, strides, `requires_grad` flags, aliasing, or a
   flipped guarded `Module.training` — which must match eager too, and must retrace when the
   signature changed (the cache never replays a program for a signature it was not traced for).

A failing program is shrunk (`kiln.testing.shrink`) and written as a pytest file
(`kiln.testing.regression`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .generate import Generator
from .program import InputSpec, Program, load
from .tolerances import compare_runs

VARIANTS = ("shape", "dtype", "layout", "requires_grad", "alias", "training")


def native_backends() -> list[str]:
    """The native backends of `kiln.runtime.backend` usable on this machine (a backend class may
    say it is not, with a static `is_available()`)."""
    from ..runtime.backend import BACKENDS
    names = []
    for name, cls in BACKENDS.items():
        if name == "reference":
            continue
        available = getattr(cls, "is_available", None)
        if available is None or available():
            names.append(name)
    return names


def all_backends() -> list[str]:
    return ["reference"] + native_backends()


@dataclass(frozen=True)
class Call:
    """One call of the compiled function: its argument specs, data seed and `training` flag."""

    name: str  # "first", "same", or a variant of VARIANTS
    specs: tuple[InputSpec, ...]
    seed: int
    training: bool
    retraces: bool  # a new signature: the cache must miss


@dataclass
class Failure:
    backend: str
    kind: str  # "crash", "output", "grad", "argument", "cache"
    call: str  # the Call's name
    detail: str
    calls: tuple[Call, ...] = ()

    def same_as(self, other: "Failure") -> bool:
        return (self.backend, self.kind, self.call) == (other.backend, other.kind, other.call)

    def __str__(self) -> str:
        return f"[{self.backend}] {self.kind} on the {self.call} call: {self.detail}"


@dataclass
class Counts:
    programs: int = 0
    calls: int = 0  # compiled calls compared with eager
    gradients: int = 0  # gradient arrays compared
    values: int = 0  # output and argument arrays compared
    variants: dict[str, int] = field(default_factory=dict)

    def add(self, other: "Counts") -> None:
        self.programs += other.programs
        self.calls += other.calls
        self.gradients += other.gradients
        self.values += other.values
        for k, v in other.variants.items():
            self.variants[k] = self.variants.get(k, 0) + v


class Invalid(Exception):
    """The program (or a shrunk candidate) does not run eagerly: it is not a test case."""


def _specs(specs) -> list[tuple]:
    return [s.as_tuple() for s in specs]


def variant_call(prog: Program, name: str) -> Call | None:
    """The second-signature call `name` for `prog`, or None where it does not apply."""
    specs = list(prog.inputs)
    floats = [i for i, s in enumerate(specs) if s.dtype in ("float32", "float64") and s.alias is None]
    if name == "shape":
        new = [replace(s, shape=tuple(d + 1 if d >= 2 else d for d in s.shape)) for s in specs]
        retraces = new != specs
    elif name == "dtype":
        if not floats:
            return None
        swap = {"float32": "float64", "float64": "float32"}
        new = [replace(s, dtype=swap.get(s.dtype, s.dtype)) if s.alias is None or s.layout == "same"
               else s for s in specs]
        new = [replace(s, dtype=new[s.alias].dtype) if s.alias is not None else s for s in new]
        retraces = True
    elif name == "layout":
        new = [replace(s, layout="transposed" if s.layout == "contiguous" and len(s.shape) >= 2
                       else "strided" if s.layout == "contiguous" else "contiguous") if s.alias is None else s
               for s in specs]
        retraces = False
    elif name == "requires_grad":
        if not floats:
            return None
        new = [replace(s, requires_grad=not s.requires_grad) if k in floats else s for k, s in enumerate(specs)]
        retraces = True
    elif name == "alias":
        aliased = [k for k, s in enumerate(specs) if s.alias is not None]
        if aliased:
            new = [replace(s, alias=None, layout="contiguous") if s.alias is not None else s for s in specs]
        else:
            pairs = [(a, b) for a in range(len(specs)) for b in range(a + 1, len(specs))
                     if specs[a].as_tuple()[:2] == specs[b].as_tuple()[:2] and specs[a].alias is None]
            if not pairs:
                return None
            a, b = pairs[0]
            new = list(specs)
            if specs[a].layout != "offset" or not specs[a].shape:
                new[a] = replace(specs[a], layout="offset")
            new[b] = replace(specs[b], alias=a, layout="overlap", requires_grad=False)
        retraces = False
    elif name == "training":
        if not any("flag(" in s.code for s in prog.steps):
            return None
        return Call(name, prog.inputs, prog.seed + 2, not prog.training, True)
    else:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return Call(name, tuple(new), prog.seed + 2, prog.training, retraces)


def calls_for(prog: Program, variants: Sequence[str] | None = None) -> list[Call]:
    """The calls made on each backend: first, same signature again, then the variants (default:
    one drawn from the program's seed among those that apply)."""
    calls = [Call("first", prog.inputs, prog.seed, prog.training, True),
             Call("same", prog.inputs, prog.seed + 1, prog.training, False)]
    if variants is None:
        rng = np.random.default_rng([prog.seed, 99])
        names = [VARIANTS[int(i)] for i in rng.permutation(len(VARIANTS))]
        for name in names:
            c = variant_call(prog, name)
            if c is not None:
                return calls + [c]
        return calls
    return calls + [c for c in (variant_call(prog, n) for n in variants) if c is not None]


def check_program(prog: Program, backends: Sequence[str] | None = None, variants: Sequence[str] | None = None,
                  counts: Counts | None = None, progress=None) -> Failure | None:
    """Run `prog` eagerly and on each backend (default: all available) for each call of
    `calls_for(prog, variants)`; the first difference, or None. Raises `Invalid` if the program's
    first call does not run eagerly (a variant that does not run eagerly is skipped).
    `progress(backend, call_name)` is called before each compiled call (`kiln.testing.isolate`
    reports it to the parent, which names the call a native crash happened in)."""
    backends = list(backends) if backends is not None else all_backends()
    counts = counts if counts is not None else Counts()
    ns = load(prog)
    eager_fn, run = ns["program"], ns["run"]
    import kiln
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calls, wants = [], []
        for call in calls_for(prog, variants):
            try:
                wants.append(run(eager_fn, _specs(call.specs), call.seed, call.training))
            except Exception as e:  # noqa: BLE001
                if call.name == "first":
                    raise Invalid(f"{type(e).__name__}: {e}") from None
                continue
            calls.append(call)
        counts.programs += 1
        for call in calls[2:]:
            counts.variants[call.name] = counts.variants.get(call.name, 0) + 1
        for backend in backends:
            fn = kiln.compile(eager_fn, backend=backend, recompile_limit=1000)
            for call, want in zip(calls, wants):
                if progress is not None:
                    progress(backend, call.name)
                misses = fn.cache_info().misses
                try:
                    got = run(fn, _specs(call.specs), call.seed, call.training)
                except Exception as e:  # noqa: BLE001 - eager ran it: any error here is the backend's
                    if _passed_twice(e, call):
                        continue
                    first = str(e).splitlines()[0] if str(e) else ""
                    return Failure(backend, "crash", call.name, f"{type(e).__name__}: {first}", tuple(calls))
                counts.calls += 1
                counts.gradients += sum(g is not None for g in want["grad"])
                counts.values += len(want["output"]) + len(want["argument"])
                diff = compare_runs(got, want, prog.families)
                if diff is not None:
                    return Failure(backend, diff[0], call.name, diff[1], tuple(calls))
                if call.retraces and fn.cache_info().misses == misses:
                    return Failure(backend, "cache", call.name, "a new signature replayed a cached program "
                                   "instead of retracing", tuple(calls))
    return None


def _passed_twice(e: Exception, call: Call) -> bool:
    """kiln.compile refuses one tensor passed twice (or with its detached alias): an expected error.
    An `overlap` alias is the argument itself where `leaf[:-1]` of it selects everything (an
    empty leading dim), so any aliased call may get it."""
    shared = any(s.alias is not None for s in call.specs)
    return shared and isinstance(e, RuntimeError) and "passed twice" in str(e)


@dataclass
class FuzzResult:
    counts: Counts
    failures: list[tuple[Program, Failure, Program, Path | None]]  # (program, failure, shrunk, test file)
    invalid: int
    seconds: float
    backends: list[str]

    def summary(self) -> str:
        c = self.counts
        return (f"{c.programs} programs on {', '.join(self.backends)}: {c.calls} compiled calls compared with "
                f"eager ({c.values} values, {c.gradients} gradients), variants {dict(sorted(c.variants.items()))}; "
                f"{len(self.failures)} failing; {self.seconds:.1f} s")


def fuzz(n: int, seed: int = 0, profile: str = "small", backends: Sequence[str] | None = None,
         shrink: bool = True, out_dir: str | Path | None = None, log=None, max_failures: int | None = None,
         shrink_limit: int = 400, isolate: bool = False, setup: str | Path | None = None,
         start: int = 0) -> FuzzResult:
    """Fuzz `n` programs drawn from `seed` (programs `start` .. `start + n - 1` of its stream: a
    long campaign runs in chunks that together check what one run would; the skipped programs
    are drawn, not checked); shrink each failure (at most `shrink_limit` candidate
    programs checked) and (with `out_dir`) write it as a pytest file there. Stops early after
    `max_failures` failures. With `isolate`, each program (and each shrink candidate) is checked
    in a subprocess (`kiln.testing.isolate`), so a native crash is a failure of that program;
    `setup` is a Python file that subprocess runs first (a test injecting a fault)."""
    from .regression import write_regression
    from .shrink import shrink_failure
    backends = list(backends) if backends is not None else all_backends()
    gen = Generator(seed, profile)
    counts, failures, invalid = Counts(), [], 0
    t0 = time.perf_counter()
    for i in range(start):  # programs draw from one stream: draw the skipped ones (eagerly only)
        gen.program(seed * 1_000_003 + i)
    for i in range(start, start + n):
        prog = gen.program(seed * 1_000_003 + i)
        try:
            if isolate:
                from .isolate import check_isolated
                failure = check_isolated(prog, backends, counts=counts, setup=setup)
            else:
                failure = check_program(prog, backends, counts=counts)
        except Invalid:
            invalid += 1
            continue
        if failure is None:
            continue
        small = shrink_failure(prog, failure, shrink_limit, isolate=isolate, setup=setup) if shrink else prog
        path = None
        if out_dir is not None:
            path = write_regression(small, failure, Path(out_dir))
        failures.append((prog, failure, small, path))
        if log is not None:
            log(f"program {i} (seed {prog.seed}) fails: {failure}" + (f"\n  written to {path}" if path else ""))
        if max_failures is not None and len(failures) >= max_failures:
            break
    return FuzzResult(counts, failures, invalid, time.perf_counter() - t0, backends)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kiln.testing.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="programs to fuzz (default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the program stream (default 0)")
    p.add_argument("--start", type=int, default=0,
                   help="index of the first program of the stream (default 0): run a campaign in chunks")
    p.add_argument("--profile", choices=("small", "full"), default="small",
                   help="small: dims up to 7 (the CI batch); full: primes and large dims too")
    p.add_argument("--backend", action="append", help="a backend to compare (repeatable; default: all available)")
    p.add_argument("--out", default="fuzz-failures", help="directory for the regression tests of failures")
    p.add_argument("--no-shrink", action="store_true", help="write failing programs as drawn")
    p.add_argument("--shrink-limit", type=int, default=400, help="candidate programs the shrinker checks per failure")
    p.add_argument("--max-failures", type=int, help="stop after this many failures")
    p.add_argument("--isolate", action="store_true",
                   help="check each program in a subprocess: a native crash fails that program, not the fuzzer")
    p.add_argument("--json", help="write the counts as JSON here (read by python -m kiln.testing.report)")
    a = p.parse_args(argv)
    res = fuzz(a.n, a.seed, a.profile, a.backend, shrink=not a.no_shrink, out_dir=a.out, log=print,
               max_failures=a.max_failures, shrink_limit=a.shrink_limit, isolate=a.isolate, start=a.start)
    print(res.summary())
    if a.json:
        Path(a.json).write_text(json.dumps({
            "command": "python -m kiln.testing.fuzz " + " ".join(sys.argv[1:] if argv is None else argv),
            "programs": res.counts.programs, "calls": res.counts.calls, "gradients": res.counts.gradients,
            "values": res.counts.values, "variants": res.counts.variants, "failures": len(res.failures),
            "backends": res.backends, "seconds": round(res.seconds, 1)}, indent=2) + "\n")
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
