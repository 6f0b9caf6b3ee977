"""A user-written Optimizer subclass (torch.optim style: lazy state, Python hyperparameters) under kiln.compile.

The same optimizer is written against torch.optim.Optimizer; the compiled kiln step must follow it
step for step, including learning-rate changes made by a scheduler between calls."""
from __future__ import annotations

import math

import numpy as np
import pytest

import kiln
from kiln.optim import Optimizer
from kiln.optim.lr_scheduler import StepLR
from optim_helpers import X, Y, assert_close, kiln_loss, kiln_params, torch_loss, torch_params

torch = pytest.importorskip("torch")


def _rmsprop_step(self, lib):
    """RMSprop as a user writes it: state created on the first step, options read from the group."""
    for group in self.param_groups:
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if len(state) == 0:
                state["step"] = lib.tensor(0.0)
                state["square_avg"] = lib.zeros_like(p)
            state["step"] += 1
            sq = state["square_avg"]
            sq.mul_(group["alpha"]).addcmul_(p.grad, p.grad, value=1 - group["alpha"])
            p.addcdiv_(p.grad, sq.sqrt().add_(group["eps"]), value=-group["lr"])


def _adam_py_step(self, lib):
    """Adam in the older torch style: `step` a Python int in the state, bias corrections in Python floats."""
    for group in self.param_groups:
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = lib.zeros_like(p)
                state["exp_avg_sq"] = lib.zeros_like(p)
            state["step"] += 1
            state["exp_avg"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            bc1 = 1 - beta1 ** state["step"]
            bc2 = 1 - beta2 ** state["step"]
            denom = (state["exp_avg_sq"].sqrt() / math.sqrt(bc2)).add_(group["eps"])
            p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / bc1)


def _make(base, lib, step_fn, defaults):
    class UserOpt(base):
        def __init__(self, params, **kw):
            super().__init__(params, {**defaults, **kw})

        def step(self, closure=None):
            with lib.no_grad():
                step_fn(self, lib)

    return UserOpt


def _run_torch(step_fn, defaults, steps, sched_kw):
    w, b = torch_params(torch)
    opt = _make(torch.optim.Optimizer, torch, step_fn, defaults)([w, b])
    sched = torch.optim.lr_scheduler.StepLR(opt, **sched_kw)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        torch_loss(torch, w, b).backward()
        opt.step()
        sched.step()
        out.append((w.detach().numpy().copy(), b.detach().numpy().copy()))
    return out, opt


def _run_kiln(step_fn, defaults, steps, sched_kw):
    w, b = kiln_params()
    opt = _make(Optimizer, kiln, step_fn, defaults)([w, b])
    sched = StepLR(opt, **sched_kw)

    @kiln.compile
    def train_step(x, y):
        opt.zero_grad()
        loss = kiln_loss(w, b, x, y)
        loss.backward()
        opt.step()
        return loss

    x, y = kiln.tensor(X), kiln.tensor(Y)
    out = []
    for _ in range(steps):
        train_step(x, y)
        sched.step()
        out.append((w.detach().numpy().copy(), b.detach().numpy().copy()))
    return out, opt, train_step, (w, b)


def test_lazy_state_and_scheduled_lr_follow_torch():
    defaults = dict(lr=0.01, alpha=0.9, eps=1e-8)
    sched_kw = dict(step_size=2, gamma=0.5)
    want, opt_t = _run_torch(_rmsprop_step, defaults, 6, sched_kw)
    got, opt_k, fn, params = _run_kiln(_rmsprop_step, defaults, 6, sched_kw)
    for i, ((wk, bk), (wt, bt)) in enumerate(zip(got, want)):
        assert_close(wk, wt, what=f"w after step {i + 1}")
        assert_close(bk, bt, what=f"b after step {i + 1}")
    # The state is real tensors holding PyTorch's values, and the next call continues from them.
    for pk, pt in zip(params, opt_t.param_groups[0]["params"]):
        sk, st = opt_k.state[pk], opt_t.state[pt]
        assert not sk["square_avg"].is_tracer and not sk["step"].is_tracer
        assert float(sk["step"]) == 6.0
        assert_close(sk["square_avg"], st["square_avg"].numpy())
    # One trace creates the state, one reads it; each learning rate StepLR sets is one more trace.
    info = fn.cache_info()
    assert info.misses == 4 and info.hits == 2
    # Eager steps continue from the compiled state.
    opt_k.step()
    assert float(opt_k.state[params[0]]["step"]) == 7.0


def test_python_number_state_and_float_math_follow_torch():
    defaults = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    sched_kw = dict(step_size=3, gamma=0.1)
    want, _ = _run_torch(_adam_py_step, defaults, 5, sched_kw)
    got, opt_k, fn, params = _run_kiln(_adam_py_step, defaults, 5, sched_kw)
    for i, ((wk, _bk), (wt, _bt)) in enumerate(zip(got, want)):
        assert_close(wk, wt, what=f"w after step {i + 1}")
    # A Python counter in the state is written back after every call (each value is a new trace).
    assert opt_k.state[params[0]]["step"] == 5
    assert fn.cache_info().misses == 5


def test_python_value_written_to_param_group_persists():
    w = kiln.tensor(np.ones(3, np.float32), requires_grad=True)

    class Counting(Optimizer):
        def __init__(self, params):
            super().__init__(params, dict(lr=0.5))

        def step(self, closure=None):
            with kiln.no_grad():
                for group in self.param_groups:
                    group["calls"] = group.get("calls", 0) + 1
                    for p in group["params"]:
                        p.sub_(p.grad * group["lr"])

    opt = Counting([w])

    @kiln.compile
    def step(x):
        opt.zero_grad()
        (w * x).sum().backward()
        opt.step()

    for _ in range(3):
        step(kiln.ones(3))
    assert opt.param_groups[0]["calls"] == 3
    np.testing.assert_allclose(w.detach().numpy(), np.full(3, 1 - 3 * 0.5, np.float32))


def test_builtin_optimizer_still_traces_once_with_a_scheduler():
    w, b = kiln_params()
    opt = kiln.optim.Adam([w, b], lr=0.01)
    sched = StepLR(opt, step_size=1, gamma=0.5)

    @kiln.compile
    def train_step(x, y):
        opt.zero_grad()
        kiln_loss(w, b, x, y).backward()
        opt.step()

    for _ in range(4):
        train_step(kiln.tensor(X), kiln.tensor(Y))
        sched.step()
    assert train_step.cache_info().misses == 1
