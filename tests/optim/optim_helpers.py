"""Shared set-up for optimizer tests: a tiny model of raw tensors, in kiln and in PyTorch."""
from __future__ import annotations

import numpy as np

import kiln

RNG = np.random.default_rng(1234)
W0 = RNG.standard_normal((5, 4)).astype(np.float32)
B0 = RNG.standard_normal((4,)).astype(np.float32)
X = RNG.standard_normal((16, 5)).astype(np.float32)
Y = RNG.standard_normal((16, 4)).astype(np.float32)


def kiln_params():
    w = kiln.tensor(W0.copy(), requires_grad=True)
    b = kiln.tensor(B0.copy(), requires_grad=True)
    return w, b


def kiln_loss(w, b, x=None, y=None):
    x = kiln.tensor(X) if x is None else x
    y = kiln.tensor(Y) if y is None else y
    out = (x @ w + b).tanh()
    return ((out - y) ** 2).mean() + (w * w).sum() * 0.01


def torch_params(torch):
    w = torch.tensor(W0.copy(), requires_grad=True)
    b = torch.tensor(B0.copy(), requires_grad=True)
    return w, b


def torch_loss(torch, w, b):
    out = (torch.tensor(X) @ w + b).tanh()
    return ((out - torch.tensor(Y)) ** 2).mean() + (w * w).sum() * 0.01


def assert_close(a, b, rtol=1e-5, what=""):
    """Within `rtol` relative, plus rtol/10 of the tensor's scale (float32 cancellation near zero)."""
    a = np.asarray(a.detach().numpy() if hasattr(a, "detach") else a, dtype=np.float64)
    b = np.asarray(b.detach().numpy() if hasattr(b, "detach") else b, dtype=np.float64)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 0.1 * max(scale, 1e-3), err_msg=what)
