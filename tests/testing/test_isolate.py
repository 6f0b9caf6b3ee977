"""`--isolate`: each program runs in a subprocess, so a native crash is a failure of that program
(shrunk like any other) and the fuzzer goes on."""
from pathlib import Path

from kiln.testing.fuzz import Counts, check_program, fuzz, main
from kiln.testing.generate import Generator
from kiln.testing.isolate import check_isolated
from kiln.testing.program import InputSpec, Program, Step

CRASH = Path(__file__).with_name("crash_on_maximum.py")
MAXIMUM = Program((InputSpec((3,)), InputSpec((3,))), (Step("kiln.maximum({0}, {1})", (0, 1)),
                                                       Step("{0} * 2", (2,), "elementwise")), (3,), seed=4)


def test_a_native_crash_is_a_failure_of_the_program():
    counts = Counts()
    failure = check_isolated(MAXIMUM, ["reference", "llvm"], counts=counts, setup=CRASH)
    assert failure is not None and failure.kind == "crash"
    assert (failure.backend, failure.call) == ("llvm", "first")
    assert "SIGSEGV" in failure.detail
    assert counts.programs == 1


def test_isolated_check_agrees_with_the_in_process_one():
    gen = Generator(3)
    for i in range(3):
        prog = gen.program(i)
        here, there = Counts(), Counts()
        assert check_program(prog, ["reference", "llvm"], counts=here) is None
        assert check_isolated(prog, ["reference", "llvm"], counts=there) is None
        assert (here.programs, here.calls, here.gradients, here.values) == \
               (there.programs, there.calls, there.gradients, there.values)


def test_isolated_fuzzing_shrinks_the_crash_and_goes_on(tmp_path):
    # seed 26's third program computes a maximum (the scalar-rule breakage test uses it too)
    res = fuzz(4, seed=26, backends=["llvm"], isolate=True, setup=CRASH, shrink_limit=20, out_dir=tmp_path)
    assert res.failures, "no program of the batch computed a maximum"
    prog, failure, small, path = res.failures[0]
    assert failure.kind == "crash" and "SIGSEGV" in failure.detail
    assert len(small.steps) <= 3 and any("maximum" in s.code for s in small.steps), small.function_source()
    assert path is not None and path.exists()
    assert res.counts.programs == 4 - res.invalid  # the programs after the crash were checked too


def test_cli_isolate_flag(tmp_path, capsys):
    assert main(["--n", "2", "--seed", "3", "--backend", "llvm", "--isolate", "--out", str(tmp_path)]) == 0
    assert "2 programs on llvm" in capsys.readouterr().out
