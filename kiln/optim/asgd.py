"""ASGD (averaged SGD), following torch.optim.ASGD's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from ..ir import dtypes as dt
from . import _functional as F
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_options


class ASGD(Optimizer):
    """Averaged SGD (Polyak & Juditsky): `p = p (1 - lambd eta) - eta g`, with the running average
    `ax` of the iterates (from step `t0`); `eta = lr / (1 + lambd lr t)^alpha`, `mu = 1 / max(1, t - t0)`."""

    _scalar_state = ("step", "eta", "mu")
    _tensor_hparams = ("lr", "lambd", "alpha", "t0", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lambd: float = 1e-4, alpha: float = 0.75,
                 t0: float = 1e6, weight_decay: float = 0.0, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, capturable: bool = False):
        _check_options("ASGD", lr, weight_decay=weight_decay, differentiable=differentiable)
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        self._start_state(p, state, "ax", eta=group.hparam_value("lr"), mu=1.0)

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        f32, f64 = dt.float32, dt.float64
        lr, lambd = ops.hp64("lr"), ops.hp64("lambd")
        for p in params:
            d, state = p.dtype, self.state[p]
            param, grad = F.param_and_grad(ops, p, group)
            step64 = F.float64_step(ops, F.count_step(ops, state))
            eta = ops.cast(ops.val(state["eta"]), f64)
            param = param * ops.cast(1 - lambd * eta, d)
            param = param - grad * ops.cast(eta, d)
            ops.assign(p, param)
            mu = ops.val(state["mu"])
            ax = ops.val(state["ax"])
            ops.assign(state["ax"], ops.where(mu == 1, param, ax + (param - ax) * ops.cast(mu, d)))
            ops.assign(state["eta"], ops.cast(lr / (1 + lambd * lr * step64) ** ops.hp64("alpha"), f32))
            since_t0 = step64 - ops.hp64("t0")
            ops.assign(state["mu"], ops.cast(1 / ops.where(since_t0 > 1, since_t0, 1.0), f32))