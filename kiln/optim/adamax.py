"""Adamax (Adam with the infinity norm), following torch.optim.Adamax's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from . import _functional as F
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_options


class Adamax(Optimizer):
    """Adamax: `m = lerp(m, g, 1 - beta1)`; `u = max(beta2 u, |g| + eps)`; `p -= lr / (1 - beta1^t) * m / u`."""

    _tensor_hparams = ("lr", "betas", "eps", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, capturable: bool = False):
        _check_options("Adamax", lr, eps=eps, betas=betas, weight_decay=weight_decay, differentiable=differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        self._start_state(p, state, "exp_avg", "exp_inf")

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        for p in params:
            d, state = p.dtype, self.state[p]
            param, grad = F.param_and_grad(ops, p, group)
            step64 = F.float64_step(ops, F.count_step(ops, state))
            exp_avg = F.running_average(ops, state["exp_avg"], grad, group, "betas", 0)
            exp_inf = ops.maximum(ops.val(state["exp_inf"]) * ops.hp("betas", d, 1), ops.abs(grad) + ops.hp("eps", d))
            ops.assign(state["exp_inf"], exp_inf)
            clr = ops.cast(ops.hp64("lr") / F.bias_correction(ops, step64, 0), d)
            ops.assign(p, param - exp_avg / exp_inf * clr)