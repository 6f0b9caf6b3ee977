"""Adadelta, following torch.optim.Adadelta's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
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
        state["step"] = self._step_tensor()
        state["square_avg"] = self._zeros_like(p)
        state["acc_delta"] = self._zeros_like(p)

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        for p in params:
            d = p.dtype
            state = self.state[p]
            param = ops.val(p)
            grad = ops.val(p.grad) if not group["maximize"] else -ops.val(p.grad)
            ops.assign(state["step"], ops.val(state["step"]) + 1)
            if group["weight_decay"] != 0:
                grad = grad + param * ops.hp("weight_decay", d)
            rho, one_minus_rho = ops.hp("rho", d), ops.derived("1-rho", d, lambda: 1 - ops.hp64("rho"))
            eps = ops.hp("eps", d)
            square_avg = ops.val(state["square_avg"]) * rho + grad * grad * one_minus_rho
            ops.assign(state["square_avg"], square_avg)
            delta = ops.sqrt(ops.val(state["acc_delta"]) + eps) / ops.sqrt(square_avg + eps) * grad
            ops.assign(state["acc_delta"], ops.val(state["acc_delta"]) * rho + delta * delta * one_minus_rho)
            ops.assign(p, param - delta * ops.hp("lr", d))
