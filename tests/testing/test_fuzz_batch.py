"""The fixed-seed CI batch of the differential fuzzer: 180 programs, eager vs the reference
interpreter and the llvm backend, values, gradients, in-place updates and retraces. The batch is
bounded by what it covers, not by a count: the coverage test below checks that its programs use
every op of the generator's elementwise, cast and reduction tables, every family, argument dtype
and layout, in-place updates, random ops, guarded module state, empty tensors and aliasing, and
that every variant call runs (larger runs are campaigns: docs/reliability.md)."""
import re

from kiln.testing import generate as gen_mod
from kiln.testing.fuzz import calls_for, fuzz, native_backends

N, SEED = 180, 0  # program 170 is the first .prod(d) of seed 0: the coverage test needs it


def _programs():
    gen = gen_mod.Generator(SEED, "small")
    return [gen.program(SEED * 1_000_003 + i) for i in range(N)]


def _template(code: str) -> str:
    """A reduction's code with its axis arguments put back as the table's placeholders."""
    code = re.sub(r"\.(\w+)\(\((\d+, )*\d+,?\)", r".\1({axes}", code)
    code = re.sub(r"\.(\w+)\(-?\d+", r".\1({d}", code)
    return code.replace(", keepdim=True", "{kd}")


def test_ci_batch_passes_on_reference_and_llvm():
    assert "llvm" in native_backends()
    res = fuzz(N, seed=SEED, backends=["reference", "llvm"], shrink=False)
    assert not res.failures, "\n".join(str(f) for _, f, _, _ in res.failures)
    c = res.counts
    assert c.programs >= N - res.invalid and res.invalid <= 3
    assert c.gradients > N and c.calls >= 2 * 3 * c.programs * 0.9
    assert set(c.variants) == {"shape", "dtype", "layout", "requires_grad", "alias", "training"}


def test_ci_batch_covers_the_generator():
    progs = _programs()
    steps = [s for p in progs for s in p.steps]
    inputs = [s for p in progs for s in p.inputs]
    codes = {s.code for s in steps}
    for table in (gen_mod.UNARY, gen_mod.BINARY, gen_mod.CASTS):
        missing = [row[0] for row in table if row[0] not in codes]
        assert not missing, f"the CI batch never draws {missing}"
    reductions = {_template(c) for c in codes}
    missing = [code for code, *_ in gen_mod.REDUCE if code.replace("{kd}", "") not in
               {r.replace("{kd}", "") for r in reductions}]
    assert not missing, f"the CI batch never draws {missing}"
    assert {s.family for s in steps} == {"exact", "elementwise", "transcendental", "reduction", "matmul", "conv"}
    assert {s.dtype for s in inputs} >= {"float32", "float64", "float16", "int64", "bool"}
    assert {s.layout for s in inputs} >= {"contiguous", "transposed", "strided", "offset", "expanded"}
    assert sum(s.stmt for s in steps) >= 10 and sum("rand" in s.code for s in steps) >= 10
    assert any("flag(" in s.code for s in steps) and any(s.alias is not None for s in inputs)
    assert sum(0 in s.shape for s in inputs) >= 10
    for op in ("F.conv1d", "F.avg_pool1d", "F.max_pool1d", "F.linear", "kiln.bmm", "@", "kiln.cat", "kiln.stack",
               "gather", "index_select", "kiln.arange", "kiln.tril"):
        assert any(op in c for c in codes), f"the CI batch never draws {op}"
    variants = {c.name for p in progs for c in calls_for(p)[2:]}
    assert variants == {"shape", "dtype", "layout", "requires_grad", "alias", "training"}


def test_native_backends_lists_only_backends_that_can_run_here():
    import kiln.cuda
    assert ("cuda" in native_backends()) == kiln.cuda.is_available()
