"""A compiled 2-layer LSTM training step (Adam) with the matmul merges in its graph matches PyTorch
over 10 steps: the weight gradients as one GEMM over all steps x batch, the input projections of
all steps as one GEMM (forward and backward), the bias gradients as a column of ones beside
the weight gradients."""
import numpy as np
import pytest

import kiln

torch = pytest.importorskip("torch")

BATCH, STEPS, INPUT, HIDDEN = 16, 8, 8, 32


def _model(lib):
    class M(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lib.nn.LSTM(INPUT, HIDDEN, 2, batch_first=True)
            self.fc = lib.nn.Linear(HIDDEN, 10)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(out[:, -1, :])
    return M()


def test_merged_lstm_training_step_matches_pytorch_over_10_steps():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    tmodel, kmodel = _model(torch), _model(kiln)
    kmodel.load_state_dict({k: kiln.from_numpy(v.detach().numpy().copy()) for k, v in tmodel.state_dict().items()})
    xs = [rng.normal(size=(BATCH, STEPS, INPUT)).astype(np.float32) for _ in range(3)]
    ys = [rng.integers(0, 10, size=BATCH) for _ in range(3)]
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
    kopt = kiln.optim.Adam(kmodel.parameters(), lr=1e-3)
    tcrit, kcrit = torch.nn.CrossEntropyLoss(), kiln.nn.CrossEntropyLoss()

    expected = []
    for i in range(10):
        topt.zero_grad()
        loss = tcrit(tmodel(torch.from_numpy(xs[i % 3])), torch.from_numpy(ys[i % 3]))
        loss.backward()
        topt.step()
        expected.append(loss.item())

    @kiln.compile
    def step(x, y):
        kopt.zero_grad()
        loss = kcrit(kmodel(x), y)
        loss.backward()
        kopt.step()
        return loss

    got = [step(kiln.from_numpy(xs[i % 3]), kiln.from_numpy(ys[i % 3])).item() for i in range(10)]
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    for (name, kp), (_, tp) in zip(kmodel.state_dict().items(), tmodel.state_dict().items()):
        a, b = kp.numpy(), tp.detach().numpy()
        off = ~np.isclose(a, b, rtol=2e-3, atol=2e-5)  # Adam's sign of a rounding-noise gradient (see e2e)
        assert off.mean() <= 0.01, f"{name}: {off.mean():.2%} of the elements differ"
        np.testing.assert_allclose(a, b, rtol=0, atol=2 * 1e-3 * 10, err_msg=name)

    g = step.graph_for(kiln.from_numpy(xs[0]), kiln.from_numpy(ys[0]))
    rows = STEPS * BATCH
    shapes = [(n.inputs[0].shape, n.inputs[1].shape) for n in g.nodes if n.op == "matmul"]
    # weight and bias gradients: [4H, steps*batch] @ [steps*batch, ...], both weights of a layer
    # and its bias (a column of ones) in one GEMM
    grads = sorted(n.inputs[1].shape for n in g.nodes
                   if n.op == "matmul" and n.inputs[0].op == "permute" and n.inputs[0].shape == (4 * HIDDEN, rows))
    assert grads == [(rows, INPUT + HIDDEN + 1), (rows, 2 * HIDDEN + 1)], shapes
    # the input projections of all steps: layer 0 and layer 1 forward, layer 1's input gradient
    assert ((rows, INPUT), (INPUT, 4 * HIDDEN)) in shapes
    assert ((rows, HIDDEN), (HIDDEN, 4 * HIDDEN)) in shapes
    assert ((rows, 4 * HIDDEN), (4 * HIDDEN, HIDDEN)) in shapes
    # what stays per step is the recurrence: h_{t-1} @ W_hh^T forward, dgates_t @ W_hh backward
    per_step = sum(1 for a, b in shapes if a[0] == BATCH)
    assert per_step <= 2 * 2 * STEPS + 2, shapes
