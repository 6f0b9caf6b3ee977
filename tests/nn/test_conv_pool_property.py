"""Randomised configurations of conv / transposed conv / pooling against PyTorch (values and gradients)."""
import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from nn_compare import close

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

TF = torch.nn.functional


@st.composite
def conv_cfg(draw):
    nd = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dil = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(nd))
    size = tuple(draw(st.integers(max(1, d * (kk - 1) + 1 - 2 * p), 7)) for kk, d, p in zip(k, dil, pad))
    return nd, groups, cin, cout, k, dil, stride, pad, size, draw(st.integers(1, 2))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(conv_cfg())
def test_conv_random_configs(cfg):
    nd, groups, cin, cout, k, dil, stride, pad, size, n = cfg
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, cin) + size).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups) + k).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    kfn, tfn = (F.conv1d, TF.conv1d) if nd == 1 else (F.conv2d, TF.conv2d)
    kin = [kiln.from_numpy(a).requires_grad_(True) for a in (x, w, b)]
    tin = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    ko = kfn(*kin, stride=stride, padding=pad, dilation=dil, groups=groups)
    to = tfn(*tin, stride=stride, padding=pad, dilation=dil, groups=groups)
    close(ko, to, 1e-5, "forward")
    ct = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    (to * torch.tensor(ct)).sum().backward()
    (ko * kiln.from_numpy(ct)).sum().backward()
    for a, b_, name in zip(kin, tin, ("x", "w", "b")):
        close(a.grad, b_.grad, 1e-5, f"grad {name}")
    # the transposed convolution with the same parameters maps an output-shaped tensor back to cin channels
    wt = rng.standard_normal((cout, cin // groups) + k).astype(np.float32)
    y = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    ktfn, ttfn = (F.conv_transpose1d, TF.conv_transpose1d) if nd == 1 else (F.conv_transpose2d, TF.conv_transpose2d)
    kw = dict(stride=stride, padding=pad, dilation=dil, groups=groups)
    try:
        tref = ttfn(torch.tensor(y), torch.tensor(wt), **kw)
    except RuntimeError:  # PyTorch rejects the configuration (an output size below 1): kiln must reject it too
        with pytest.raises(RuntimeError):
            ktfn(kiln.from_numpy(y), kiln.from_numpy(wt), **kw)
        return
    close(ktfn(kiln.from_numpy(y), kiln.from_numpy(wt), **kw), tref, 1e-5, "conv_transpose")


@pytest.mark.parametrize("size,k,pad", [((1,), (2,), (1,)), ((3, 2), (1, 1), (0, 2))])
def test_conv_transpose_with_an_empty_output_is_rejected_as_pytorch_does(size, k, pad):
    """(L - 1) * stride - 2 * padding + (k - 1) + 1 is 0 in the last dim: PyTorch raises, so must kiln."""
    nd = len(size)
    x = np.ones((1, 1) + size, np.float32)
    w = np.ones((1, 1) + k, np.float32)
    stride = (3,) * nd
    ktfn, ttfn = (F.conv_transpose1d, TF.conv_transpose1d) if nd == 1 else (F.conv_transpose2d, TF.conv_transpose2d)
    with pytest.raises(RuntimeError):
        ttfn(torch.tensor(x), torch.tensor(w), stride=stride, padding=pad)
    with pytest.raises(RuntimeError, match="too small"):
        ktfn(kiln.from_numpy(x), kiln.from_numpy(w), stride=stride, padding=pad)


@st.composite
def pool_cfg(draw):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = tuple(draw(st.integers(0, kk // 2)) for kk in k)
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    size = tuple(draw(st.integers(d * (kk - 1) + 1, 8)) for kk, d in zip(k, dil))
    return k, stride, pad, dil, size, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=30, deadline=None, derandomize=True)
@given(pool_cfg())
def test_pool_random_configs(cfg):
    k, stride, pad, dil, size, ceil, count_pad = cfg
    rng = np.random.default_rng(1)
    x = rng.permutation(np.arange(2 * 2 * size[0] * size[1], dtype=np.float32)).reshape((2, 2) + size) / 7
    kx, tx = kiln.from_numpy(x).requires_grad_(True), torch.tensor(x, requires_grad=True)
    ko = F.max_pool2d(kx, k, stride, pad, dil, ceil_mode=ceil)
    to = TF.max_pool2d(tx, k, stride, pad, dil, ceil_mode=ceil)
    close(ko, to, 1e-6, "max_pool2d")
    ct = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    (to * torch.tensor(ct)).sum().backward()
    (ko * kiln.from_numpy(ct)).sum().backward()
    close(kx.grad, tx.grad, 1e-6, "max_pool2d grad")
    ka = F.avg_pool2d(kiln.from_numpy(x), k, stride, pad, ceil_mode=ceil, count_include_pad=count_pad)
    ta = TF.avg_pool2d(torch.tensor(x), k, stride, pad, ceil_mode=ceil, count_include_pad=count_pad)
    close(ka, ta, 1e-5, "avg_pool2d")
