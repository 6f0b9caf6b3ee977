"""kiln.nn.functional beyond the layers: pad modes, one_hot, softmax defaults, attention, norms, and errors."""
import math

import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.nn.functional as F
from nn_compare import close

torch = pytest.importorskip("torch")
TF = torch.nn.functional
rng = np.random.default_rng(4)


def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _grad_pair(kfn, tfn, *arrays):
    kin = [kiln.from_numpy(a.copy()).requires_grad_(True) for a in arrays]
    tin = [torch.tensor(a, requires_grad=True) for a in arrays]
    ko, to = kfn(*kin), tfn(*tin)
    close(ko, to, what="forward")
    ct = r(*to.shape)
    (to * torch.tensor(ct)).sum().backward()
    (ko * kiln.from_numpy(ct)).sum().backward()
    for a, b in zip(kin, tin):
        close(a.grad, b.grad, what="grad")


@pytest.mark.parametrize("pad,mode,value", [
    ((1, 2), "constant", None), ((1, 0, 2, 1), "constant", 0.5), ((-1, 2, 0, -1), "constant", 1.0),
    ((1, 2, 2, 1), "reflect", None), ((2, 1, 0, 1), "replicate", None), ((1, 2, 2, 0), "circular", None),
])
def test_pad(pad, mode, value):
    x = r(2, 3, 4, 5)
    kw = {} if value is None else {"value": value}
    _grad_pair(lambda a: F.pad(a, pad, mode=mode, **kw), lambda a: TF.pad(a, pad, mode=mode, **kw), x)


def test_pad_errors():
    with pytest.raises(RuntimeError, match="divisible by 2"):
        F.pad(kiln.zeros(2, 2), (1,))
    with pytest.raises(RuntimeError, match="less than or equal to two times"):
        F.pad(kiln.zeros(2), (1, 1, 1, 1))
    with pytest.raises(RuntimeError, match="less than the corresponding input dimension"):
        F.pad(kiln.zeros(1, 2, 3), (3, 0), mode="reflect")


def test_one_hot():
    t = kiln.tensor([0, 2, 1])
    assert F.one_hot(t).tolist() == TF.one_hot(torch.tensor([0, 2, 1])).tolist()
    oh = F.one_hot(t, 5)
    assert oh.dtype == kiln.int64 and tuple(oh.shape) == (3, 5)
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        F.one_hot(t, 2)


def test_softmax_implicit_dim_and_dtype():
    for shape in [(5,), (3, 4), (2, 3, 4), (2, 3, 4, 2)]:
        x = r(*shape)
        close(F.softmax(kiln.from_numpy(x)), TF.softmax(torch.tensor(x), dim=None))
        close(F.log_softmax(kiln.from_numpy(x), dim=-1), TF.log_softmax(torch.tensor(x), dim=-1))
    x = r(3, 4)
    out = F.softmax(kiln.from_numpy(x), dim=1, dtype=kiln.float64)
    assert out.dtype == kiln.float64


@pytest.mark.parametrize("name", ["relu", "relu6", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus",
                                  "softsign", "hardtanh", "hardsigmoid", "hardswish", "logsigmoid", "tanhshrink",
                                  "sigmoid", "tanh"])
def test_activation_functionals(name):
    x = r(4, 6) * 3
    _grad_pair(getattr(F, name), getattr(TF, name), x)


def test_inplace_activations():
    x = kiln.randn(3, 4)
    ref = np.maximum(x.numpy(), 0)
    assert F.relu_(x) is x
    np.testing.assert_array_equal(x.numpy(), ref)
    y = kiln.randn(3, 4)
    assert F.leaky_relu(y, 0.1, inplace=True) is y
    m = nn.ReLU(inplace=True)
    z = kiln.randn(5)
    assert m(z) is z and (z.numpy() >= 0).all()


def test_normalize_cosine_pairwise():
    a, b = r(4, 5), r(4, 5)
    _grad_pair(lambda x: F.normalize(x, dim=1), lambda x: TF.normalize(x, dim=1), a)
    _grad_pair(lambda x: F.normalize(x, p=1.0, dim=0), lambda x: TF.normalize(x, p=1.0, dim=0), a)
    _grad_pair(F.cosine_similarity, TF.cosine_similarity, a, b)
    _grad_pair(F.pairwise_distance, TF.pairwise_distance, a, b)


def test_glu_threshold_linear_bilinear():
    _grad_pair(lambda x: F.glu(x, 0), lambda x: TF.glu(x, 0), r(6, 3))
    _grad_pair(lambda x: F.threshold(x, 0.2, -1.0), lambda x: TF.threshold(x, 0.2, -1.0), r(6, 3))
    _grad_pair(F.linear, TF.linear, r(2, 3, 4), r(5, 4), r(5))
    _grad_pair(F.bilinear, TF.bilinear, r(3, 2), r(3, 4), r(5, 2, 4), r(5))


@pytest.mark.parametrize("causal", [False, True])
def test_scaled_dot_product_attention(causal):
    q, k, v = r(2, 3, 5, 4), r(2, 3, 6, 4), r(2, 3, 6, 4)
    if causal:
        k, v = r(2, 3, 5, 4), r(2, 3, 5, 4)
    _grad_pair(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal),
               lambda a, b, c: TF.scaled_dot_product_attention(a, b, c, is_causal=causal), q, k, v)
    if not causal:
        mask = rng.uniform(size=(5, 6)) > 0.3
        mask[:, 0] = True
        add = r(5, 6)
        for m_np in (mask, add):
            close(F.scaled_dot_product_attention(*(kiln.from_numpy(a) for a in (q, k, v)),
                                                 attn_mask=kiln.from_numpy(m_np)),
                  TF.scaled_dot_product_attention(*(torch.tensor(a) for a in (q, k, v)),
                                                  attn_mask=torch.tensor(m_np)))


def test_group_and_layer_norm_functional():
    x, w, b = r(2, 6, 3), r(6), r(6)
    _grad_pair(lambda a, c, d: F.group_norm(a, 3, c, d), lambda a, c, d: TF.group_norm(a, 3, c, d), x, w, b)
    _grad_pair(lambda a: F.layer_norm(a, (6, 3)), lambda a: TF.layer_norm(a, (6, 3)), x)


def test_batch_norm_functional_training_updates_running_stats():
    x = r(8, 3, 2)
    krm, krv = kiln.zeros(3), kiln.ones(3)
    trm, trv = torch.zeros(3), torch.ones(3)
    close(F.batch_norm(kiln.from_numpy(x), krm, krv, training=True, momentum=0.3),
          TF.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.3))
    close(krm, trm)
    close(krv, trv)
    close(F.batch_norm(kiln.from_numpy(x), krm, krv), TF.batch_norm(torch.tensor(x), trm, trv))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        F.batch_norm(kiln.zeros(1, 3), kiln.zeros(3), kiln.ones(3), training=True)


def test_embedding_functional_errors():
    w = kiln.randn(4, 2)
    with pytest.raises(IndexError, match="index 4 is out of range for embedding with 4 rows"):
        F.embedding(kiln.tensor([1, 4]), w)
    with pytest.raises(RuntimeError, match="indices"):
        F.embedding(kiln.tensor([1.0]), w)


def test_clip_grad_norm_and_value():
    tm = torch.nn.Linear(4, 3)
    km = nn.Linear(4, 3)
    km.load_state_dict(tm.state_dict())
    x = r(5, 4) * 10
    (tm(torch.tensor(x)) ** 2).sum().backward()
    (km(kiln.from_numpy(x)) ** 2).sum().backward()
    for norm_type in (2.0, math.inf):
        tn = torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0, norm_type=norm_type)
        kn = nn.utils.clip_grad_norm_(km.parameters(), 1.0, norm_type=norm_type)
        close(kn, tn)
        close(km.weight.grad, tm.weight.grad)
    nn.utils.clip_grad_value_(km.parameters(), 0.01)
    assert np.abs(km.weight.grad.numpy()).max() <= 0.01
    vec = nn.utils.parameters_to_vector(km.parameters())
    assert tuple(vec.shape) == (15,)
    nn.utils.vector_to_parameters(vec * 0 + 1, km.parameters())
    assert np.all(km.bias.detach().numpy() == 1)


@pytest.mark.parametrize("kw", [dict(size=(9, 11), mode="bilinear"), dict(scale_factor=2, mode="bilinear",
                                                                          align_corners=True),
                                dict(scale_factor=1.7, mode="nearest"), dict(size=(3, 4), mode="nearest-exact"),
                                dict(size=(10, 3), mode="bilinear"), dict(scale_factor=0.5, mode="bilinear")])
def test_interpolate(kw):
    _grad_pair(lambda a: F.interpolate(a, **kw), lambda a: TF.interpolate(a, **kw), r(2, 3, 7, 5))


def test_interpolate_errors():
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(kiln.zeros(1, 1, 4, 4))
    with pytest.raises(NotImplementedError, match="bilinear mode needs 4D input"):
        F.interpolate(kiln.zeros(1, 1, 4), scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match="align_corners option"):
        F.interpolate(kiln.zeros(1, 1, 4), scale_factor=2, align_corners=True)


def test_conv_transpose_output_size_and_adaptive_max_indices():
    t = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    k = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    k.load_state_dict(t.state_dict())
    x = r(1, 2, 4, 4)
    close(k(kiln.from_numpy(x), output_size=(8, 8)), t(torch.tensor(x), output_size=(8, 8)))
    with pytest.raises(ValueError, match="valid sizes range from 7 to 8"):
        k(kiln.from_numpy(x), output_size=(9, 9))
    x = r(2, 3, 7, 10)
    kv, ki = F.adaptive_max_pool2d(kiln.from_numpy(x), (3, 4), return_indices=True)
    tv, ti = TF.adaptive_max_pool2d(torch.tensor(x), (3, 4), return_indices=True)
    np.testing.assert_array_equal(kv.numpy(), tv.numpy())
    np.testing.assert_array_equal(ki.numpy(), ti.numpy())


def test_instance_norm_running_stats():
    t = torch.nn.InstanceNorm2d(3, track_running_stats=True)
    k = nn.InstanceNorm2d(3, track_running_stats=True)
    assert list(k.state_dict()) == list(t.state_dict())
    x = r(4, 3, 5, 5) * 2 + 1
    close(k(kiln.from_numpy(x)), t(torch.tensor(x)))
    close(k.running_mean, t.running_mean)
    close(k.running_var, t.running_var)
    k.eval()
    t.eval()
    close(k(kiln.from_numpy(x)), t(torch.tensor(x)))


def test_pad_sequence():
    seqs = [r(3, 2), r(5, 2), r(1, 2)]
    for batch_first in (False, True):
        for side in ("right", "left"):
            k = nn.utils.rnn.pad_sequence([kiln.from_numpy(a) for a in seqs], batch_first=batch_first,
                                          padding_value=-1.0, padding_side=side)
            t = torch.nn.utils.rnn.pad_sequence([torch.tensor(a) for a in seqs], batch_first=batch_first,
                                                padding_value=-1.0, padding_side=side)
            np.testing.assert_array_equal(k.numpy(), t.numpy())
    back = nn.utils.rnn.unpad_sequence(nn.utils.rnn.pad_sequence([kiln.from_numpy(a) for a in seqs]),
                                       kiln.tensor([3, 5, 1]))
    for a, b in zip(back, seqs):
        np.testing.assert_array_equal(a.numpy(), b)


def test_interpolate_random_configs_match_torch():
    """Sizes and scale factors at random, including dims whose size does not change (PyTorch copies those
    in most kernels but still applies the scale in 1-d nearest and in nearest-exact)."""
    g = np.random.default_rng(7)
    checked = 0
    for _ in range(150):
        nd = int(g.integers(1, 3))
        size = tuple(int(v) for v in g.integers(1, 9, size=nd))
        x = g.standard_normal((1, 2) + size).astype(np.float32)
        kw = {"mode": str(g.choice(["nearest", "nearest-exact", "linear" if nd == 1 else "bilinear"]))}
        if g.random() < 0.5:
            kw["size"] = tuple(int(v) for v in g.integers(1, 12, size=nd))
        else:
            kw["scale_factor"] = float(g.choice([0.5, 0.7, 1.3, 1.5, 2.0, 3.0]))
        if kw["mode"] in ("linear", "bilinear") and g.random() < 0.5:
            kw["align_corners"] = bool(g.random() < 0.5)
        try:
            ref = TF.interpolate(torch.tensor(x), **kw)
        except (RuntimeError, ValueError) as err:  # PyTorch rejects the configuration: kiln must reject it too
            with pytest.raises(type(err)):
                F.interpolate(kiln.from_numpy(x), **kw)
            continue
        close(F.interpolate(kiln.from_numpy(x), **kw), ref, what=str((size, kw)))
        checked += 1
    assert checked > 100


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("mode,padding_mode", [("bilinear", "zeros"), ("bilinear", "border"),
                                               ("bilinear", "reflection"), ("nearest", "zeros")])
def test_affine_grid_and_grid_sample(align_corners, mode, padding_mode):
    g = np.random.default_rng(3)
    x = g.standard_normal((2, 3, 5, 6)).astype(np.float32)
    theta = (np.tile(np.eye(2, 3), (2, 1, 1)) * 1.3 + 0.3 * g.standard_normal((2, 2, 3))).astype(np.float32)

    def run(lib_f, lib, x_, th):
        grid = lib_f.affine_grid(th, (2, 3, 4, 7), align_corners=align_corners)
        return lib_f.grid_sample(x_, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)

    kx, kt = kiln.from_numpy(x).requires_grad_(True), kiln.from_numpy(theta).requires_grad_(True)
    tx, tt = torch.tensor(x, requires_grad=True), torch.tensor(theta, requires_grad=True)
    ko, to = run(F, kiln, kx, kt), run(TF, torch, tx, tt)
    close(ko, to)
    ct = r(*to.shape)
    (to * torch.tensor(ct)).sum().backward()
    (ko * kiln.from_numpy(ct)).sum().backward()
    close(kx.grad, tx.grad, what="input grad")
    if mode == "nearest":  # piecewise constant in the grid: PyTorch returns zeros, kiln no gradient at all
        assert kt.grad is None and not tt.grad.any()
    else:
        close(kt.grad, tt.grad, rtol=1e-4, what="theta grad")
