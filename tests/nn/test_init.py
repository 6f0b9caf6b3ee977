"""kiln.nn.init and default layer initialisation: formulas match PyTorch, statistics are sane."""
import math

import numpy as np
import pytest

import kiln
import kiln.nn as nn
from kiln.nn import init


def test_calculate_gain_and_fans_match_torch():
    torch = pytest.importorskip("torch")
    for nl, p in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                  ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert init.calculate_gain(nl, p) == pytest.approx(torch.nn.init.calculate_gain(nl, p))
    for shape in [(3, 4), (8, 3, 5, 5), (6, 2, 3)]:
        assert init._calculate_fan_in_and_fan_out(kiln.zeros(*shape)) == \
            torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(*shape))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(kiln.zeros(3))
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")


def _stats(t):
    a = t.detach().numpy().astype(np.float64)
    return a.mean(), a.std(), a.min(), a.max()


def test_init_distributions():
    kiln.manual_seed(0)
    w = kiln.empty(400, 300)
    assert init.uniform_(w, -2, 3) is w
    m, s, lo, hi = _stats(w)
    assert lo >= -2 and hi < 3 and abs(m - 0.5) < 0.02 and abs(s - 5 / math.sqrt(12)) < 0.02
    init.normal_(w, 1.0, 0.5)
    m, s, _, _ = _stats(w)
    assert abs(m - 1) < 0.01 and abs(s - 0.5) < 0.01
    init.constant_(w, 0.3)
    assert np.all(w.numpy() == np.float32(0.3))
    init.ones_(w)
    assert np.all(w.numpy() == 1)
    init.zeros_(w)
    assert np.all(w.numpy() == 0)
    std = math.sqrt(2 / 700)
    init.xavier_uniform_(w, gain=2.0)
    m, s, lo, hi = _stats(w)
    assert abs(s - 2 * std) < 0.02 * 2 * std and hi <= 2 * std * math.sqrt(3) + 1e-6
    init.xavier_normal_(w)
    assert abs(_stats(w)[1] - std) < 0.02 * std
    init.kaiming_uniform_(w, a=0, nonlinearity="relu")
    m, s, lo, hi = _stats(w)
    bound = math.sqrt(2) * math.sqrt(3 / 300)
    assert hi <= bound and lo >= -bound and abs(s - math.sqrt(2 / 300)) < 0.02 * math.sqrt(2 / 300)
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(_stats(w)[1] - math.sqrt(2 / 400)) < 0.02 * math.sqrt(2 / 400)
    init.trunc_normal_(w, mean=0.0, std=1.0, a=-1.0, b=1.5)
    m, s, lo, hi = _stats(w)
    assert lo >= -1.0 and hi <= 1.5 and abs(m - 0.1327) < 0.02  # mean of N(0,1) truncated to [-1, 1.5]
    q = kiln.empty(5, 8)
    init.orthogonal_(q)
    np.testing.assert_allclose(q.numpy() @ q.numpy().T, np.eye(5), atol=1e-5)
    e = kiln.empty(3, 4)
    init.eye_(e)
    np.testing.assert_array_equal(e.numpy(), np.eye(3, 4))
    d = kiln.empty(2, 2, 3, 3)
    init.dirac_(d)
    x = kiln.randn(1, 2, 5, 5)
    np.testing.assert_allclose(nn.functional.conv2d(x, d, padding=1).numpy(), x.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(w, mode="fan_avg")


def test_init_works_on_parameters_without_recording_grad():
    p = nn.Parameter(kiln.empty(3, 3))
    init.normal_(p)
    assert p.is_leaf and p.grad_fn is None and p.requires_grad


def test_default_layer_init_bounds_and_statistics():
    kiln.manual_seed(0)
    lin = nn.Linear(500, 400)
    bound = 1 / math.sqrt(500)  # kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    m, s, lo, hi = _stats(lin.weight)
    bound *= 1 + 1e-6  # float32 rounding of the bound itself
    assert -bound <= lo and hi <= bound and abs(m) < 0.1 * bound and abs(s - bound / math.sqrt(3)) < 0.02 * bound
    m, s, lo, hi = _stats(lin.bias)
    assert -bound <= lo and hi <= bound
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 9) * (1 + 1e-6)
    m, s, lo, hi = _stats(conv.weight)
    assert -bound <= lo and hi <= bound and abs(s - bound / math.sqrt(3)) < 0.05 * bound
    emb = nn.Embedding(1000, 16, padding_idx=0)
    m, s, _, _ = _stats(emb.weight)
    assert abs(s - 1) < 0.03 and np.all(emb.weight.detach().numpy()[0] == 0)
    bn = nn.BatchNorm2d(4)
    assert np.all(bn.weight.detach().numpy() == 1) and np.all(bn.bias.detach().numpy() == 0)
    assert np.all(bn.running_var.numpy() == 1) and np.all(bn.running_mean.numpy() == 0)
    ln = nn.LayerNorm(7)
    assert np.all(ln.weight.detach().numpy() == 1) and np.all(ln.bias.detach().numpy() == 0)
    gru = nn.GRU(8, 64)
    b = 1 / 8 * (1 + 1e-6)
    for p in gru.parameters():
        assert p.detach().numpy().min() >= -b and p.detach().numpy().max() <= b
    mha = nn.MultiheadAttention(16, 4)
    assert np.all(mha.in_proj_bias.detach().numpy() == 0) and np.all(mha.out_proj.bias.detach().numpy() == 0)


def test_seeded_init_is_reproducible():
    kiln.manual_seed(42)
    a = nn.Linear(5, 5).weight.detach().numpy().copy()
    kiln.manual_seed(42)
    b = nn.Linear(5, 5).weight.detach().numpy()
    np.testing.assert_array_equal(a, b)
