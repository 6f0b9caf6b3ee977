"""Each optimizer's 10-step trajectory (parameters and state) matches PyTorch's to 1e-5 relative."""
from __future__ import annotations

import pytest

import kiln
import kiln.optim as optim
from optim_helpers import assert_close, kiln_loss, kiln_params, torch_loss, torch_params

torch = pytest.importorskip("torch")

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.01, momentum=0.5, maximize=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.02, betas=(0.3, 0.9), eps=1e-3, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict()),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.05, lr_decay=0.1, weight_decay=0.05, initial_accumulator_value=0.1)),
    ("Adagrad", dict(lr=0.05, eps=1e-3, maximize=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.005, centered=True, momentum=0.5, weight_decay=0.1, alpha=0.9)),
    ("RMSprop", dict(lr=0.01, maximize=True, eps=1e-4)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1, maximize=True)),
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.01, betas=(0.7, 0.9), eps=1e-4, weight_decay=0.1)),
    ("Adamax", dict(lr=0.01, maximize=True)),
    ("Rprop", dict()),
    ("Rprop", dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2), maximize=True)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("RAdam", dict()),
    ("RAdam", dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1)),
    ("RAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("ASGD", dict()),
    ("ASGD", dict(lr=0.05, lambd=0.01, alpha=0.5, t0=3, weight_decay=0.1)),
    ("ASGD", dict(lr=0.05, t0=0, maximize=True)),
]


def _ids(case):
    name, kw = case
    return name + "-" + ",".join(f"{k}={v}" for k, v in kw.items())


def run_both(name, kw, steps=10, groups=False):
    kw_, tw_ = kiln_params(), torch_params(torch)
    if groups:  # per-group options: the bias gets its own lr
        kopt = getattr(optim, name)([{"params": [kw_[0]]}, {"params": [kw_[1]], "lr": kw.get("lr", 1e-3) * 3}], **kw)
        topt = getattr(torch.optim, name)([{"params": [tw_[0]]}, {"params": [tw_[1]], "lr": kw.get("lr", 1e-3) * 3}],
                                          **kw)
    else:
        kopt, topt = getattr(optim, name)(kw_, **kw), getattr(torch.optim, name)(tw_, **kw)
    for step in range(steps):
        kopt.zero_grad()
        kl = kiln_loss(*kw_)
        kl.backward()
        kopt.step()
        topt.zero_grad()
        tl = torch_loss(torch, *tw_)
        tl.backward()
        topt.step()
        assert_close(kl, tl, what=f"loss at step {step}")
        for a, b in zip(kw_, tw_):
            assert_close(a, b, what=f"parameter after step {step}")
    return kopt, topt, kw_, tw_


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_trajectory_matches_torch(case):
    name, kw = case
    kopt, topt, kw_, tw_ = run_both(name, kw)
    ks, ts = kopt.state_dict(), topt.state_dict()
    assert set(ts["state"]) == set(ks["state"])
    for idx, tstate in ts["state"].items():
        for key, tval in tstate.items():
            assert key in ks["state"][idx], f"kiln's {name} state lacks {key!r}"
            assert_close(ks["state"][idx][key], tval, what=f"state {key}")
    for kg, tg in zip(ks["param_groups"], ts["param_groups"]):
        for key, tval in tg.items():
            if key in kg and not isinstance(tval, (list, tuple)):
                assert kg[key] == tval, key


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adadelta", "Adamax", "Rprop", "NAdam", "RAdam",
                                  "ASGD"])
def test_param_groups_with_own_options(name):
    kw = dict(lr=0.01, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.01)
    kopt, topt, *_ = run_both(name, kw, steps=5, groups=True)
    assert [g["lr"] for g in kopt.param_groups] == [g["lr"] for g in topt.param_groups]


def test_lr_change_between_steps_matches_torch():
    kw_, tw_ = kiln_params(), torch_params(torch)
    kopt, topt = optim.Adam(kw_, lr=0.01), torch.optim.Adam(tw_, lr=0.01)
    for step in range(6):
        for opt, loss in ((kopt, kiln_loss(*kw_)), (topt, torch_loss(torch, *tw_))):
            opt.zero_grad()
            loss.backward()
            opt.step()
            for g in opt.param_groups:
                g["lr"] *= 0.5
    for a, b in zip(kw_, tw_):
        assert_close(a, b)


def test_params_without_grad_are_skipped():
    w, b = kiln_params()
    opt = optim.SGD([w, b], lr=0.1, momentum=0.9)
    w.grad = kiln.ones(*w.shape)
    before = b.detach().clone()
    opt.step()
    assert kiln.equal(b, before)
    assert b not in opt.state and "momentum_buffer" in opt.state[w]


def test_closure_returns_loss():
    w, b = kiln_params()
    opt = optim.SGD([w, b], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = kiln_loss(w, b)
        loss.backward()
        return loss

    l0 = opt.step(closure)
    l1 = opt.step(closure)
    assert float(l1) < float(l0)


def test_zero_grad_set_to_none_false_zeroes_in_place():
    w, b = kiln_params()
    opt = optim.SGD([w, b], lr=0.1)
    kiln_loss(w, b).backward()
    g = w.grad
    opt.zero_grad(set_to_none=False)
    assert w.grad is g and float(g.abs().sum()) == 0.0
    opt.zero_grad()
    assert w.grad is None and b.grad is None


def test_invalid_arguments():
    w, _ = kiln_params()
    with pytest.raises(ValueError):
        optim.SGD([w], lr=-1.0)
    with pytest.raises(ValueError):
        optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        optim.Adam([w], betas=(1.0, 0.9))
    with pytest.raises(ValueError):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError):
        optim.SGD([w, w], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD(w, lr=0.1)
    opt = optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [w]})


def test_add_param_group_uses_defaults():
    w, b = kiln_params()
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.5})
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.5
    assert float(opt.param_groups[1].hparam("lr")) == 0.5


def test_state_dict_layout_matches_torch():
    kopt, topt, *_ = run_both("Adam", dict(lr=0.01), steps=2)
    ks, ts = kopt.state_dict(), topt.state_dict()
    assert list(ks) == ["state", "param_groups"]
    assert ks["param_groups"][0]["params"] == ts["param_groups"][0]["params"] == [0, 1]
    assert set(ks["param_groups"][0]) == set(ts["param_groups"][0])
    assert ks["state"][0]["step"].dtype == kiln.float32 and ks["state"][0]["step"].ndim == 0


def test_load_torch_state_dict_then_continue():
    """A PyTorch optimizer's state_dict() loads directly and continues identically."""
    kw_, tw_ = kiln_params(), torch_params(torch)
    topt = torch.optim.SGD(tw_, lr=0.05, momentum=0.9)
    for _ in range(3):
        topt.zero_grad()
        torch_loss(torch, *tw_).backward()
        topt.step()
    ksd = topt.state_dict()  # PyTorch tensors and all: load_state_dict converts them
    with kiln.no_grad():
        for a, b in zip(kw_, tw_):
            a.copy_(kiln.tensor(b.detach().numpy()))
    kopt = optim.SGD(kw_, lr=0.5)
    kopt.load_state_dict(ksd)
    assert kopt.param_groups[0]["lr"] == 0.05
    for _ in range(3):
        for opt, loss in ((kopt, kiln_loss(*kw_)), (topt, torch_loss(torch, *tw_))):
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(kw_, tw_):
        assert_close(a, b)


@pytest.mark.parametrize("name,kw", [("Adam", dict(lr=0.01, amsgrad=True)),
                                     ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1)),
                                     ("RMSprop", dict(lr=0.01, centered=True, alpha=0.3, momentum=0.2)),
                                     ("Adadelta", dict(lr=0.5, weight_decay=0.1)),
                                     ("Adamax", dict(lr=0.01, weight_decay=0.1)),
                                     ("Rprop", dict(lr=0.01)),
                                     ("NAdam", dict(lr=0.01, weight_decay=0.1)),
                                     ("RAdam", dict(lr=0.01)),
                                     ("ASGD", dict(lr=0.05, t0=2))])
def test_float64_parameters_match_torch_tightly(name, kw):
    import numpy as np
    rng = np.random.default_rng(0)
    w0, x = rng.standard_normal((5, 3)), rng.standard_normal((8, 5))
    kw_, tw = kiln.tensor(w0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    ko, to = getattr(optim, name)([kw_], **kw), getattr(torch.optim, name)([tw], **kw)
    for _ in range(10):
        ko.zero_grad()
        ((kiln.tensor(x) @ kw_).tanh() ** 2).sum().backward()
        ko.step()
        to.zero_grad()
        ((torch.tensor(x) @ tw).tanh() ** 2).sum().backward()
        to.step()
    assert kw_.dtype == kiln.float64
    for key, value in ko.state[kw_].items():  # floating state follows the parameter; 0-d scalars stay float32
        want = str(to.state[tw][key].dtype).replace("torch.", "") if key in to.state[tw] else "float32"  # SGD's step
        assert value.dtype.name == want, key
    np.testing.assert_allclose(kw_.detach().numpy(), tw.detach().numpy(), rtol=1e-12, atol=1e-13)


def test_named_parameters_are_accepted_like_torch():
    kw_, tw_ = kiln_params(), torch_params(torch)
    kopt = optim.SGD([("w", kw_[0]), ("b", kw_[1])], lr=0.1)
    topt = torch.optim.SGD([("w", tw_[0]), ("b", tw_[1])], lr=0.1)
    kg, tg = kopt.state_dict()["param_groups"][0], topt.state_dict()["param_groups"][0]
    assert kg["param_names"] == tg["param_names"] == ["w", "b"]
    assert kopt.param_groups[0]["params"][0] is kw_[0]


def test_param_group_mirrors_numeric_options_in_place():
    w, b = kiln_params()
    opt = optim.Adam([w, b], lr=0.01, betas=(0.8, 0.9))
    g = opt.param_groups[0]
    lr_t, (b1_t, b2_t) = g.hparam("lr"), g.hparam("betas")
    g["lr"] = 0.5
    g.update(betas=(0.7, 0.95))
    assert g.hparam("lr") is lr_t and float(lr_t) == 0.5  # same tensor object, new value
    assert g.hparam("betas")[0] is b1_t and (float(b1_t), float(b2_t)) == (0.7, 0.95)
    g["lr"] = kiln.tensor(0.25)
    assert float(lr_t) == 0.25
    assert g.setdefault("initial_lr", 0.3) == 0.3 and "initial_lr" in g
    with pytest.raises(KeyError):
        g.hparam("amsgrad")  # booleans are not mirrored
    import copy
    g2 = copy.deepcopy(g)
    g2["lr"] = 1.0
    assert float(lr_t) == 0.25 and float(g2.hparam("lr")) == 1.0


@pytest.mark.parametrize("name", ["Adadelta", "Adamax", "Rprop", "NAdam", "RAdam", "ASGD"])
def test_param_group_and_state_keys_match_torch(name):
    kopt, topt, *_ = run_both(name, {}, steps=1)
    ks, ts = kopt.state_dict(), topt.state_dict()
    assert set(ks["param_groups"][0]) == set(ts["param_groups"][0])
    assert list(ks["state"][0]) == list(ts["state"][0])
    assert ks["state"][0]["step"].dtype == kiln.float32 and ks["state"][0]["step"].ndim == 0
