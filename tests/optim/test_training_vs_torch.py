"""The issue's MLP program — nn.Module, CrossEntropyLoss, SGD momentum, a DataLoader — gives PyTorch's losses."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _program(T, nn, F, optim, data, weights, opt_name):
    """Written once; run with kiln or with torch as the framework."""
    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 128)
            self.fc2 = nn.Linear(128, 64)
            self.fc3 = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    model = MLP()
    model.load_state_dict({k: T.tensor(v) for k, v in weights.items()})
    x, y = T.tensor(data[0]), T.tensor(data[1])
    loader = data[2](T.utils.data.TensorDataset(x, y), batch_size=32)
    criterion = nn.CrossEntropyLoss()
    if opt_name == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        opt = optim.Adam(model.parameters(), lr=0.001)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    losses = []
    for epoch in range(2):
        for xb, yb in loader:
            opt.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
    correct = 0
    with T.no_grad():
        outputs = model(x)
        _, predicted = T.max(outputs.data, 1)
        correct = (predicted == y).sum().item()
    return np.array(losses), correct


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_mlp_through_dataloader_matches_torch(opt_name):
    import kiln
    import kiln.nn.functional as kF
    import kiln.optim as koptim
    import kiln.utils.data
    import torch.nn.functional as tF
    import torch.utils.data
    rng = np.random.default_rng(0)
    data_np = (rng.standard_normal((96, 784)).astype(np.float32), rng.integers(0, 10, 96).astype(np.int64))
    torch.manual_seed(0)
    tmodel_weights = {k: v.detach().numpy().copy() for k, v in torch.nn.Sequential(
        torch.nn.Linear(784, 128), torch.nn.Linear(128, 64), torch.nn.Linear(64, 10)).state_dict().items()}
    weights = {f"fc{int(k[0]) + 1}.{k.split('.')[1]}": v for k, v in tmodel_weights.items()}
    kl, kc = _program(kiln, kiln.nn, kF, koptim, data_np + (kiln.utils.data.DataLoader,), weights, opt_name)
    tl, tc = _program(torch, torch.nn, tF, torch.optim, data_np + (torch.utils.data.DataLoader,), weights, opt_name)
    assert len(kl) == 6
    np.testing.assert_allclose(kl, tl, rtol=1e-4)
    assert kc == tc
