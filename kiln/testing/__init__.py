"""Testing tools: the differential fuzzer (`kiln.testing.fuzz`, `python -m kiln.testing.fuzz`),
its program generator, shrinker and regression-test writer, the numerics policy
(`kiln.testing.tolerances`) and the reliability report (`python -m kiln.testing.report`).
See docs/reliability.md."""
