"""kiln's benchmark suite: `python -m benchmarks` times each workload under kiln and the alternatives."""
