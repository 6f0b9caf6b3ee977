"""Adadelta, following torch.optim.Adadelta's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from . import _functional as F
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_options


class Adadelta(Optimizer):
    """Adadelta (Zeiler): `v = rho v + (1 - rho) g^2`; `d = sqrt(u + eps) / sqrt(v + eps) * g`;
    `u = rho u + (1 - rho) d^2`; `p -= lr * d`."""

    _tensor_hparams = ("lr", "rho", "eps", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, foreach: bool | None = None, *, capturable: bool = False,
                 maximize: bool = False, differentiable: bool = False):
        _check_options("Adadelta", lr, rho=rho, eps=eps, weight_decay=weight_decay, differentiable=differentiable)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                        capturable=capturable, foreach=foreach, differentiable=differentiable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        self._start_state(p, state, "square_avg", "acc_delta")

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        for p in params:
            d, state = p.dtype, self.state[p]
            param, grad = F.param_and_grad(ops, p, group)
            F.count_step(ops, state)
            eps = ops.hp("eps", d)
            square_avg = F.running_square_average(ops, state["square_avg"], grad, "rho")
            delta = ops.sqrt(ops.val(state["acc_delta"]) + eps) / ops.sqrt(square_avg + eps) * grad
            F.running_square_average(ops, state["acc_delta"], delta, "rho")
            ops.assign(p, param - delta * ops.hp("lr", d))