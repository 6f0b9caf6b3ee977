"""Compile a whole MLP training step and look inside: traced primitives, passes, kernels.

Run: python examples/inspect_training_step.py [dump_dir]
Writes the traced graph, the graph after every pass, the fusion and memory plans and a
summary into dump_dir (default ./kiln_dump), then prints the counts.
"""
import os
import sys
import tempfile

import kiln
import kiln.nn as nn
import kiln.nn.functional as F
import kiln.optim as optim
from kiln.frontend.compile import trace_function
from kiln.passes import default_pipeline


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 128), nn.Linear(128, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def main(dump_dir: str) -> dict:
    kiln.manual_seed(0)
    model = MLP()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    crit = nn.CrossEntropyLoss()

    def train_step(x, y):
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x, y = kiln.randn(64, 784), kiln.randint(0, 10, (64,))
    entry = trace_function(train_step, (x, y), {}, name="train_step", optimize=False)
    report = default_pipeline().run_report(entry.graph, dump_dir=dump_dir, prefix="train_step-")
    counts = {"traced primitives": len(entry.graph.nodes), "after simplification": len(report.graph.nodes),
              "kernels": len(report.fusion.kernels), "peak bytes": report.memory.peak_bytes}
    step = kiln.compile(train_step)
    losses = [step(x, y).item() for _ in range(3)]
    print(f"forward + backward + SGD-momentum update of a 784-128-64-10 MLP, batch 64 (dumps in {dump_dir}):")
    for k, v in counts.items():
        print(f"  {k:>22}: {v}")
    print("  losses over 3 compiled steps:", [round(v, 4) for v in losses])
    return counts


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.gettempdir(), "kiln_dump"))
