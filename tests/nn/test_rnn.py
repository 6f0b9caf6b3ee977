"""RNN / LSTM / GRU against PyTorch: parameter names and shapes, outputs, states and gradients."""
import numpy as np
import pytest

import kiln
import kiln.nn as nn
from nn_compare import close, copy_weights

torch = pytest.importorskip("torch")
tnn = torch.nn
rng = np.random.default_rng(1)


def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)


CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2, batch_first=True),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=1, bias=False, batch_first=True, bidirectional=True),
]


def _run_pair(cls, cfg, x, hx, kw=None):
    tmod = getattr(tnn, cls)(4, 5, **cfg, **(kw or {}))
    kmod = getattr(nn, cls)(4, 5, **cfg, **(kw or {}))
    assert [(n, tuple(p.shape)) for n, p in kmod.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in tmod.named_parameters()]
    copy_weights(tmod, kmod)
    tx = torch.tensor(x, requires_grad=True)
    kx = kiln.from_numpy(x).requires_grad_(True)
    if hx is None:
        t_out, k_out = tmod(tx), kmod(kx)
    elif cls == "LSTM":
        t_h = tuple(torch.tensor(h, requires_grad=True) for h in hx)
        k_h = tuple(kiln.from_numpy(h).requires_grad_(True) for h in hx)
        t_out, k_out = tmod(tx, t_h), kmod(kx, k_h)
    else:
        t_h = torch.tensor(hx, requires_grad=True)
        k_h = kiln.from_numpy(hx).requires_grad_(True)
        t_out, k_out = tmod(tx, t_h), kmod(kx, k_h)
    return tmod, kmod, tx, kx, t_out, k_out


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_recurrent_matches_torch(cls, cfg):
    B, T = 3, 6
    x = r(B, T, 4) if cfg.get("batch_first") else r(T, B, 4)
    tmod, kmod, tx, kx, t_out, k_out = _run_pair(cls, cfg, x, None)
    if cls == "LSTM":
        t_seq, (t_h, t_c) = t_out
        k_seq, (k_h, k_c) = k_out
        close(k_c, t_c, what="c_n")
    else:
        (t_seq, t_h), (k_seq, k_h) = t_out, k_out
    close(k_seq, t_seq, what="output")
    close(k_h, t_h, what="h_n")
    ct = r(*t_seq.shape)
    cth = r(*t_h.shape)
    ((t_seq * torch.tensor(ct)).sum() + (t_h * torch.tensor(cth)).sum()).backward()
    ((k_seq * kiln.from_numpy(ct)).sum() + (k_h * kiln.from_numpy(cth)).sum()).backward()
    close(kx.grad, tx.grad, what="input grad")
    kp = dict(kmod.named_parameters())
    for name, p in tmod.named_parameters():
        close(kp[name].grad, p.grad, what=name)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_initial_state_and_its_gradient(cls):
    cfg = dict(num_layers=2, batch_first=True)
    x = r(2, 5, 4)
    hx = (r(2, 2, 5), r(2, 2, 5)) if cls == "LSTM" else r(2, 2, 5)
    tmod, kmod, tx, kx, t_out, k_out = _run_pair(cls, cfg, x, hx)
    t_seq, k_seq = t_out[0], k_out[0]
    close(k_seq, t_seq)
    (t_seq ** 2).sum().backward()
    (k_seq ** 2).sum().backward()
    close(kx.grad, tx.grad)


def test_rnn_relu_and_unbatched():
    tmod, kmod = tnn.RNN(4, 5, nonlinearity="relu"), nn.RNN(4, 5, nonlinearity="relu")
    copy_weights(tmod, kmod)
    x = r(7, 4)  # unbatched (L, H_in)
    h0 = r(1, 5)
    (to, th), (ko, kh) = tmod(torch.tensor(x), torch.tensor(h0)), kmod(kiln.from_numpy(x), kiln.from_numpy(h0))
    assert tuple(ko.shape) == (7, 5) and tuple(kh.shape) == (1, 5)
    close(ko, to)
    close(kh, th)


@pytest.mark.parametrize("cls", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_match_torch(cls):
    tmod, kmod = getattr(tnn, cls)(4, 6), getattr(nn, cls)(4, 6)
    assert list(kmod.state_dict()) == list(tmod.state_dict())
    copy_weights(tmod, kmod)
    x = r(3, 4)
    tx, kx = torch.tensor(x, requires_grad=True), kiln.from_numpy(x).requires_grad_(True)
    t_out, k_out = tmod(tx), kmod(kx)
    t_h = t_out[0] if cls == "LSTMCell" else t_out
    k_h = k_out[0] if cls == "LSTMCell" else k_out
    close(k_h, t_h)
    (t_h ** 2).sum().backward()
    (k_h ** 2).sum().backward()
    close(kx.grad, tx.grad)
    for name, p in tmod.named_parameters():
        close(dict(kmod.named_parameters())[name].grad, p.grad, what=name)


def test_lstm_state_dict_names_and_init():
    kiln.manual_seed(0)
    m = nn.LSTM(10, 256, 2, batch_first=True)
    assert list(m.state_dict()) == list(tnn.LSTM(10, 256, 2, batch_first=True).state_dict())
    bound = 1 / np.sqrt(256)
    w = m.weight_hh_l1.detach().numpy()
    assert w.min() >= -bound and w.max() <= bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound


def test_recurrent_bad_input():
    m = nn.LSTM(4, 5)
    with pytest.raises(RuntimeError, match="input_size. Expected 4, got 3"):
        m(kiln.randn(2, 3, 3))
    with pytest.raises(ValueError, match="2D or 3D"):
        m(kiln.randn(2, 3, 3, 4))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 3, 5\)"):
        m(kiln.randn(2, 3, 4), (kiln.zeros(2, 3, 5), kiln.zeros(1, 3, 5)))


def test_lstm_dropout_between_layers_only_in_training():
    kiln.manual_seed(0)
    m = nn.LSTM(3, 4, 2, dropout=0.5)
    x = kiln.randn(5, 2, 3)
    m.eval()
    a, b = m(x)[0].detach().numpy(), m(x)[0].detach().numpy()
    np.testing.assert_array_equal(a, b)
    m.train()
    c = m(x)[0].detach().numpy()
    assert not np.allclose(a, c)


def test_recurrent_layers_compile():
    kiln.manual_seed(0)
    lstm = nn.LSTM(3, 4, 2, batch_first=True)
    x = kiln.randn(2, 5, 3)
    f = kiln.compile(lambda x: lstm(x)[0].sum())
    c = f(x)
    e = lstm(x)[0].sum()
    np.testing.assert_allclose(c.detach().numpy(), e.detach().numpy(), rtol=1e-5)
    c.backward()
    g = lstm.weight_hh_l1.grad.numpy().copy()
    lstm.zero_grad()
    e.backward()
    np.testing.assert_allclose(g, lstm.weight_hh_l1.grad.numpy(), rtol=1e-5, atol=1e-7)
    model = nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.GRU(4, 4, batch_first=True))
    idx = kiln.tensor([[1, 0, 3], [4, 5, 0]])
    f2 = kiln.compile(lambda i: model(i)[1].sum())
    np.testing.assert_allclose(f2(idx).detach().numpy(), model(idx)[1].sum().detach().numpy(), rtol=1e-5)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_packed_sequences_match_torch(cls, enforce_sorted):
    from torch.nn.utils.rnn import pack_padded_sequence as t_pack, pad_packed_sequence as t_pad
    from kiln.nn.utils.rnn import pack_padded_sequence as k_pack, pad_packed_sequence as k_pad
    lengths = [6, 4, 4, 1] if enforce_sorted else [3, 6, 1, 4]
    cfg = dict(num_layers=2, bidirectional=True, batch_first=True)
    tmod, kmod = getattr(tnn, cls)(4, 5, **cfg), getattr(nn, cls)(4, 5, **cfg)
    copy_weights(tmod, kmod)
    x = r(4, 6, 4)
    h0 = r(4, 4, 5)
    tx, kx = torch.tensor(x, requires_grad=True), kiln.from_numpy(x).requires_grad_(True)
    th, kh = torch.tensor(h0, requires_grad=True), kiln.from_numpy(h0).requires_grad_(True)
    t_hx = (th, th * 0.5) if cls == "LSTM" else th
    k_hx = (kh, kh * 0.5) if cls == "LSTM" else kh
    t_out, t_state = tmod(t_pack(tx, lengths, batch_first=True, enforce_sorted=enforce_sorted), t_hx)
    k_out, k_state = kmod(k_pack(kx, lengths, batch_first=True, enforce_sorted=enforce_sorted), k_hx)
    close(k_out.data, t_out.data, what="packed output")
    assert k_out.batch_sizes.tolist() == t_out.batch_sizes.tolist()
    t_h = t_state[0] if cls == "LSTM" else t_state
    k_h = k_state[0] if cls == "LSTM" else k_state
    close(k_h, t_h, what="h_n")
    if cls == "LSTM":
        close(k_state[1], t_state[1], what="c_n")
    t_pad_out, t_len = t_pad(t_out, batch_first=True)
    k_pad_out, k_len = k_pad(k_out, batch_first=True)
    close(k_pad_out, t_pad_out, what="padded output")
    assert k_len.tolist() == t_len.tolist() == lengths
    ct, cth = r(*t_pad_out.shape), r(*t_h.shape)
    ((t_pad_out * torch.tensor(ct)).sum() + (t_h * torch.tensor(cth)).sum()).backward()
    ((k_pad_out * kiln.from_numpy(ct)).sum() + (k_h * kiln.from_numpy(cth)).sum()).backward()
    close(kx.grad, tx.grad, what="input grad")
    close(kh.grad, th.grad, what="h0 grad")
    kp = dict(kmod.named_parameters())
    for name, p in tmod.named_parameters():
        close(kp[name].grad, p.grad, what=name)


def test_pack_utilities_round_trip():
    from kiln.nn.utils.rnn import pack_sequence, unpack_sequence
    seqs = [kiln.from_numpy(r(n, 2)) for n in (2, 5, 3)]
    packed = pack_sequence(seqs, enforce_sorted=False)
    assert packed.batch_sizes.tolist() == [3, 3, 2, 1, 1]
    for a, b in zip(unpack_sequence(packed), seqs):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        pack_sequence(seqs)


@pytest.mark.parametrize("cfg", [dict(num_layers=2, proj_size=3), dict(num_layers=2, proj_size=2, bidirectional=True,
                                                                        batch_first=True)])
def test_lstm_proj_size_matches_torch(cfg):
    B, T = 3, 5
    x = r(B, T, 4) if cfg.get("batch_first") else r(T, B, 4)
    ndir = 2 if cfg.get("bidirectional") else 1
    hx = (r(2 * ndir, B, cfg["proj_size"]), r(2 * ndir, B, 5))
    tmod, kmod, tx, kx, t_out, k_out = _run_pair("LSTM", cfg, x, hx)
    assert repr(kmod) == repr(tmod)
    (t_seq, (t_h, t_c)), (k_seq, (k_h, k_c)) = t_out, k_out
    close(k_seq, t_seq, what="output")
    close(k_h, t_h, what="h_n")
    close(k_c, t_c, what="c_n")
    ct = r(*t_seq.shape)
    (t_seq * torch.tensor(ct)).sum().backward()
    (k_seq * kiln.from_numpy(ct)).sum().backward()
    close(kx.grad, tx.grad)
    kp = dict(kmod.named_parameters())
    for name, p in tmod.named_parameters():
        close(kp[name].grad, p.grad, what=name)
    with pytest.raises(ValueError, match="only supported for LSTM"):
        nn.RNNBase("GRU", 4, 5, proj_size=2)
