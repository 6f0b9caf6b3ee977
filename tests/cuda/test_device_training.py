"""The MLP 784-128-64-10 trained 10 steps on device="cuda" (eager: every op a device kernel) gives
PyTorch's CPU losses and weights."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _train(T, nn, F, optim, x, y, weights, device):
    """Written once; run with kiln on the CUDA device or with torch on the CPU."""
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
    model.to(device)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    xb, yb = T.tensor(x).to(device), T.tensor(y).to(device)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses), {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def test_mlp_ten_steps_on_the_device_match_torch(cuda_device):
    import kiln
    import kiln.nn.functional as kF
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 784)).astype(np.float32)
    y = rng.integers(0, 10, 64).astype(np.int64)
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.Linear(128, 64), torch.nn.Linear(64, 10))
    weights = {f"fc{int(k[0]) + 1}.{k.split('.')[1]}": v.detach().numpy().copy() for k, v in seq.state_dict().items()}
    kl, kw = _train(kiln, kiln.nn, kF, kiln.optim, x, y, weights, "cuda")
    tl, tw = _train(torch, torch.nn, torch.nn.functional, torch.optim, x, y, weights, "cpu")
    np.testing.assert_allclose(kl, tl, rtol=1e-5)
    assert kl[-1] < kl[0]
    for k in tw:
        np.testing.assert_allclose(kw[k], tw[k], rtol=1e-4, atol=1e-6, err_msg=k)
