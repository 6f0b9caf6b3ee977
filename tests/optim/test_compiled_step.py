"""A whole training step (zero_grad, backward, step) compiled with kiln.compile matches eager, step for step."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.nn.functional as F
import kiln.optim as optim
from kiln.optim.lr_scheduler import CosineAnnealingLR, StepLR
from optim_helpers import X, Y, kiln_loss, kiln_params

CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01)),
    ("Adadelta", dict(lr=0.5, weight_decay=0.01)),
    ("Adamax", dict(lr=0.01, weight_decay=0.01)),
    ("Rprop", dict(lr=0.01, maximize=True)),
    ("NAdam", dict(lr=0.01, weight_decay=0.01)),
    ("RAdam", dict(lr=0.01, decoupled_weight_decay=True, weight_decay=0.01)),
    ("ASGD", dict(lr=0.05, t0=2)),
]


def _ids(case):
    return case[0] + "-" + ",".join(f"{k}={v}" for k, v in case[1].items())


def _state_arrays(opt):
    return {(i, k): np.array(v.numpy()) for i, s in opt.state_dict()["state"].items() for k, v in s.items()}


def _train(name, kw, steps, compiled, scheduler=StepLR, sched_kw=None):
    w, b = kiln_params()
    opt = getattr(optim, name)([w, b], **kw)
    sched = scheduler(opt, **(sched_kw or dict(step_size=2, gamma=0.5)))
    x, y = kiln.tensor(X), kiln.tensor(Y)

    def train_step(x, y):
        opt.zero_grad()
        loss = kiln_loss(w, b, x, y)
        loss.backward()
        opt.step()
        return loss

    fn = kiln.compile(train_step) if compiled else train_step
    losses = []
    for _ in range(steps):
        losses.append(float(fn(x, y)))
        sched.step()
    return w, b, opt, losses, fn


@pytest.mark.parametrize("case", CONFIGS, ids=_ids)
def test_compiled_step_matches_eager(case):
    name, kw = case
    steps = 6
    we, be, opt_e, losses_e, _ = _train(name, kw, steps, compiled=False)
    wc, bc, opt_c, losses_c, fn = _train(name, kw, steps, compiled=True)
    np.testing.assert_allclose(losses_c, losses_e, rtol=2e-5)
    np.testing.assert_allclose(wc.detach().numpy(), we.detach().numpy(), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(bc.detach().numpy(), be.detach().numpy(), rtol=2e-5, atol=1e-6)
    se, sc = _state_arrays(opt_e), _state_arrays(opt_c)
    assert se.keys() == sc.keys()
    for k in se:
        np.testing.assert_allclose(sc[k], se[k], rtol=2e-5, atol=1e-6, err_msg=str(k))
    # The learning rate changed (StepLR halves it every 2 steps) without a retrace.
    assert opt_c.param_groups[0]["lr"] == kw["lr"] * 0.5 ** 3
    info = fn.cache_info()
    assert (info.misses, info.hits) == (1, steps - 1)
    # The compiled call wrote the final gradients back, like the eager step leaves them.
    np.testing.assert_allclose(wc.grad.numpy(), we.grad.numpy(), rtol=2e-5, atol=1e-6)


def test_cosine_schedule_reaches_compiled_step():
    kw = dict(lr=0.1, momentum=0.9)
    sched_kw = dict(T_max=4, eta_min=0.001)
    we, _, _, losses_e, _ = _train("SGD", kw, 5, False, CosineAnnealingLR, sched_kw)
    wc, _, _, losses_c, fn = _train("SGD", kw, 5, True, CosineAnnealingLR, sched_kw)
    np.testing.assert_allclose(losses_c, losses_e, rtol=2e-5)
    np.testing.assert_allclose(wc.detach().numpy(), we.detach().numpy(), rtol=2e-5, atol=1e-6)
    assert fn.cache_info().misses == 1


def test_state_created_in_trace_is_eager():
    w, b = kiln_params()
    opt = optim.Adam([w, b], lr=0.01)

    @kiln.compile
    def step():
        opt.zero_grad()
        kiln_loss(w, b).backward()
        opt.step()

    step()
    for s in opt.state.values():
        for t in s.values():
            assert isinstance(t, kiln.Tensor) and not t.is_tracer
    assert float(opt.state[w]["step"]) == 1.0
    step()
    assert float(opt.state[w]["step"]) == 2.0


def test_setting_lr_inside_compiled_function_is_an_error():
    w, b = kiln_params()
    opt = optim.SGD([w, b], lr=0.1)

    @kiln.compile
    def bad():
        opt.param_groups[0]["lr"] = 0.01
        return kiln_loss(w, b)

    with pytest.raises(RuntimeError, match="between calls"):
        bad()
    assert opt.param_groups[0]["lr"] == 0.1


def test_load_state_dict_updates_compiled_step_in_place():
    """Loading a checkpoint after compiling writes into the tensors the compiled step reads."""
    w, b = kiln_params()
    opt = optim.SGD([w, b], lr=0.05, momentum=0.9)

    @kiln.compile
    def step():
        opt.zero_grad()
        kiln_loss(w, b).backward()
        opt.step()

    step()
    snapshot = {k: v.clone() for k, v in opt.state[w].items()}
    sd = {"state": {0: snapshot, 1: {k: v.clone() for k, v in opt.state[b].items()}},
          "param_groups": [dict(opt.state_dict()["param_groups"][0], lr=0.0)]}
    step()
    buf = opt.state[w]["momentum_buffer"]
    opt.load_state_dict(sd)
    assert opt.state[w]["momentum_buffer"] is buf and kiln.equal(buf, snapshot["momentum_buffer"])
    before = w.detach().clone()
    step()  # lr is now 0: parameters must not move, and no retrace happens
    assert kiln.equal(w, before)
    assert step.cache_info().misses == 1


@pytest.mark.parametrize("case", CONFIGS, ids=_ids)
def test_numpy_and_tensor_update_paths_agree_exactly(case):
    """Eager steps run the formulas on numpy arrays; traces run them as kiln ops: same numbers, bit for bit."""
    name, kw = case
    results = []
    for eager_numpy in (True, False):
        w, b = kiln_params()
        opt = getattr(optim, name)([w, b], **kw)
        opt._eager_numpy = eager_numpy
        for _ in range(5):
            opt.zero_grad()
            kiln_loss(w, b).backward()
            opt.step()
        results.append(([w.detach().numpy().copy(), b.detach().numpy().copy()], _state_arrays(opt)))
    (p1, s1), (p2, s2) = results
    for a, c in zip(p1, p2):
        np.testing.assert_array_equal(a, c)
    assert s1.keys() == s2.keys()
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k], err_msg=str(k))
        assert s1[k].dtype == s2[k].dtype and s1[k].shape == s2[k].shape


@pytest.mark.parametrize("set_to_none", [True, False])
def test_compiling_only_the_step_matches_eager(set_to_none):
    """opt.step() compiled alone, gradients computed eagerly outside (new .grad objects each time, or reused)."""
    results = []
    for compiled in (False, True):
        w, b = kiln_params()
        opt = optim.Adam([w, b], lr=0.05)
        step = kiln.compile(opt.step) if compiled else opt.step
        for _ in range(4):
            opt.zero_grad(set_to_none=set_to_none)
            kiln_loss(w, b).backward()
            step()
        results.append(w.detach().numpy().copy())
        if compiled:
            assert step.cache_info().misses == 1
    np.testing.assert_allclose(results[1], results[0], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.05, momentum=0.9)), ("Adam", dict(lr=0.01))])
def test_compiled_nn_training_step_matches_eager(name, kw):
    def run(compiled):
        kiln.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
        opt = getattr(optim, name)(model.parameters(), **kw)
        sched = StepLR(opt, step_size=2, gamma=0.5)
        x, y = kiln.tensor(X), kiln.tensor(np.arange(16) % 3)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        fn = kiln.compile(step) if compiled else step
        losses = []
        for _ in range(5):
            losses.append(float(fn(x, y)))
            sched.step()
        return losses, [p.detach().numpy().copy() for p in model.parameters()], fn

    le, pe, _ = run(False)
    lc, pc, fn = run(True)
    np.testing.assert_allclose(lc, le, rtol=1e-6)
    for a, b in zip(pc, pe):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    assert fn.cache_info().misses == 1


def test_compiled_step_with_zero_grad_set_to_none_false():
    """zero_grad(set_to_none=False) inside the compiled step zeroes the written-back .grad in place."""
    def run(compiled):
        w, b = kiln_params()
        opt = optim.SGD([w, b], lr=0.05, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=False)
            loss = kiln_loss(w, b)
            loss.backward()
            opt.step()
            return loss

        fn = kiln.compile(step) if compiled else step
        losses = [float(fn()) for _ in range(5)]
        return losses, w.detach().numpy().copy(), fn

    le, we, _ = run(False)
    lc, wc, fn = run(True)
    np.testing.assert_allclose(lc, le, rtol=1e-6)
    np.testing.assert_allclose(wc, we, rtol=2e-5, atol=1e-6)
    assert fn.cache_info().misses <= 2  # the first call sees .grad None, later calls a tensor


def test_changing_a_structural_option_retraces():
    import numpy as np
    import kiln
    w = kiln.randn(4, 3, requires_grad=True)
    we = w.detach().clone().requires_grad_()
    x, y = kiln.randn(8, 4), kiln.randn(8, 3)
    opt, opte = kiln.optim.SGD([w], lr=0.1), kiln.optim.SGD([we], lr=0.1)

    def step(w, opt):
        opt.zero_grad()
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    cstep = kiln.compile(lambda: step(w, opt))
    for i in range(6):
        if i == 3:
            for o in (opt, opte):
                o.param_groups[0]["momentum"] = 0.9
                o.param_groups[0]["nesterov"] = True
        assert cstep().item() == pytest.approx(step(we, opte).item(), rel=1e-5)
    np.testing.assert_allclose(w.detach().numpy(), we.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert cstep.cache_info().misses == 2
