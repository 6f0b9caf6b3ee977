"""The fixed-seed CI batch of the differential fuzzer: 300 programs, eager vs the reference
interpreter and the llvm backend, values, gradients, in-place updates and retraces."""
from kiln.testing.fuzz import fuzz, native_backends


def test_ci_batch_passes_on_reference_and_llvm():
    assert "llvm" in native_backends()
    res = fuzz(300, seed=0, backends=["reference", "llvm"], shrink=False)
    assert not res.failures, "\n".join(str(f) for _, f, _, _ in res.failures)
    c = res.counts
    assert c.programs >= 300 - res.invalid and res.invalid <= 5
    assert c.gradients > 300 and c.calls >= 2 * 3 * c.programs * 0.9
    assert set(c.variants) == {"shape", "dtype", "layout", "requires_grad", "alias", "training"}


def test_native_backends_lists_only_backends_that_can_run_here():
    import kiln.cuda
    assert ("cuda" in native_backends()) == kiln.cuda.is_available()
