"""Print the corpus table for docs/compatibility.md: ``python -m tests.programs.table`` from the repository root.

ms/step is the mean over the steps after the first (the first compiled call traces and compiles)."""
from __future__ import annotations

import numpy as np

from . import runner


def _ms(r: runner.Run) -> str:
    return f"{1e3 * float(np.mean(r.step_seconds[1:])):.1f}"


def main(steps: int = 5) -> None:
    print("| program | torch ms/step | kiln eager | kiln compiled | max rel. loss diff (eager / compiled) |")
    print("|---|---|---|---|---|")
    for name in runner.PROGRAMS:
        program = runner.load(name)
        ref, eager = runner.run(program, "torch", steps=steps), runner.run(program, "kiln", steps=steps)
        try:
            comp = runner.run(program, "compiled", steps=steps)
            comp_ms, comp_diff = _ms(comp), f"{runner.max_difference(ref, comp):.1e}"
        except RuntimeError as e:
            comp_ms, comp_diff = "n/a", f"raises: {str(e).split(':')[0]}"
        print(f"| {name} | {_ms(ref)} | {_ms(eager)} | {comp_ms} | {runner.max_difference(ref, eager):.1e} / {comp_diff} |")


if __name__ == "__main__":
    main()
