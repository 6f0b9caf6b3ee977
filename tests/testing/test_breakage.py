"""The fuzzer catches a deliberately broken rewrite rule, kernel lowering and memory plan, and
shrinks each failing program to a small one (and writes a regression test that fails).

Each case fuzzes a few programs from a generator seed whose first programs hit the breakage
(found by scanning seeds), stops at the first failure and shrinks it with a bounded budget."""
import pytest

import kiln
from kiln.codegen import scalar_rules
from kiln.passes import memory, rewrites
from kiln.testing.fuzz import fuzz
from kiln.testing.regression import write_regression

SHRINK_LIMIT = 60


def _first_failure(backend, seed, n):
    res = fuzz(n, seed=seed, backends=[backend], shrink=True, max_failures=1, shrink_limit=SHRINK_LIMIT)
    assert res.failures, f"the fuzzer missed the breakage in {n} programs of seed {seed}"
    return res.failures[0]


def _assert_small_and_reproduced(prog, small, failure, tmp_path):
    assert len(small.steps) <= 3, small.function_source()
    assert len(small.steps) <= len(prog.steps)
    path = write_regression(small, failure, tmp_path)
    ns = {}
    exec(compile(path.read_text(), str(path), "exec"), ns)
    test = next(v for k, v in ns.items() if k.startswith("test_fuzz_"))
    with pytest.raises(Exception):
        test()


def test_broken_rewrite_rule_is_caught(tmp_path):
    # x * c -> x for any splat constant c (the real rule only drops a multiplication by one)
    k = next(i for i, r in enumerate(rewrites.RULES) if r.name == "mul-one")
    bad = rewrites.Rule("mul-one", ("mul",), lambda n: n.inputs[0] if rewrites.is_splat(n.inputs[1]) else None,
                        lambda rw, n, x: x)
    real, rewrites.RULES[k] = rewrites.RULES[k], bad  # in place: every default `rules=RULES` sees it
    try:
        prog, failure, small, _ = _first_failure("reference", seed=5, n=10)
        assert failure.kind in ("output", "grad", "argument")
        _assert_small_and_reproduced(prog, small, failure, tmp_path)
    finally:
        rewrites.RULES[k] = real


def test_broken_scalar_rule_is_caught(monkeypatch, tmp_path):
    monkeypatch.setitem(scalar_rules.SCALAR_RULES, "maximum", scalar_rules._binary("min"))
    with kiln.config.override(cache=False):  # the breakage is in codegen: cached object code would hide it
        prog, failure, small, _ = _first_failure("llvm", seed=26, n=10)
        assert failure.backend == "llvm"
        _assert_small_and_reproduced(prog, small, failure, tmp_path)


@pytest.mark.parametrize("fault", ["reuse-while-live", "too-small"])
def test_broken_memory_plan_is_caught(monkeypatch, tmp_path, fault):
    real = memory.plan_memory

    def broken(graph, plan=None, *args, **kwargs):
        mem = real(graph, plan, *args, **kwargs)
        if fault == "reuse-while-live":  # every value in buffer 0, however they overlap in time
            if mem.buffers:
                mem.buffers[0].size = max(b.size for b in mem.buffers)
                for v in mem.assignment:
                    mem.assignment[v] = 0
        else:
            for b in mem.buffers:
                b.size //= 2
        return mem

    monkeypatch.setattr(memory, "plan_memory", broken)
    # verify_memory_plan would catch it first; the plan is not in the disk cache's key
    with kiln.config.override(verify=False, cache=False):
        prog, failure, small, _ = _first_failure("llvm", seed=0, n=10)
        assert failure.backend == "llvm"
        _assert_small_and_reproduced(prog, small, failure, tmp_path)
