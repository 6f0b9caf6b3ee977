"""Small PyTorch programs run unchanged with `kiln` in place of `torch` (only the module differs)
and give the same results: the issue's "a program written for PyTorch needs only its import changed"."""
from __future__ import annotations

import math

import numpy as np
import pytest

import kiln

RNG = np.random.default_rng(1234)
X = RNG.standard_normal((64, 5))
TRUE_W = RNG.standard_normal((5, 3))
LABELS = np.argmax(X @ TRUE_W + 0.1 * RNG.standard_normal((64, 3)), axis=1)
Q, K, V = (RNG.standard_normal((2, 4, 6, 8)) for _ in range(3))


def softmax_regression(torch):
    x = torch.tensor(X, dtype=torch.float64)
    y = torch.tensor(LABELS)
    w = torch.zeros(5, 3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    losses = []
    for step in range(30):
        logits = x @ w + b
        logp = torch.log_softmax(logits, dim=1)
        loss = -logp.gather(1, y.unsqueeze(1)).mean()
        loss.backward()
        with torch.no_grad():
            w -= 0.5 * w.grad
            b.sub_(0.5 * b.grad)
            w.grad.zero_()
            b.grad.zero_()
        losses.append(loss.item())
    acc = (logits.argmax(dim=1) == y).float().mean().item()
    return losses, acc, w.detach().numpy().copy()


def least_squares_with_momentum(torch):
    x = torch.tensor(X, dtype=torch.float64)
    target = x @ torch.tensor(TRUE_W[:, 0], dtype=torch.float64) + 0.5
    w = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    vel = [torch.zeros_like(w), torch.zeros_like(b)]
    for _ in range(25):
        pred = torch.matmul(x, w) + b
        loss = ((pred - target) ** 2).mean() + 1e-3 * (w * w).sum()
        loss.backward()
        with torch.no_grad():
            for p, v in zip((w, b), vel):
                v.mul_(0.9).add_(p.grad, alpha=0.1)
                p.add_(v, alpha=-1.0)
                p.grad = None
    return loss.item(), w.detach().tolist(), b.item()


def causal_attention(torch):
    q = torch.tensor(Q, dtype=torch.float64, requires_grad=True)
    k = torch.tensor(K, dtype=torch.float64, requires_grad=True)
    v = torch.tensor(V, dtype=torch.float64, requires_grad=True)
    t = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(mask, float("-inf"))
    attn = torch.softmax(scores, dim=-1)
    out = attn @ v
    merged = out.permute(0, 2, 1, 3).reshape(out.shape[0], t, -1)
    loss = merged.pow(2).mean() + attn.amax(dim=-1).sum() * 1e-2
    loss.backward()
    return merged.detach().numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()


def data_munging(torch):
    x = torch.tensor(X, dtype=torch.float32)
    y = torch.tensor(LABELS)
    counts = torch.stack([(y == c).sum() for c in range(3)])
    means = torch.stack([x[y == c].mean(0) for c in range(3)])
    top = x.abs().max(dim=1)
    clipped = torch.where(x > 1.0, torch.ones_like(x), x).clamp(min=-1.0)
    centered = x - x.mean(dim=0, keepdim=True)
    normed = centered / (centered.std(dim=0, unbiased=False, keepdim=True) + 1e-5)
    first, rest = torch.split(normed, [10, 54])
    chunks = [c.sum().item() for c in torch.chunk(normed, 4, dim=0)]
    batch = torch.cat([first, rest[:2]], dim=0).view(12, 5).t().contiguous().flatten()
    onehot = torch.zeros(64, 3).scatter_(1, y.unsqueeze(1), 1.0)
    return (counts.tolist(), means.numpy(), top.values.numpy(), top.indices.tolist(), clipped.numpy(),
            normed.numpy(), chunks, batch.numpy(), onehot.sum(0).tolist())


PROGRAMS = [softmax_regression, least_squares_with_momentum, causal_attention, data_munging]


def _compare(a, b, path="result"):
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _compare(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.shape == np.asarray(b).shape and a.dtype == np.asarray(b).dtype, path
        np.testing.assert_allclose(a, b, rtol=1e-5 if a.dtype == np.float32 else 1e-10, atol=1e-6, err_msg=path)
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_program_runs_unchanged_under_kiln(program):
    torch = pytest.importorskip("torch")
    _compare(program(kiln), program(torch))


def test_softmax_regression_learns_without_torch():
    losses, acc, _ = softmax_regression(kiln)
    assert losses[-1] < 0.5 * losses[0] and acc > 0.85
    loss, w, b = least_squares_with_momentum(kiln)
    np.testing.assert_allclose(w, TRUE_W[:, 0], atol=0.3)
    assert abs(b - 0.5) < 0.3
