"""The fuzzer catches a deliberately broken rewrite rule, kernel lowering and memory plan, and
shrinks each failing program to a small one (and writes a regression test that fails)."""
import pytest

import kiln
from kiln.codegen import scalar_rules
from kiln.passes import memory, rewrites
from kiln.testing.fuzz import fuzz
from kiln.testing.regression import write_regression


def _first_failure(backend, n=80):
    res = fuzz(n, seed=0, backends=[backend], shrink=True)
    assert res.failures, f"the fuzzer missed the breakage in {n} programs"
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


def test_broken_rewrite_rule_is_caught(monkeypatch, tmp_path):
    # x * c -> x for any splat constant c (the real rule only drops a multiplication by one)
    k = next(i for i, r in enumerate(rewrites.RULES) if r.name == "mul-one")
    bad = rewrites.Rule("mul-one", ("mul",), lambda n: n.inputs[0] if rewrites.is_splat(n.inputs[1]) else None,
                        lambda rw, n, x: x)
    monkeypatch.setattr(rewrites, "RULES", rewrites.RULES[:k] + [bad] + rewrites.RULES[k + 1:])
    monkeypatch.setattr(rewrites.rewrite, "__defaults__", (rewrites.RULES,))
    prog, failure, small, _ = _first_failure("reference")
    assert failure.kind in ("output", "grad", "argument")
    _assert_small_and_reproduced(prog, small, failure, tmp_path)


def test_broken_scalar_rule_is_caught(monkeypatch, tmp_path):
    monkeypatch.setitem(scalar_rules.SCALAR_RULES, "maximum", scalar_rules._binary("min"))
    with kiln.config.override(cache=False):
        prog, failure, small, _ = _first_failure("llvm")
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
    with kiln.config.override(verify=False, cache=False):  # verify_memory_plan would catch it first
        prog, failure, small, _ = _first_failure("llvm", n=150)
        assert failure.backend == "llvm"
        _assert_small_and_reproduced(prog, small, failure, tmp_path)
