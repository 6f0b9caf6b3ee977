"""RAdam (rectified Adam), following torch.optim.RAdam's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from . import _functional as F
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_options


class RAdam(Optimizer):
    """RAdam (Liu et al.): Adam whose adaptive step is switched on, with a variance rectification
    factor, once the SMA length `rho_t` exceeds 5; before that, momentum SGD on the bias-corrected
    average. The switch is tensor math on the step (`where`), so a compiled step traces once."""

    _tensor_hparams = ("lr", "betas", "eps", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False):
        _check_options("RAdam", lr, eps=eps, betas=betas, weight_decay=weight_decay, differentiable=differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize,
                        foreach=foreach, capturable=capturable, decoupled_weight_decay=decoupled_weight_decay,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        self._start_state(p, state, "exp_avg", "exp_avg_sq")

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        beta2 = ops.hp64("betas", 1)
        rho_inf = 2 / (1 - beta2) - 1
        for p in params:
            d, state = p.dtype, self.state[p]
            param, grad = F.param_and_grad(ops, p, group)
            step64 = F.float64_step(ops, F.count_step(ops, state))
            exp_avg, exp_avg_sq = F.adam_moments(ops, state, grad, group)
            bias_correction2 = F.bias_correction(ops, step64, 1)
            rho_t = rho_inf - 2 * step64 * beta2 ** step64 / bias_correction2
            ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            rect = ops.cast(ops.sqrt(ops.maximum(ratio, 0.0 * ratio)), d)  # only used where rho_t > 5 (ratio > 0)
            scaled = exp_avg / ops.cast(F.bias_correction(ops, step64, 0), d) * ops.cast(ops.hp64("lr"), d)
            adaptive = ops.cast(ops.sqrt(bias_correction2), d) / (ops.sqrt(exp_avg_sq) + ops.hp("eps", d))
            ops.assign(p, param - ops.where(rho_t > 5.0, scaled * adaptive * rect, scaled))