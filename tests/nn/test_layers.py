"""Every layer against PyTorch: same weights (via state_dict), forward, input and parameter gradients."""
import numpy as np
import pytest

import kiln
import kiln.nn as nn
from nn_compare import check_module, close, copy_weights, k

torch = pytest.importorskip("torch")
tnn = torch.nn

rng = np.random.default_rng(0)


def r(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# (name, torch factory, kiln factory, input shapes)
CASES = [
    ("linear", lambda m: m.Linear(5, 3), [(4, 5)]),
    ("linear_3d_nobias", lambda m: m.Linear(5, 3, bias=False), [(2, 4, 5)]),
    ("linear_1d_input", lambda m: m.Linear(5, 3), [(5,)]),
    ("bilinear", lambda m: m.Bilinear(3, 4, 2), [(5, 3), (5, 4)]),
    ("conv1d", lambda m: m.Conv1d(3, 4, 3, stride=2, padding=1), [(2, 3, 9)]),
    ("conv1d_same_dilated", lambda m: m.Conv1d(2, 4, 4, padding="same", dilation=2), [(2, 2, 10)]),
    ("conv2d", lambda m: m.Conv2d(3, 6, 3, padding=1), [(2, 3, 7, 6)]),
    ("conv2d_stride_pad_tuple", lambda m: m.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0)), [(2, 3, 8, 7)]),
    ("conv2d_groups_dilation", lambda m: m.Conv2d(4, 6, 3, dilation=2, groups=2, bias=False), [(2, 4, 9, 9)]),
    ("conv2d_depthwise", lambda m: m.Conv2d(4, 8, 3, groups=4, padding=1, stride=2), [(2, 4, 7, 7)]),
    ("conv2d_valid", lambda m: m.Conv2d(2, 3, 2, padding="valid"), [(1, 2, 5, 5)]),
    ("conv2d_same_even", lambda m: m.Conv2d(2, 3, (4, 3), padding="same"), [(2, 2, 6, 5)]),
    ("conv2d_reflect", lambda m: m.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), [(2, 2, 5, 6)]),
    ("conv2d_circular", lambda m: m.Conv2d(2, 3, 3, padding=2, padding_mode="circular"), [(2, 2, 5, 6)]),
    ("conv2d_replicate", lambda m: m.Conv2d(2, 3, 3, padding=1, padding_mode="replicate"), [(2, 2, 5, 6)]),
    ("conv2d_unbatched", lambda m: m.Conv2d(3, 2, 3), [(3, 5, 5)]),
    ("conv3d", lambda m: m.Conv3d(2, 3, 2, stride=(1, 2, 1), padding=1), [(1, 2, 4, 5, 4)]),
    ("conv_transpose2d", lambda m: m.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
     [(2, 3, 5, 4)]),
    ("conv_transpose2d_groups", lambda m: m.ConvTranspose2d(4, 6, (3, 2), stride=(1, 2), groups=2, dilation=2,
                                                            bias=False), [(1, 4, 4, 5)]),
    ("conv_transpose1d", lambda m: m.ConvTranspose1d(2, 3, 4, stride=3, padding=2), [(2, 2, 6)]),
    ("conv_transpose3d", lambda m: m.ConvTranspose3d(2, 2, 2, stride=2), [(1, 2, 2, 3, 2)]),
    ("upsample_nearest", lambda m: m.Upsample(scale_factor=2), [(2, 3, 4, 5)]),
    ("upsample_bilinear", lambda m: m.Upsample(size=(7, 9), mode="bilinear"), [(2, 3, 4, 5)]),
    ("upsample_bilinear_corners", lambda m: m.UpsamplingBilinear2d(scale_factor=3), [(1, 2, 3, 4)]),
    ("upsample_linear", lambda m: m.Upsample(scale_factor=1.5, mode="linear"), [(2, 3, 6)]),
    ("adaptivemax_divisible", lambda m: m.AdaptiveMaxPool2d((2, 3)), [(2, 3, 6, 9)]),
    ("adaptivemax_uneven", lambda m: m.AdaptiveMaxPool2d((3, 4)), [(2, 3, 7, 10)]),
    ("instancenorm2d", lambda m: m.InstanceNorm2d(3, affine=True), [(2, 3, 5, 4)]),
    ("instancenorm1d", lambda m: m.InstanceNorm1d(3), [(2, 3, 7)]),
    ("lppool2d", lambda m: m.LPPool2d(2, 3, stride=2), [(2, 3, 7, 8)]),
    ("lppool1d", lambda m: m.LPPool1d(2, 3, ceil_mode=True), [(2, 3, 8)]),
    ("maxpool2d", lambda m: m.MaxPool2d(2, 2), [(2, 3, 8, 8)]),
    ("maxpool2d_overlap_pad", lambda m: m.MaxPool2d(3, stride=2, padding=1), [(2, 3, 7, 8)]),
    ("maxpool2d_ceil_dil", lambda m: m.MaxPool2d(2, stride=2, dilation=2, ceil_mode=True), [(1, 2, 9, 8)]),
    ("maxpool2d_odd", lambda m: m.MaxPool2d(2), [(2, 2, 7, 5)]),
    ("maxpool1d", lambda m: m.MaxPool1d(3, stride=2, padding=1), [(2, 3, 10)]),
    ("avgpool2d", lambda m: m.AvgPool2d(2), [(2, 3, 8, 8)]),
    ("avgpool2d_pad_ceil", lambda m: m.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), [(2, 2, 8, 7)]),
    ("avgpool2d_no_pad_count", lambda m: m.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
     [(2, 2, 7, 7)]),
    ("avgpool2d_divisor", lambda m: m.AvgPool2d(2, divisor_override=3), [(1, 2, 6, 6)]),
    ("avgpool1d", lambda m: m.AvgPool1d(3, stride=2, padding=1), [(2, 3, 9)]),
    ("adaptiveavg_divisible", lambda m: m.AdaptiveAvgPool2d((2, 3)), [(2, 3, 8, 9)]),
    ("adaptiveavg_uneven", lambda m: m.AdaptiveAvgPool2d((3, 4)), [(2, 3, 7, 10)]),
    ("adaptiveavg_none", lambda m: m.AdaptiveAvgPool2d((None, 1)), [(2, 3, 5, 6)]),
    ("adaptiveavg_1", lambda m: m.AdaptiveAvgPool2d(1), [(2, 3, 5, 6)]),
    ("adaptiveavg1d", lambda m: m.AdaptiveAvgPool1d(4), [(2, 3, 11)]),
    ("layernorm", lambda m: m.LayerNorm(6), [(3, 4, 6)]),
    ("layernorm_2d_shape", lambda m: m.LayerNorm((4, 6), elementwise_affine=True), [(3, 4, 6)]),
    ("layernorm_noaffine", lambda m: m.LayerNorm(6, elementwise_affine=False), [(3, 6)]),
    ("groupnorm", lambda m: m.GroupNorm(2, 6), [(3, 6, 4, 4)]),
    ("rmsnorm", lambda m: m.RMSNorm((3, 4)), [(2, 3, 4)]),
    ("rmsnorm_eps", lambda m: m.RMSNorm(4, eps=1e-3, elementwise_affine=False), [(5, 4)]),
    ("syncbatchnorm", lambda m: m.SyncBatchNorm(3), [(4, 3, 2, 2, 2)]),
    ("adaptivemax3d", lambda m: m.AdaptiveMaxPool3d((2, 3, 2)), [(1, 2, 5, 6, 3)]),
    ("lppool3d", lambda m: m.LPPool3d(2, 2), [(1, 2, 4, 4, 4)]),
    ("local_response_norm", lambda m: m.LocalResponseNorm(3, alpha=0.1, beta=0.6, k=2.0), [(2, 5, 3, 4)]),
    ("local_response_norm_3d", lambda m: m.LocalResponseNorm(4), [(2, 6, 5)]),
    ("zeropad2d", lambda m: m.ZeroPad2d((1, 2, 0, 1)), [(2, 3, 4, 5)]),
    ("constantpad1d", lambda m: m.ConstantPad1d(2, 1.5), [(2, 3, 4)]),
    ("reflectionpad2d", lambda m: m.ReflectionPad2d(2), [(2, 3, 4, 5)]),
    ("replicationpad1d", lambda m: m.ReplicationPad1d((3, 1)), [(2, 3, 4)]),
    ("circularpad2d", lambda m: m.CircularPad2d(1), [(2, 3, 4, 5)]),
    ("cosine_similarity", lambda m: m.CosineSimilarity(dim=1), [(4, 6), (4, 6)]),
    ("pairwise_distance", lambda m: m.PairwiseDistance(p=1.5), [(4, 6), (4, 6)]),
    ("unfold", lambda m: m.Unfold((2, 3), dilation=(1, 2), padding=1, stride=(2, 1)), [(2, 3, 6, 7)]),
    ("fold", lambda m: m.Fold((5, 6), (2, 3), padding=(1, 0), stride=(2, 1)), [(2, 2 * 6, 3 * 4)]),
    ("fold_remainder", lambda m: m.Fold((6, 5), 2, stride=2), [(1, 4 * 3, 3 * 2)]),
    ("pixel_shuffle", lambda m: m.PixelShuffle(2), [(2, 8, 3, 4)]),
    ("pixel_unshuffle", lambda m: m.PixelUnshuffle(2), [(2, 3, 4, 6)]),
    ("channel_shuffle", lambda m: m.ChannelShuffle(3), [(2, 6, 2, 2)]),
    ("hardshrink", lambda m: m.Hardshrink(0.3), [(3, 7)]),
    ("softshrink", lambda m: m.Softshrink(0.3), [(3, 7)]),
    ("softmax2d", lambda m: m.Softmax2d(), [(2, 3, 4, 5)]),
    ("flatten", lambda m: m.Flatten(), [(2, 3, 4, 5)]),
    ("flatten_range", lambda m: m.Flatten(0, 1), [(2, 3, 4)]),
    ("unflatten", lambda m: m.Unflatten(1, (2, 3)), [(4, 6)]),
    ("identity", lambda m: m.Identity(3, foo=1), [(2, 3)]),
    ("relu", lambda m: m.ReLU(), [(3, 7)]),
    ("relu6", lambda m: m.ReLU6(), [(3, 7)]),
    ("leaky_relu", lambda m: m.LeakyReLU(0.2), [(3, 7)]),
    ("elu", lambda m: m.ELU(0.7), [(3, 7)]),
    ("selu", lambda m: m.SELU(), [(3, 7)]),
    ("celu", lambda m: m.CELU(1.3), [(3, 7)]),
    ("gelu", lambda m: m.GELU(), [(3, 7)]),
    ("gelu_tanh", lambda m: m.GELU(approximate="tanh"), [(3, 7)]),
    ("silu", lambda m: m.SiLU(), [(3, 7)]),
    ("mish", lambda m: m.Mish(), [(3, 7)]),
    ("sigmoid", lambda m: m.Sigmoid(), [(3, 7)]),
    ("tanh", lambda m: m.Tanh(), [(3, 7)]),
    ("softplus", lambda m: m.Softplus(beta=2.0, threshold=3.0), [(3, 7)]),
    ("softsign", lambda m: m.Softsign(), [(3, 7)]),
    ("hardtanh", lambda m: m.Hardtanh(-0.5, 0.8), [(3, 7)]),
    ("hardsigmoid", lambda m: m.Hardsigmoid(), [(3, 7)]),
    ("hardswish", lambda m: m.Hardswish(), [(3, 7)]),
    ("logsigmoid", lambda m: m.LogSigmoid(), [(3, 7)]),
    ("tanhshrink", lambda m: m.Tanhshrink(), [(3, 7)]),
    ("threshold", lambda m: m.Threshold(0.1, 20.0), [(3, 7)]),
    ("glu", lambda m: m.GLU(), [(3, 8)]),
    ("softmax", lambda m: m.Softmax(dim=1), [(3, 7)]),
    ("softmax_last", lambda m: m.Softmax(dim=-1), [(2, 3, 7)]),
    ("softmin", lambda m: m.Softmin(dim=0), [(3, 7)]),
    ("log_softmax", lambda m: m.LogSoftmax(dim=1), [(3, 7)]),
    ("prelu", lambda m: m.PReLU(3), [(2, 3, 4)]),
    ("sequential", lambda m: m.Sequential(m.Linear(4, 8), m.ReLU(), m.Linear(8, 3), m.Tanh()), [(5, 4)]),
    ("sequential_inplace_act", lambda m: m.Sequential(m.Conv2d(2, 3, 3, bias=False), m.BatchNorm2d(3),
                                                      m.ReLU(inplace=True), m.Flatten(), m.Linear(27, 4),
                                                      m.LeakyReLU(0.1, inplace=True)),
     [(2, 2, 5, 5)]),
]


@pytest.mark.parametrize("name,factory,shapes", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_torch(name, factory, shapes):
    tmod, kmod = factory(tnn), factory(nn)
    assert repr(kmod) == repr(tmod)
    check_module(torch, tmod, kmod, *(r(*s) for s in shapes))


@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (6, 4)), ("BatchNorm1d", (5, 4, 3)),
                                       ("BatchNorm2d", (4, 3, 5, 5))])
def test_batchnorm_train_then_eval(cls, shape):
    c = shape[1]
    tmod, kmod = getattr(tnn, cls)(c, momentum=0.2), getattr(nn, cls)(c, momentum=0.2)
    with torch.no_grad():
        tmod.weight.uniform_(0.5, 1.5)
        tmod.bias.uniform_(-0.5, 0.5)
    # training mode: batch statistics (forward and gradients), running stats updated
    check_module(torch, tmod, kmod, r(*shape) * 2 + 1)
    for step in range(2):
        x = r(*shape) * 2 + 1
        tmod(torch.tensor(x))
        kmod(kiln.from_numpy(x))
    for key in ("running_mean", "running_var"):
        close(getattr(kmod, key), getattr(tmod, key), what=key)
    assert int(kmod.num_batches_tracked) == int(tmod.num_batches_tracked) == 3
    tmod.eval()
    kmod.eval()
    x = r(*shape)
    t_out, k_out = tmod(torch.tensor(x)), kmod(kiln.from_numpy(x))
    close(k_out, t_out, what="eval forward")
    assert int(kmod.num_batches_tracked) == 3  # eval does not count batches


def test_batchnorm_cumulative_average_and_no_tracking():
    tmod, kmod = tnn.BatchNorm1d(3, momentum=None), nn.BatchNorm1d(3, momentum=None)
    for _ in range(3):
        x = r(8, 3)
        tmod(torch.tensor(x))
        kmod(kiln.from_numpy(x))
    close(kmod.running_mean, tmod.running_mean)
    close(kmod.running_var, tmod.running_var)
    tmod, kmod = tnn.BatchNorm2d(3, affine=False, track_running_stats=False), \
        nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    assert list(kmod.state_dict()) == list(tmod.state_dict()) == []
    tmod.eval()
    kmod.eval()
    check_module(torch, tmod, kmod, r(2, 3, 4, 4))


def test_batchnorm_state_dict_keys():
    t, kk = tnn.BatchNorm2d(4), nn.BatchNorm2d(4)
    assert list(kk.state_dict()) == list(t.state_dict())
    assert kk.num_batches_tracked.dtype == kiln.int64


def test_embedding_matches_torch_with_padding_idx():
    tmod, kmod = tnn.Embedding(10, 4, padding_idx=2), nn.Embedding(10, 4, padding_idx=2)
    assert np.all(kmod.weight.detach().numpy()[2] == 0)
    copy_weights(tmod, kmod)
    with torch.no_grad():
        tmod.weight[2] = 0.5  # a non-zero padding row is still looked up but gets no gradient
    kmod.load_state_dict(tmod.state_dict())
    idx = np.array([[1, 2, 3], [2, 9, 1]], dtype=np.int64)
    t_out, k_out = tmod(torch.tensor(idx)), kmod(kiln.from_numpy(idx))
    close(k_out, t_out)
    ct = r(2, 3, 4)
    (t_out * torch.tensor(ct)).sum().backward()
    (k_out * kiln.from_numpy(ct)).sum().backward()
    close(kmod.weight.grad, tmod.weight.grad)
    assert np.all(kmod.weight.grad.numpy()[2] == 0)


def test_embedding_from_pretrained_and_max_norm():
    w = r(5, 3) * 3
    t = tnn.Embedding.from_pretrained(torch.tensor(w), max_norm=1.0)
    kk = nn.Embedding.from_pretrained(kiln.from_numpy(w), max_norm=1.0)
    assert not kk.weight.requires_grad
    idx = np.array([0, 3, 3], dtype=np.int64)
    close(kk(kiln.from_numpy(idx)), t(torch.tensor(idx)), rtol=1e-5)
    close(kk.weight, t.weight, rtol=1e-5)  # rows looked up were renormalised in place


def test_dropout_train_eval():
    kiln.manual_seed(0)
    d = nn.Dropout(0.3)
    x = kiln.ones(200, 100)
    y = d(x).numpy()
    kept = y != 0
    assert 0.66 < kept.mean() < 0.74
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    d.eval()
    assert np.array_equal(d(x).numpy(), x.numpy())
    d2 = nn.Dropout2d(0.5)
    z = d2(kiln.ones(4, 50, 3, 3)).numpy()
    per_channel = z.reshape(4, 50, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2).all(-1))
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_dropout_gradient_masks():
    kiln.manual_seed(1)
    x = kiln.randn(50, 20, requires_grad=True)
    y = nn.functional.dropout(x, 0.5, training=True)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy() != 0, y.detach().numpy() != 0)


def test_multihead_attention_matches_torch():
    for batch_first in (False, True):
        t = tnn.MultiheadAttention(8, 2, batch_first=batch_first)
        kk = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        assert list(kk.state_dict()) == list(t.state_dict())
        q, kv = (r(3, 5, 8), r(3, 4, 8)) if batch_first else (r(5, 3, 8), r(4, 3, 8))
        mask = np.zeros((3, 4), dtype=bool)
        mask[0, -1] = True
        copy_weights(t, kk)
        to, tw = t(torch.tensor(q), torch.tensor(kv), torch.tensor(kv), key_padding_mask=torch.tensor(mask))
        ko, kw = kk(kiln.from_numpy(q), kiln.from_numpy(kv), kiln.from_numpy(kv),
                    key_padding_mask=kiln.from_numpy(mask))
        close(ko, to)
        close(kw, tw)
        (to ** 2).sum().backward()
        (ko ** 2).sum().backward()
        for name, p in t.named_parameters():
            close(dict(kk.named_parameters())[name].grad, p.grad, what=name)


def test_float64_modules():
    tmod = tnn.Sequential(tnn.Conv2d(2, 3, 3), tnn.ReLU(), tnn.Flatten(), tnn.Linear(3 * 4 * 4, 2)).double()
    kmod = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double()
    assert kmod[0].weight.dtype == kiln.float64
    check_module(torch, tmod, kmod, r(2, 2, 6, 6, dtype=np.float64), rtol=1e-12)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer_encoder_decoder_match_torch(norm_first, batch_first):
    kw = dict(dim_feedforward=16, dropout=0.0, batch_first=batch_first, norm_first=norm_first)
    t_enc = tnn.TransformerEncoder(tnn.TransformerEncoderLayer(8, 2, **kw), 2, norm=tnn.LayerNorm(8),
                                   enable_nested_tensor=False)
    k_enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, **kw), 2, norm=nn.LayerNorm(8))
    t_dec = tnn.TransformerDecoder(tnn.TransformerDecoderLayer(8, 2, activation="gelu", **kw), 2)
    k_dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, activation="gelu", **kw), 2)
    assert list(k_enc.state_dict()) == list(t_enc.state_dict())
    assert list(k_dec.state_dict()) == list(t_dec.state_dict())
    copy_weights(t_enc, k_enc)
    copy_weights(t_dec, k_dec)
    src, tgt = (r(3, 5, 8), r(3, 4, 8)) if batch_first else (r(5, 3, 8), r(4, 3, 8))
    pad = np.zeros((3, 5), dtype=bool)
    pad[1, -2:] = True
    causal = np.triu(np.full((4, 4), -np.inf, dtype=np.float32), 1)
    tsrc, ksrc = torch.tensor(src, requires_grad=True), kiln.from_numpy(src).requires_grad_(True)
    t_mem = t_enc(tsrc, src_key_padding_mask=torch.tensor(pad))
    k_mem = k_enc(ksrc, src_key_padding_mask=kiln.from_numpy(pad))
    close(k_mem, t_mem, what="encoder")
    t_out = t_dec(torch.tensor(tgt), t_mem, tgt_mask=torch.tensor(causal),
                  memory_key_padding_mask=torch.tensor(pad))
    k_out = k_dec(kiln.from_numpy(tgt), k_mem, tgt_mask=kiln.from_numpy(causal),
                  memory_key_padding_mask=kiln.from_numpy(pad))
    close(k_out, t_out, what="decoder")
    ct = r(*t_out.shape)  # a random cotangent (sum of squares of layer-normed outputs is nearly constant)
    (t_out * torch.tensor(ct)).sum().backward()
    (k_out * kiln.from_numpy(ct)).sum().backward()
    close(ksrc.grad, tsrc.grad, what="src grad")
    for tm, km in ((t_enc, k_enc), (t_dec, k_dec)):
        kp = dict(km.named_parameters())
        for name, p in tm.named_parameters():
            close(kp[name].grad, p.grad, what=name)


def test_full_transformer_matches_torch():
    kw = dict(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=16, dropout=0.0,
              batch_first=True)
    t, k = tnn.Transformer(**kw), nn.Transformer(**kw)
    assert list(k.state_dict()) == list(t.state_dict())
    w = k.encoder.layers[0].linear1.weight.detach().numpy()  # xavier-uniform initialised
    assert np.abs(w).max() <= np.sqrt(6 / (8 + 16)) * (1 + 1e-6)
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    np.testing.assert_array_equal(mask.numpy(), tnn.Transformer.generate_square_subsequent_mask(4).numpy())
    check_module(torch, t, k, r(2, 5, 8), r(2, 4, 8))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("layout", ["2d", "offsets", "last_offset", "padding_idx", "weights"])
def test_embedding_bag_matches_torch(mode, layout):
    kw = {"padding_idx": 1} if layout == "padding_idx" else {}
    kw["include_last_offset"] = layout == "last_offset"
    t, k = tnn.EmbeddingBag(10, 3, mode=mode, **kw), nn.EmbeddingBag(10, 3, mode=mode, **kw)
    copy_weights(t, k)
    args_t, args_k = {}, {}
    if layout == "2d":
        idx = rng.integers(0, 10, size=(4, 3))
    else:
        idx = np.array([1, 2, 4, 5, 4, 3, 2, 9, 1], dtype=np.int64)
        offs = np.array([0, 4, 4, 7] + ([9] if layout == "last_offset" else []), dtype=np.int64)  # bag 1 is empty
        args_t["offsets"], args_k["offsets"] = torch.tensor(offs), kiln.from_numpy(offs)
    if layout == "weights":
        w = rng.uniform(0.5, 2, size=idx.shape).astype(np.float32)
        tw, kw_ = torch.tensor(w, requires_grad=True), kiln.from_numpy(w).requires_grad_(True)
        args_t["per_sample_weights"], args_k["per_sample_weights"] = tw, kw_
    if layout == "weights" and mode != "sum":  # PyTorch supports per_sample_weights with mode='sum' only; so does kiln
        for emb, x, args in ((t, torch.tensor(idx), args_t), (k, kiln.from_numpy(idx), args_k)):
            with pytest.raises(NotImplementedError, match="only supported for mode='sum'"):
                emb(x, **args)
        return
    t_out = t(torch.tensor(idx), **args_t)
    k_out = k(kiln.from_numpy(idx), **args_k)
    close(k_out, t_out)
    ct = r(*t_out.shape)
    (t_out * torch.tensor(ct)).sum().backward()
    (k_out * kiln.from_numpy(ct)).sum().backward()
    close(k.weight.grad, t.weight.grad, what="weight grad")
    if layout == "weights":
        close(kw_.grad, tw.grad, what="per_sample_weights grad")


@pytest.mark.parametrize("opts", [dict(kdim=5, vdim=3), dict(add_bias_kv=True), dict(add_zero_attn=True),
                                  dict(kdim=6, vdim=6, add_bias_kv=True, add_zero_attn=True, bias=False)],
                         ids=["kvdim", "bias_kv", "zero_attn", "all"])
def test_multihead_attention_options(opts):
    t, kk = tnn.MultiheadAttention(8, 2, **opts), nn.MultiheadAttention(8, 2, **opts)
    assert list(kk.state_dict()) == list(t.state_dict())
    copy_weights(t, kk)
    kd, vd = opts.get("kdim", 8), opts.get("vdim", 8)
    q, key, val = r(4, 3, 8), r(5, 3, kd), r(5, 3, vd)
    mask = np.zeros((3, 5), dtype=bool)
    mask[2, 0] = True
    amask = r(4, 5)
    ins = [torch.tensor(a, requires_grad=True) for a in (q, key, val)]
    kins = [kiln.from_numpy(a).requires_grad_(True) for a in (q, key, val)]
    to, tw = t(*ins, key_padding_mask=torch.tensor(mask), attn_mask=torch.tensor(amask), average_attn_weights=False)
    ko, kw = kk(*kins, key_padding_mask=kiln.from_numpy(mask), attn_mask=kiln.from_numpy(amask),
                average_attn_weights=False)
    close(ko, to)
    close(kw, tw)
    ct = r(*to.shape)
    (to * torch.tensor(ct)).sum().backward()
    (ko * kiln.from_numpy(ct)).sum().backward()
    for a, b in zip(kins, ins):
        close(a.grad, b.grad, what="input grad")
    kp = dict(kk.named_parameters())
    for name, p in t.named_parameters():
        close(kp[name].grad, p.grad, what=name)


def test_embedding_scale_grad_by_freq():
    t = tnn.Embedding(6, 3, scale_grad_by_freq=True, padding_idx=0)
    k = nn.Embedding(6, 3, scale_grad_by_freq=True, padding_idx=0)
    copy_weights(t, k)
    idx = np.array([[1, 1, 2, 0], [5, 1, 2, 0]], dtype=np.int64)
    t_out, k_out = t(torch.tensor(idx)), k(kiln.from_numpy(idx))
    close(k_out, t_out)
    ct = r(2, 4, 3)
    (t_out * torch.tensor(ct)).sum().backward()
    (k_out * kiln.from_numpy(ct)).sum().backward()
    close(k.weight.grad, t.weight.grad)


def test_embedding_gradient_masking_inside_compile():
    k = nn.Embedding(6, 3, scale_grad_by_freq=True, padding_idx=0)
    idx = kiln.tensor([[1, 1, 2, 0], [5, 1, 2, 0]])
    k(idx).sum().backward()
    eager = k.weight.grad.numpy().copy()
    k.weight.grad = None
    kiln.compile(lambda i: k(i).sum())(idx).backward()
    np.testing.assert_allclose(k.weight.grad.numpy(), eager)


@pytest.mark.parametrize("n", [1, 2])
def test_max_unpool_matches_torch(n):
    tp, kp = getattr(tnn, f"MaxPool{n}d")(2, return_indices=True), getattr(nn, f"MaxPool{n}d")(2, return_indices=True)
    tu, ku = getattr(tnn, f"MaxUnpool{n}d")(2), getattr(nn, f"MaxUnpool{n}d")(2)
    x = r(2, 3, 5) if n == 1 else r(2, 3, 5, 4)
    tv, ti = tp(torch.tensor(x))
    kv, ki = kp(kiln.from_numpy(x))
    tvv = tv.detach().requires_grad_(True)
    kvv = kv.detach().requires_grad_(True)
    out_size = x.shape[2:]
    t_out, k_out = tu(tvv, ti, output_size=out_size), ku(kvv, ki, output_size=out_size)
    close(k_out, t_out)
    ct = r(*t_out.shape)
    (t_out * torch.tensor(ct)).sum().backward()
    (k_out * kiln.from_numpy(ct)).sum().backward()
    close(kvv.grad, tvv.grad)


def test_lazy_linear():
    kiln.manual_seed(0)
    m = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(2))
    out = m(kiln.randn(3, 7))
    assert tuple(out.shape) == (3, 2)
    assert type(m[0]) is nn.Linear and m[0].in_features == 7 and tuple(m[0].weight.shape) == (4, 7)
    assert tuple(m[2].weight.shape) == (2, 4)
    bound = 1 / np.sqrt(7) * (1 + 1e-6)
    assert np.abs(m[0].weight.detach().numpy()).max() <= bound
    t = tnn.Sequential(tnn.Linear(7, 4), tnn.ReLU(), tnn.Linear(4, 2))
    check_module(torch, t, m, r(5, 7))


def test_rrelu_train_and_eval():
    x = r(200, 50)
    k, t = nn.RReLU(), tnn.RReLU()
    k.eval()
    t.eval()
    check_module(torch, t, k, x)
    k.train()
    y = k(kiln.from_numpy(x)).numpy()
    neg = x < 0
    ratio = y[neg] / x[neg]
    assert np.all(ratio >= 1 / 8 - 1e-6) and np.all(ratio <= 1 / 3 + 1e-6) and ratio.std() > 0.02
    np.testing.assert_array_equal(y[~neg], x[~neg])


def test_gumbel_softmax():
    kiln.manual_seed(0)
    logits = kiln.from_numpy(np.log(np.array([[0.7, 0.2, 0.1]], dtype=np.float32))).requires_grad_(True)
    big = logits.expand(4000, 3)
    soft = nn.functional.gumbel_softmax(big, tau=0.5)
    np.testing.assert_allclose(soft.detach().numpy().sum(1), 1.0, rtol=1e-5)
    hard = nn.functional.gumbel_softmax(big, tau=0.5, hard=True)
    h = hard.detach().numpy()
    assert set(np.unique(h)) <= {0.0, 1.0} and np.all(h.sum(1) == 1)
    np.testing.assert_allclose(h.mean(0), [0.7, 0.2, 0.1], atol=0.03)  # samples follow softmax(logits)
    (hard * kiln.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert logits.grad is not None and np.abs(logits.grad.numpy()).sum() > 0  # straight-through gradient


def test_alpha_dropout_keeps_selu_statistics():
    kiln.manual_seed(0)
    x = kiln.randn(400, 500)
    for cls in ("AlphaDropout", "FeatureAlphaDropout"):
        d = getattr(nn, cls)(0.2)
        y = d(x if cls == "AlphaDropout" else x.view(400, 500, 1)).numpy()
        assert abs(y.mean()) < 0.02 and abs(y.std() - 1) < 0.03
        d.eval()
        np.testing.assert_array_equal(d(x).numpy(), x.numpy())


def test_more_losses_and_unpool3d():
    x = r(3, 5)
    tgt = np.array([[3, 0, -1, 1, 1], [1, 2, 4, -1, 0], [0, 1, 2, 3, 4]], dtype=np.int64)
    for red in ("mean", "sum", "none"):
        kx, tx = kiln.from_numpy(x).requires_grad_(True), torch.tensor(x, requires_grad=True)
        ko = nn.MultiLabelMarginLoss(reduction=red)(kx, kiln.from_numpy(tgt))
        to = tnn.MultiLabelMarginLoss(reduction=red)(tx, torch.tensor(tgt))
        close(ko, to)
        ko.sum().backward()
        to.sum().backward()
        close(kx.grad, tx.grad)
    a, p, n = r(4, 6), r(4, 6), r(4, 6)
    dist = lambda u, v: (u - v).abs().sum(-1)  # noqa: E731
    close(nn.TripletMarginWithDistanceLoss(distance_function=dist, swap=True)(*(kiln.from_numpy(v) for v in (a, p, n))),
          tnn.TripletMarginWithDistanceLoss(distance_function=dist, swap=True)(*(torch.tensor(v) for v in (a, p, n))))
    assert nn.NLLLoss2d is nn.NLLLoss
    v = r(1, 2, 4, 4, 4)
    tv, ti = tnn.functional.max_pool3d(torch.tensor(v), 2, return_indices=True)
    kv, ki = nn.functional.max_pool3d(kiln.from_numpy(v), 2, return_indices=True)
    np.testing.assert_array_equal(ki.numpy(), ti.numpy())
    close(nn.MaxUnpool3d(2)(kv, ki), tnn.MaxUnpool3d(2)(tv, ti))


def test_lazy_conv_and_norm_modules_match_torch_after_materialising():
    build = lambda m: m.Sequential(m.LazyConv2d(4, 3, padding=1, bias=False), m.LazyBatchNorm2d(), m.ReLU(),  # noqa
                                   m.LazyConvTranspose2d(2, 2, stride=2, bias=False),
                                   m.LazyInstanceNorm2d(affine=True),
                                   m.Flatten(), m.LazyLinear(5))
    t, k = build(tnn), build(nn)
    x = r(2, 3, 6, 6)
    t(torch.tensor(x))
    k(kiln.from_numpy(x))
    assert [type(v).__name__ for v in k] == [type(v).__name__ for v in t]
    assert {n: tuple(v.shape) for n, v in k.state_dict().items()} == \
        {n: tuple(v.shape) for n, v in t.state_dict().items()}
    check_module(torch, t, k, r(2, 3, 6, 6))


def test_data_parallel_wraps_module():
    t, k = tnn.DataParallel(tnn.Linear(3, 2)), nn.DataParallel(nn.Linear(3, 2))
    assert list(k.state_dict()) == list(t.state_dict()) == ["module.weight", "module.bias"]
    check_module(torch, t, k, r(4, 3))
