"""Module machinery: registration, iteration, state dicts (PyTorch key names and errors), modes, dtype, hooks."""
import copy
from collections import OrderedDict

import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.nn.functional as F
import kiln.optim as optim


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc1 = nn.Linear(8, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 3)})
        self.lstm = nn.LSTM(4, 3)
        self.scale = nn.Parameter(kiln.ones(1))
        self.register_buffer("step", kiln.zeros(1))
        self.register_buffer("scratch", kiln.zeros(2), persistent=False)

    def forward(self, x):
        return x


def test_parameter_basics():
    t = kiln.randn(2, 3)
    p = nn.Parameter(t)
    assert isinstance(p, kiln.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert str(p).startswith("Parameter containing:")
    with kiln.no_grad():
        p.mul_(2)
    np.testing.assert_array_equal(t.numpy(), p.detach().numpy())  # shares the value
    q = nn.Parameter(kiln.randn(2), requires_grad=False)
    assert not q.requires_grad
    assert tuple(nn.Parameter().shape) == (0,)
    y = (p * 3).sum()
    y.backward()
    assert not isinstance(p * 3, nn.Parameter)
    np.testing.assert_array_equal(p.grad.numpy(), np.full((2, 3), 3.0, np.float32))


def test_registration_and_iteration_order_matches_torch():
    torch = pytest.importorskip("torch")

    class TNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 2, 3)
            self.bn = torch.nn.BatchNorm2d(2)
            self.fc1 = torch.nn.Linear(8, 4)
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)])
            self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 2), "b": torch.nn.Linear(4, 3)})
            self.lstm = torch.nn.LSTM(4, 3)
            self.scale = torch.nn.Parameter(torch.ones(1))
            self.register_buffer("step", torch.zeros(1))
            self.register_buffer("scratch", torch.zeros(2), persistent=False)

    k, t = Net(), TNet()
    assert [n for n, _ in k.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in k.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in k.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in k.named_children()] == [n for n, _ in t.named_children()]
    assert list(k.state_dict()) == list(t.state_dict())
    assert len(list(k.parameters())) == len(list(t.parameters()))
    assert len(list(k.modules())) == len(list(t.modules()))
    # torch's state dict loads into kiln and back
    k.load_state_dict(t.state_dict())
    for name, v in k.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), t.state_dict()[name].numpy())
    t.load_state_dict({n: torch.tensor(v.numpy()) for n, v in k.state_dict().items()})


def test_state_dict_values_share_memory_and_are_detached():
    m = nn.Linear(3, 2)
    sd = m.state_dict()
    assert not sd["weight"].requires_grad
    with kiln.no_grad():
        m.weight.fill_(1.5)
    assert np.all(sd["weight"].numpy() == 1.5)
    assert m.state_dict(keep_vars=True)["weight"] is m.weight


def test_load_state_dict_round_trip_keeps_parameter_objects():
    a, b = Net(), Net()
    ids = [id(p) for p in b.parameters()]
    res = b.load_state_dict(a.state_dict())
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert repr(res) == "<All keys matched successfully>"
    assert [id(p) for p in b.parameters()] == ids
    for (n, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())


def test_load_state_dict_errors_like_torch():
    m = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    sd = m.state_dict()
    bad = OrderedDict(sd)
    del bad["0.bias"]
    bad["extra.weight"] = kiln.zeros(1)
    bad["2.weight"] = kiln.zeros(5, 5)
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict(bad)
    msg = str(e.value)
    assert msg.startswith("Error(s) in loading state_dict for Sequential:")
    assert 'Missing key(s) in state_dict: "0.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight".' in msg
    assert ("size mismatch for 2.weight: copying a param with shape torch.Size([5, 5]) from checkpoint, the shape "
            "in current model is torch.Size([1, 2]).") in msg
    del bad["2.weight"]
    res = m.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["0.bias", "2.weight"] and res.unexpected_keys == ["extra.weight"]
    with pytest.raises(TypeError, match="dict-like"):
        m.load_state_dict([1, 2])


def test_non_persistent_buffer_not_in_state_dict():
    m = Net()
    assert "scratch" not in m.state_dict()
    assert "scratch" in dict(m.named_buffers())


def test_train_eval_propagate():
    m = Net()
    assert m.training and m.blocks[0].training
    assert m.eval() is m
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    with pytest.raises(ValueError):
        m.train("yes")


def test_zero_grad_and_requires_grad_():
    m = nn.Linear(3, 2)
    m(kiln.randn(4, 3)).sum().backward()
    assert m.weight.grad is not None
    m.zero_grad(set_to_none=False)
    assert np.all(m.weight.grad.numpy() == 0)
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_to_double_keeps_parameter_identity():
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    w = m[0].weight
    before = w.detach().numpy().copy()
    assert m.double() is m
    assert m[0].weight is w and w.dtype == kiln.float64
    assert m[1].running_mean.dtype == kiln.float64
    assert m[1].num_batches_tracked.dtype == kiln.int64  # integer buffers keep their dtype
    np.testing.assert_allclose(w.detach().numpy(), before)
    out = m(kiln.randn(4, 3, dtype=kiln.float64))
    assert out.dtype == kiln.float64
    m.to(kiln.float32)
    assert w.dtype == kiln.float32
    m.to("cpu")
    m.to(device="cpu", dtype=kiln.float32)
    with pytest.raises(TypeError, match="floating point"):
        m.to(kiln.int64)
    with pytest.raises(RuntimeError, match="not available"):
        m.to("cuda")


def test_apply_and_custom_init():
    m = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.Linear(3, 3)))
    seen = []

    def init_fn(mod):
        seen.append(type(mod).__name__)
        if isinstance(mod, nn.Linear):
            nn.init.constant_(mod.weight, 0.5)
            nn.init.zeros_(mod.bias)

    assert m.apply(init_fn) is m
    assert seen == ["Linear", "Linear", "Sequential", "Sequential"]
    assert np.all(m[1][0].weight.detach().numpy() == 0.5)


def test_forward_hooks():
    m = nn.Linear(2, 2)
    calls = []
    h = m.register_forward_hook(lambda mod, args, out: calls.append(tuple(out.shape)))
    pre = m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    out = m(kiln.ones(3, 2))
    np.testing.assert_allclose(out.detach().numpy(), np.broadcast_to(m.bias.detach().numpy(), (3, 2)))
    assert calls == [(3, 2)]
    h.remove()
    pre.remove()
    m(kiln.ones(3, 2))
    assert calls == [(3, 2)]
    m.register_forward_hook(lambda mod, args, out: out * 0)
    assert np.all(m(kiln.ones(1, 2)).detach().numpy() == 0)


def test_setattr_rules():
    m = nn.Module()
    m.w = nn.Parameter(kiln.zeros(2))
    assert "w" in m._parameters
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'w'"):
        m.w = kiln.zeros(2)
    m.w = None
    assert m.w is None and list(m.parameters()) == []
    m.register_buffer("b", kiln.zeros(1))
    m.b = kiln.ones(1)
    assert m.state_dict()["b"].item() == 1
    with pytest.raises(TypeError, match="buffer"):
        m.b = 3
    with pytest.raises(KeyError, match="attribute 'b' already exists"):
        m.register_parameter("b", None)
    with pytest.raises(KeyError, match="contain"):
        m.register_buffer("a.b", kiln.zeros(1))
    m.child = nn.Linear(1, 1)
    del m.child
    assert "child" not in m._modules
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        m.nope

    class NoInit(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(kiln.zeros(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        NoInit()


def test_shared_parameters_counted_once():
    lin = nn.Linear(2, 2)
    m = nn.Sequential(lin, lin)
    assert len(list(m.parameters())) == 2
    assert list(m.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_containers():
    s = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(s) == 3 and isinstance(s[-1], nn.Linear)
    assert isinstance(s[:2], nn.Sequential) and len(s[:2]) == 2
    s.append(nn.Sigmoid())
    assert list(s._modules) == ["0", "1", "2", "3"]
    del s[1]
    assert list(s._modules) == ["0", "1", "2"]
    od = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert list(od.state_dict()) == ["fc.weight", "fc.bias"]
    assert od.fc is od[0]
    ml = nn.ModuleList([nn.Linear(1, 1)])
    ml.append(nn.Linear(1, 1))
    ml.extend([nn.ReLU()])
    ml += [nn.Tanh()]
    assert len(ml) == 4 and [type(x).__name__ for x in ml] == ["Linear", "Linear", "ReLU", "Tanh"]
    with pytest.raises(IndexError, match="out of range"):
        ml[10]
    md = nn.ModuleDict({"x": nn.Linear(1, 2)})
    md["y"] = nn.ReLU()
    assert list(md.keys()) == ["x", "y"] and "x" in md and len(md) == 2
    assert md.pop("y").__class__ is nn.ReLU
    pl = nn.ParameterList([nn.Parameter(kiln.zeros(1)), kiln.ones(2)])
    assert isinstance(pl[1], nn.Parameter) and len(list(pl.parameters())) == 2
    pd = nn.ParameterDict({"a": kiln.ones(1)})
    assert list(pd.state_dict()) == ["a"]
    with pytest.raises(NotImplementedError):
        ml(kiln.ones(1))


def test_repr_like_torch():
    torch = pytest.importorskip("torch")
    build = lambda m: m.Sequential(m.Conv2d(3, 8, 3, padding=1), m.BatchNorm2d(8), m.ReLU(), m.MaxPool2d(2),  # noqa
                                   m.Flatten(), m.Linear(8, 2), m.Dropout(0.1), m.LSTM(2, 4, 2, batch_first=True))
    assert repr(build(nn)) == repr(build(torch.nn))


def test_deepcopy_is_independent():
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    c = copy.deepcopy(m)
    assert isinstance(c[0].weight, nn.Parameter) and c[0].weight is not m[0].weight
    with kiln.no_grad():
        c[0].weight.fill_(7.0)
    assert not np.any(m[0].weight.detach().numpy() == 7.0)
    assert list(c.state_dict()) == list(m.state_dict())


def test_functional_module_in_compiled_training_step():
    kiln.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.0), nn.Linear(8, 3))
    x, y = kiln.randn(5, 4), kiln.tensor([0, 1, 2, 1, 0])

    def loss_fn(x, y):
        return F.cross_entropy(model(x), y)

    eager = loss_fn(x, y)
    eager.backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    compiled = kiln.compile(loss_fn)
    c = compiled(x, y)
    np.testing.assert_allclose(c.detach().numpy(), eager.detach().numpy(), rtol=1e-5)
    c.backward()
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-5, atol=1e-7)


def test_compiled_module_retraces_on_train_eval():
    kiln.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    f = kiln.compile(lambda x: model(x))
    x = kiln.ones(8, 4)
    model.eval()
    np.testing.assert_allclose(f(x).detach().numpy(), model(x).detach().numpy(), rtol=1e-6)
    model.train()
    out = f(x).detach().numpy()
    assert (out == 0).any()  # dropout is active after switching back to train mode


def test_save_load_state_dict_restores_identical_outputs(tmp_path):
    kiln.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    model(kiln.randn(4, 1, 8, 8))  # update BatchNorm's running stats
    model.eval()
    x = kiln.randn(2, 1, 8, 8)
    expected = model(x).detach().numpy()
    path = tmp_path / "model.safetensors"
    kiln.save(model.state_dict(), path)
    kiln.manual_seed(1)
    fresh = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()
    assert not np.array_equal(fresh(x).detach().numpy(), expected)
    fresh.load_state_dict(kiln.load(path))
    np.testing.assert_array_equal(fresh(x).detach().numpy(), expected)
    assert int(fresh[1].num_batches_tracked) == 1
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError):
        fresh.load_state_dict(kiln.load(path))


def test_compiled_cnn_training_step_matches_eager():

    def build():
        kiln.manual_seed(3)
        return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(4 * 3 * 3, 5))

    x, y = kiln.randn(8, 2, 6, 6), kiln.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    losses = {}
    for mode in ("eager", "compiled"):
        model = build()
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        fn = kiln.compile(step) if mode == "compiled" else step
        losses[mode] = [float(fn(x, y).detach()) for _ in range(4)]
    np.testing.assert_allclose(losses["compiled"], losses["eager"], rtol=1e-5)
    assert losses["eager"][-1] < losses["eager"][0]


@pytest.mark.parametrize("momentum", [0.1, None])
def test_compiled_batchnorm_updates_running_stats_like_eager(momentum):
    def build():
        kiln.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=momentum))

    xs = [kiln.randn(6, 3) for _ in range(3)]
    eager, comp = build(), build()
    f = kiln.compile(lambda x: comp(x).sum())
    for x in xs:
        e = eager(x).sum()
        c = f(x)  # the sum of a batch-normalised output is ~0: rounding noise, float32 sums in another order
        np.testing.assert_allclose(c.detach().numpy(), e.detach().numpy(), rtol=1e-5, atol=1e-5)
    for key in ("running_mean", "running_var"):
        np.testing.assert_allclose(getattr(comp[1], key).numpy(), getattr(eager[1], key).numpy(), rtol=1e-5,
                                   atol=1e-5)  # a running mean near 0: float32 sums in another order
    assert int(comp[1].num_batches_tracked) == 3


def test_batchnorm_loads_checkpoint_without_num_batches_tracked():
    bn = nn.BatchNorm1d(3)
    with kiln.no_grad():
        bn.num_batches_tracked.fill_(5)
    sd = {k: v for k, v in nn.BatchNorm1d(3).state_dict().items() if k != "num_batches_tracked"}
    bn.load_state_dict(sd)
    assert int(bn.num_batches_tracked) == 0
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert model.load_state_dict(sd).missing_keys == []


def test_module_compile_in_place():
    kiln.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    x = kiln.randn(2, 1, 6, 6)
    eager = model(x)
    eager.sum().backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    assert model.compile() is None
    out = model(x)
    np.testing.assert_allclose(out.detach().numpy(), eager.detach().numpy(), rtol=1e-5)
    out.sum().backward()
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-5, atol=1e-7)
    assert "_compiled_forward" not in model.state_dict()


def test_module_compile_retraces_when_forward_reads_training():
    class Net(nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.5, training=self.training)

    net = Net()
    net.compile()
    x = kiln.ones(50, 20)
    net.eval()
    np.testing.assert_array_equal(net(x).numpy(), x.numpy())
    net.train()
    assert (net(x).numpy() == 0).any()
    net.eval()
    np.testing.assert_array_equal(net(x).numpy(), x.numpy())


def test_hook_options():
    m = nn.Linear(2, 2)
    order = []
    m.register_forward_hook(lambda mod, a, o: order.append("second"))
    m.register_forward_hook(lambda mod, a, o: order.append("first"), prepend=True)
    m.register_forward_hook(lambda mod, a, kw, o: order.append(("kw", sorted(kw))), with_kwargs=True)
    m.register_forward_pre_hook(lambda mod, a, kw: ((a[0] * 0,), kw), with_kwargs=True)
    out = m(kiln.ones(1, 2))
    assert order == ["first", "second", ("kw", [])]
    np.testing.assert_allclose(out.detach().numpy(), m.bias.detach().numpy()[None])


def test_buffer_assignment():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Buffer(kiln.zeros(2))
            self.b = nn.Buffer(kiln.ones(1), persistent=False)

    m = M()
    assert list(m.state_dict()) == ["a"]
    assert [n for n, _ in m.named_buffers()] == ["a", "b"]
    assert type(m.a) is kiln.Tensor and not m.a.requires_grad
