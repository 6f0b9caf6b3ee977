"""Random chains of ops (elementwise, reductions, views, indexing, in-place on clones, matmul)
compared with PyTorch: forward values and gradients (float64)."""
from __future__ import annotations

import numpy as np
import pytest

import kiln


def _setitem_then_scale(m, x):
    y = x * 1
    y[0] = y[0] * 2
    return y


STEPS = [
    lambda m, x: x.exp().clamp(max=10), lambda m, x: m.tanh(x), lambda m, x: x * 2 - 1, lambda m, x: x.relu(),
    lambda m, x: m.sigmoid(x), lambda m, x: x.abs().sqrt(), lambda m, x: x.t() if x.ndim == 2 else x,
    lambda m, x: x.flip(0), lambda m, x: x[..., ::2] if x.shape[-1] > 1 else x, lambda m, x: x.softmax(-1),
    lambda m, x: x.log_softmax(0), lambda m, x: x.unsqueeze(0).squeeze(0), lambda m, x: x.reshape(-1).reshape(x.shape),
    lambda m, x: m.cat([x, x], 0)[: x.shape[0]], lambda m, x: x - x.mean(-1, keepdim=True),
    lambda m, x: x / (x.std() + 1), lambda m, x: m.where(x > 0, x, x * 0.1), lambda m, x: x.clone().mul_(3),
    lambda m, x: x.amax(-1, keepdim=True) + x, lambda m, x: x.logsumexp(-1, keepdim=True) - x,
    lambda m, x: x.max(-1, keepdim=True)[0] * x, lambda m, x: x @ x.transpose(-1, -2) if x.ndim >= 2 else x * x,
    lambda m, x: m.gather(x, -1, m.zeros(x.shape, dtype=m.int64)) + x, lambda m, x: x[x.shape[0] // 2:],
    _setitem_then_scale, lambda m, x: x.cumsum(-1), lambda m, x: m.maximum(x, x.flip(-1)),
    lambda m, x: x.pow(2).sum(-1, keepdim=True).sqrt() + x, lambda m, x: x.expand(2, *x.shape).sum(0),
    lambda m, x: m.stack([x, -x], -1).sum(-1) + x, lambda m, x: x.var(-1, keepdim=True) + x if x.shape[-1] > 1 else x,
    lambda m, x: x.permute(*reversed(range(x.ndim))), lambda m, x: x[[0] * x.shape[0]] + x,
]


@pytest.mark.parametrize("seed", range(60))
def test_random_program_vs_torch(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(1, 4, size=rng.integers(1, 4)))
    a = rng.standard_normal(shape)
    steps = [STEPS[i] for i in rng.integers(0, len(STEPS), size=rng.integers(2, 7))]
    results = []
    for m in (torch, kiln):
        x = m.tensor(a, dtype=m.float64, requires_grad=True)
        y = x
        for step in steps:
            y = step(m, y)
        (y * y).sum().backward()
        results.append((y.detach().numpy().copy(), x.grad.numpy().copy()))
    (ty, tg), (ky, kg) = results
    assert ty.shape == ky.shape
    np.testing.assert_allclose(ky, ty, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(kg, tg, rtol=1e-7, atol=1e-9)
