"""Optimizer checkpoints: state_dict -> kiln.save -> kiln.load -> fresh optimizer continues identically."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
import kiln.optim as optim
from optim_helpers import kiln_loss, kiln_params

CONFIGS = [
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, betas=(0.8, 0.99))),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.01)),
    ("Adadelta", dict(lr=0.5, rho=0.8)),
    ("Adamax", dict(lr=0.01, betas=(0.8, 0.99))),
    ("Rprop", dict(lr=0.01, etas=(0.4, 1.3))),
    ("NAdam", dict(lr=0.01, momentum_decay=0.01)),
    ("RAdam", dict(lr=0.01)),
    ("ASGD", dict(lr=0.05, t0=2)),
]


def _steps(opt, params, n):
    for _ in range(n):
        opt.zero_grad()
        kiln_loss(*params).backward()
        opt.step()


@pytest.mark.parametrize("case", CONFIGS, ids=lambda c: c[0] + "-" + ",".join(map(str, c[1].values())))
def test_round_trip_through_file_continues_identically(case, tmp_path):
    name, kw = case
    params = kiln_params()
    opt = getattr(optim, name)(params, **kw)
    _steps(opt, params, 4)
    path = tmp_path / "ckpt.kiln"
    kiln.save({"model": {"w": params[0], "b": params[1]}, "optim": opt.state_dict()}, path)

    ckpt = kiln.load(path)
    fresh = kiln_params()
    with kiln.no_grad():
        fresh[0].copy_(ckpt["model"]["w"])
        fresh[1].copy_(ckpt["model"]["b"])
    opt2 = getattr(optim, name)(fresh, lr=123.0)  # options come from the checkpoint
    opt2.load_state_dict(ckpt["optim"])
    assert opt2.param_groups[0]["lr"] == kw["lr"]
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]

    _steps(opt, params, 4)
    _steps(opt2, fresh, 4)
    for a, b in zip(params, fresh):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    for i in s1:
        for k in s1[i]:
            np.testing.assert_array_equal(s1[i][k].numpy(), s2[i][k].numpy())
            assert s1[i][k].dtype == s2[i][k].dtype and s1[i][k].shape == s2[i][k].shape


def test_load_state_dict_rejects_mismatched_groups():
    params = kiln_params()
    opt = optim.Adam(params)
    _steps(opt, params, 1)
    sd = opt.state_dict()
    other = optim.Adam([kiln_params()[0]])
    with pytest.raises(ValueError, match="size"):
        other.load_state_dict(sd)
    with pytest.raises(ValueError):
        opt.load_state_dict({"state": {}})


def test_loaded_state_is_copied_not_aliased():
    params = kiln_params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    _steps(opt, params, 1)
    sd = opt.state_dict()
    fresh = kiln_params()
    opt2 = optim.SGD(fresh, lr=0.1, momentum=0.9)
    opt2.load_state_dict(sd)
    assert opt2.state[fresh[0]]["momentum_buffer"] is not sd["state"][0]["momentum_buffer"]
    # state dict tensors of a float32 parameter are cast to its dtype (as PyTorch does), step stays float32
    sd64 = {"state": {0: {"momentum_buffer": sd["state"][0]["momentum_buffer"].double()}}, "param_groups":
            sd["param_groups"]}
    opt2.load_state_dict(sd64)
    assert opt2.state[fresh[0]]["momentum_buffer"].dtype == kiln.float32
    assert fresh[1] not in opt2.state
