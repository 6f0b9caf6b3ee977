"""Learning-rate schedulers give PyTorch's lr sequence and state_dict layout."""
from __future__ import annotations

import math

import numpy as np

import pytest

import kiln
import kiln.optim as optim
from kiln.optim import lr_scheduler as kls

torch = pytest.importorskip("torch")

SCHEDULERS = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("StepLR", dict(step_size=1, gamma=0.9)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.8)),
    ("CosineAnnealingLR", dict(T_max=5)),
    ("CosineAnnealingLR", dict(T_max=4, eta_min=0.01)),
    ("LambdaLR", dict(lr_lambda=lambda e: 1.0 / (e + 1))),
    ("LinearLR", dict(start_factor=0.25, total_iters=4)),
    ("LinearLR", dict(start_factor=0.5, end_factor=0.1, total_iters=3)),
]


def _pair(lr=0.1, groups=1):
    kp = [kiln.zeros(2, requires_grad=True) for _ in range(groups)]
    tp = [torch.zeros(2, requires_grad=True) for _ in range(groups)]
    kopt = optim.SGD([{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(kp)], lr=lr)
    topt = torch.optim.SGD([{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(tp)], lr=lr)
    return kopt, topt


@pytest.mark.parametrize("case", SCHEDULERS, ids=lambda c: c[0] + str(sorted(c[1])))
def test_lr_sequence_matches_torch(case):
    name, kw = case
    kopt, topt = _pair(groups=2)
    ks, ts = getattr(kls, name)(kopt, **kw), getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    for epoch in range(14):
        for a, b in zip(ks.get_last_lr(), ts.get_last_lr()):
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), (epoch, a, b)
        assert [g["lr"] for g in kopt.param_groups] == pytest.approx([g["lr"] for g in topt.param_groups],
                                                                       rel=1e-12, abs=1e-15)
        kopt.step()
        topt.step()
        ks.step()
        ts.step()
    # the lr tensor the update reads follows the group's Python value
    assert float(kopt.param_groups[0].hparam("lr")) == kopt.param_groups[0]["lr"]


def test_state_dict_matches_torch_keys_and_resumes():
    kopt, topt = _pair()
    ks, ts = kls.StepLR(kopt, step_size=2, gamma=0.1), torch.optim.lr_scheduler.StepLR(topt, step_size=2, gamma=0.1)
    for _ in range(3):
        topt.step()
        ks.step()
        ts.step()
    sd = ks.state_dict()
    assert {"step_size", "gamma", "base_lrs", "last_epoch", "_step_count", "_last_lr"} <= set(sd)
    assert sd["last_epoch"] == ts.state_dict()["last_epoch"] == 3
    assert "optimizer" not in sd
    kopt2, _ = _pair()
    ks2 = kls.StepLR(kopt2, step_size=5, gamma=0.5)
    ks2.load_state_dict(sd)
    kopt2.load_state_dict(kopt.state_dict())
    for _ in range(3):
        ks.step()
        ks2.step()
    assert ks2.get_last_lr() == ks.get_last_lr()


def test_closed_form_epoch_argument():
    kopt, topt = _pair()
    ks = kls.CosineAnnealingLR(kopt, T_max=10)
    ts = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=10)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ks.step(7)
        ts.step(7)
    assert ks.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)


def test_scheduler_requires_optimizer():
    with pytest.raises(TypeError):
        kls.StepLR(object(), step_size=1)


@pytest.mark.parametrize("kw", [dict(), dict(mode="max", factor=0.5, patience=1, threshold_mode="abs", cooldown=1),
                                dict(patience=0, min_lr=0.02, threshold=0.1)])
def test_reduce_lr_on_plateau_matches_torch(kw):
    kopt, topt = _pair(groups=2)
    ks = kls.ReduceLROnPlateau(kopt, **kw)
    ts = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.5, 0.5, 0.51, 0.52, 0.53, 0.2, 0.3, 0.3, 0.3] * 2
    for m in metrics:
        ks.step(kiln.tensor(np.float64(m)))  # a float32 metric would round 0.9 below 0.9
        ts.step(m)
        assert ks.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
    assert ks.num_bad_epochs == ts.num_bad_epochs and ks.best == ts.best
    sd = ks.state_dict()
    assert "optimizer" not in sd and sd["best"] == ts.state_dict()["best"]


@pytest.mark.parametrize("milestones", [[3], [1], [2, 5]])
def test_sequential_lr_matches_torch(milestones):
    kopt, topt = _pair(groups=2)

    def build(mod, opt):
        scheds = [mod.LinearLR(opt, start_factor=0.1, total_iters=3), mod.CosineAnnealingLR(opt, T_max=6)]
        if len(milestones) == 2:
            scheds.append(mod.StepLR(opt, step_size=2, gamma=0.5))
        return mod.SequentialLR(opt, scheds, milestones=milestones)

    ks, ts = build(kls, kopt), build(torch.optim.lr_scheduler, topt)
    for epoch in range(12):
        assert ks.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12, abs=1e-15), epoch
        assert [g["lr"] for g in kopt.param_groups] == pytest.approx([g["lr"] for g in topt.param_groups],
                                                                       rel=1e-12, abs=1e-15)
        kopt.step()
        topt.step()
        ks.step()
        ts.step()
    assert len(ks.state_dict()["_schedulers"]) == len(ts.state_dict()["_schedulers"])


def test_scheduler_state_dicts_round_trip_through_kiln_save(tmp_path):
    makers = [lambda o: kls.MultiStepLR(o, [1, 3], gamma=0.5),
              lambda o: kls.ReduceLROnPlateau(o, patience=0),
              lambda o: kls.SequentialLR(o, [kls.LinearLR(o), kls.CosineAnnealingLR(o, 5)], [2])]
    for make in makers:
        kopt, _ = _pair()
        sched = make(kopt)
        for _ in range(3):
            sched.step(1.0) if isinstance(sched, kls.ReduceLROnPlateau) else sched.step()
        kiln.save({"sched": sched.state_dict(), "optim": kopt.state_dict()}, tmp_path / "s.kiln")
        ckpt = kiln.load(tmp_path / "s.kiln")
        kopt2, _ = _pair()
        sched2 = make(kopt2)
        kopt2.load_state_dict(ckpt["optim"])
        sched2.load_state_dict(ckpt["sched"])
        for _ in range(3):
            for s in (sched, sched2):
                s.step(1.0) if isinstance(s, kls.ReduceLROnPlateau) else s.step()
        assert sched2.get_last_lr() == sched.get_last_lr()
