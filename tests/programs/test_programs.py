"""The corpus of PyTorch programs (issue 9, item 6): each trains a few steps under PyTorch, kiln eager and kiln
with the whole step compiled, from the same weights and data; the losses agree step by step."""
import numpy as np
import pytest

from . import runner

# program -> {mode: reason}: runs that hit a known kiln bug or limitation (strict xfail, so a fix shows up)
KNOWN_FAILURES: dict[str, dict[str, str]] = {
}


def _cases():
    for name in runner.PROGRAMS:
        for mode in ("kiln", "compiled"):
            reason = KNOWN_FAILURES.get(name, {}).get(mode)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(name, mode, marks=marks, id=f"{name}-{mode}")


@pytest.mark.parametrize("name,mode", list(_cases()))
def test_program_matches_pytorch(name, mode):
    program = runner.load(name)
    expected = runner.run(program, "torch")
    got = runner.run(program, mode)
    np.testing.assert_allclose(got.losses, expected.losses, rtol=getattr(program, "RTOL", 1e-4),
                               atol=getattr(program, "ATOL", 1e-5), err_msg=f"{name} ({mode}) losses per step")
