"""`--start`: a campaign run in chunks checks the same programs as one run."""
from kiln.testing import fuzz as fuzz_mod
from kiln.testing.program import render


def _checked(monkeypatch, n, start):
    seen = []

    def record(prog, backends, counts=None):
        seen.append(render(prog))
        return None
    monkeypatch.setattr(fuzz_mod, "check_program", record)
    fuzz_mod.fuzz(n, seed=3, backends=["reference"], start=start)
    return seen


def test_chunks_check_the_programs_of_one_run(monkeypatch):
    whole = _checked(monkeypatch, 5, 0)
    assert len(set(whole)) == 5
    assert _checked(monkeypatch, 2, 0) + _checked(monkeypatch, 3, 2) == whole


def test_start_is_a_command_line_option(monkeypatch):
    calls = {}
    monkeypatch.setattr(fuzz_mod, "fuzz", lambda n, seed, profile, backends, **kw: calls.update(kw, n=n) or
                        fuzz_mod.FuzzResult(fuzz_mod.Counts(), [], 0, 0.0, ["reference"]))
    assert fuzz_mod.main(["--n", "4", "--start", "7", "--backend", "reference"]) == 0
    assert calls["start"] == 7 and calls["n"] == 4
