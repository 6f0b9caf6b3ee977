"""kiln.profiler / KILN_PROFILE: per program, one row per kernel with its calls, time and rates."""
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import kiln
from kiln import config
from kiln.ir import parse_graph
from kiln.passes import plan_fusion
from kiln.runtime import profiler as prof_mod
from kiln.runtime.backend import executable
from kiln.runtime.interpreter import run_graph as interpret
from kiln.runtime.profiler import kernel_flops, kernel_label, node_flops

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# a matmul, then relu and a row sum: two kernels
MATMUL_THEN_SUM = textwrap.dedent("""
    graph mm(%a: f32[32,48], %b: f32[48,16]) {
      %m: f32[32,16] = matmul(%a, %b)
      %z: f32[32,16] = constant() {dtype=f32, shape=(32, 16), value=0.0}
      %r: f32[32,16] = maximum(%m, %z)
      %s: f32[32] = reduce_sum(%r) {axes=(1,), keepdims=False}
      return (%s)
    }""")


def _args(g, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n.shape).astype(n.dtype.np_dtype) for n in g.inputs]


def _profile(backend, calls=3):
    g = parse_graph(MATMUL_THEN_SUM)
    args = _args(g)
    ex = executable(g, backend)
    ex.run(args)  # compiled outside the profiled block
    t0 = time.perf_counter_ns()
    with kiln.profiler() as prof:
        outs = [ex.run(args) for _ in range(calls)]
    wall = time.perf_counter_ns() - t0
    return g, args, prof, outs, wall


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_one_row_per_plan_kernel_with_calls_counted(backend):
    g, args, prof, outs, wall = _profile(backend, calls=3)
    plan = plan_fusion(g)
    [p] = prof.programs
    assert p.backend == backend and p.graph == "mm" and p.calls == 3
    assert [k.label for k in sorted(p.kernels, key=lambda k: k.position)] == [kernel_label(k) for k in plan.kernels]
    assert len(p.kernels) == len(plan.kernels) == 2
    assert all(k.calls == 3 for k in p.kernels)
    # the kernels ran inside the calls, and the calls inside the block
    assert 0 < p.kernel_ns <= p.wall_ns <= wall
    # profiled runs compute what unprofiled ones do
    for o in outs:
        np.testing.assert_allclose(o[0], interpret(g, args)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_gflops_of_a_known_matmul(backend):
    _, _, prof, _, _ = _profile(backend, calls=2)
    [p] = prof.programs
    mm = next(k for k in p.kernels if "matmul" in k.label)
    assert mm.label.startswith("k0 matmul[32,16]: matmul")
    assert mm.flops == 2 * 32 * 16 * 48
    assert mm.gflops == pytest.approx(mm.flops * mm.calls / mm.ns)
    if backend == "llvm":  # the kernel's buffer parameters: a, b and the product
        assert mm.bytes == 4 * (32 * 48 + 48 * 16 + 32 * 16)


def test_table_names_every_kernel_and_its_share():
    _, _, prof, _, _ = _profile("llvm")
    text = prof.table()
    lines = text.splitlines()
    assert lines[0] == "kiln profile"
    assert lines[1].startswith("program kiln_mm  graph mm  backend llvm") and "calls 3" in lines[1]
    assert "GFLOP/s" in lines[2] and "GB/s" in lines[2] and "share" in lines[2]
    rows = lines[3:]
    assert len(rows) == 2
    assert any("k0 matmul[32,16]: matmul " in r for r in rows)
    assert any("k1 reduction[32,16]: maximum, reduce_sum " in r for r in rows)
    shares = [float(r.split()[-1].rstrip("%")) for r in rows]
    assert all(0 <= s <= 100 for s in shares) and sum(shares) <= 100.05


def test_nothing_is_recorded_with_profiling_off():
    g = parse_graph(MATMUL_THEN_SUM)
    ex = executable(g, "llvm")
    before = len(prof_mod.process_profile().programs)
    with config.override(profile=False):
        ex.run(_args(g))
    assert len(prof_mod.process_profile().programs) == before
    with kiln.profiler() as prof:
        pass
    assert prof.programs == [] and "no compiled program ran" in prof.table()


def test_compiled_training_step_is_profiled_through_kiln_compile():
    import kiln.nn as nn
    import kiln.nn.functional as F
    kiln.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = kiln.optim.SGD(model.parameters(), lr=0.1)

    @kiln.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x, y = kiln.randn(8, 20), kiln.randint(0, 4, (8,))
    step(x, y)
    with kiln.profiler() as prof:
        for _ in range(4):
            step(x, y)
    [p] = prof.programs
    assert p.graph == "step" and p.calls == 4 and all(k.calls == 4 for k in p.kernels)
    assert sum("matmul" in k.label for k in p.kernels) >= 4  # forward and backward matmuls
    assert p.kernel_ns <= p.wall_ns


def test_threaded_program_is_timed_and_correct():
    n = 1 << 21
    g = parse_graph(f"""graph big(%x: f32[{n}]) {{
      %y: f32[{n}] = mul(%x, %x)
      return (%y)
    }}""")
    x = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    before = kiln.get_num_threads()
    kiln.set_num_threads(2)
    try:
        ex = executable(g, "llvm")
        assert ex.parallel
        with kiln.profiler() as prof:
            [y] = ex.run([x])
    finally:
        kiln.set_num_threads(before)
    np.testing.assert_array_equal(y, x * x)
    [p] = prof.programs
    assert p.threads == 2 and p.kernels[0].calls == 1 and p.kernel_ns <= p.wall_ns


def test_failed_native_check_still_raises_when_profiled():
    f = kiln.compile(lambda x, i: x.gather(1, i))
    x = kiln.randn(3, 5)
    good = kiln.tensor([[0, 4], [1, 1], [2, 3]])
    f(x, good)
    bad = good.clone()
    bad[1, 0] = 5
    with kiln.profiler() as prof:
        with pytest.raises(IndexError, match="gather: index 5"):
            f(x, bad)
        f(x, good)
    [p] = prof.programs
    assert p.calls == 1  # the failed call is not recorded


def test_flop_counts_per_op_kind():
    g = parse_graph("""graph c(%x: f32[2,3,8,8], %w: f32[4,3,3,3]) {
      %y: f32[2,4,6,6] = conv(%x, %w) {strides=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1}
      %e: f32[2,4,6,6] = exp(%y)
      %s: f32[2] = reduce_sum(%e) {axes=(1, 2, 3), keepdims=False}
      %r: f32[2,144] = reshape(%e) {shape=(2, 144)}
      return (%s, %r)
    }""")
    conv, exp, red, reshape = g.nodes
    assert node_flops(conv) == 2 * (2 * 4 * 6 * 6) * (3 * 3 * 3)
    assert node_flops(exp) == 2 * 4 * 6 * 6
    assert node_flops(red) == 2 * 4 * 6 * 6
    assert node_flops(reshape) == 0
    plan = plan_fusion(g)
    assert sum(kernel_flops(k) for k in plan.kernels) >= node_flops(conv) + node_flops(exp) + node_flops(red)
    assert kernel_label(plan.kernels[0]).startswith("k0 conv[2,4,6,6]: conv")


def _run_script(code: str, env_extra: dict, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, KILN_CACHE_DIR=str(tmp_path / "cache"), **env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


SCRIPT = textwrap.dedent("""
    import kiln
    f = kiln.compile(lambda a, b: (a @ b).relu().sum(dim=1))
    a, b = kiln.randn(32, 48), kiln.randn(48, 16)
    for _ in range(5):
        f(a, b)
    print("done")
""")


def test_kiln_profile_prints_the_table_at_exit_and_dumps_it(tmp_path):
    dump = tmp_path / "dump"
    r = _run_script(SCRIPT, {"KILN_PROFILE": "1", "KILN_DUMP": str(dump)}, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "done"
    assert r.stderr.startswith("kiln profile\nprogram kiln_lambda  graph lambda  backend llvm"), r.stderr
    assert "calls 5" in r.stderr and "k0 matmul[32,16]: matmul" in r.stderr
    [profile_file] = sorted(dump.glob("*-profile.txt"))
    assert profile_file.read_text() == r.stderr
    # the profile is the last stage written, after every compile stage
    assert sorted(os.listdir(dump))[-1] == profile_file.name


def test_no_table_without_kiln_profile(tmp_path):
    r = _run_script(SCRIPT, {"KILN_PROFILE": "0"}, tmp_path)
    assert r.returncode == 0 and "kiln profile" not in r.stderr


def test_only_the_timed_build_has_timing_code():
    from kiln.codegen.llvm_render import render_program
    g = parse_graph(MATMUL_THEN_SUM)
    ex = executable(g, "llvm")
    assert "clock_gettime" not in ex.stages("llvm")  # the plain entry point
    k = ex.program.kernels[0]
    calls = [(k.name, list(range(len(k.params))))]
    timed = render_program("p", [k], calls, timestamps=len(k.params), clock=1)
    assert "declare i32 @\"clock_gettime\"" in timed or "declare i32 @clock_gettime" in timed
    assert timed.count("call void @\"p_stamp\"") == 2  # at entry and after the one kernel call
    assert "clock_gettime" not in render_program("p", [k], calls)


def test_nested_profilers_both_collect_and_the_outer_keeps_counting():
    g = parse_graph(MATMUL_THEN_SUM)
    ex = executable(g, "llvm")
    args = _args(g)
    before = config.get().profile
    with kiln.profiler() as outer:
        ex.run(args)
        with kiln.profiler() as inner:
            ex.run(args)
        ex.run(args)
    assert config.get().profile is before  # the setting is restored
    assert [p.calls for p in inner.programs] == [1] and [p.calls for p in outer.programs] == [3]
