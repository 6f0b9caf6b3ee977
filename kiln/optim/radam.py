"""RAdam (rectified Adam), following torch.optim.RAdam's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from ..ir import dtypes as dt
from .adam import lerp
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
        state["step"] = self._step_tensor()
        state["exp_avg"] = self._zeros_like(p)
        state["exp_avg_sq"] = self._zeros_like(p)

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        beta1, beta2 = ops.hp64("betas", 0), ops.hp64("betas", 1)
        lr = ops.hp64("lr")
        rho_inf = 2 / (1 - beta2) - 1
        for p in params:
            d = p.dtype
            state = self.state[p]
            param = ops.val(p)
            grad = ops.val(p.grad) if not group["maximize"] else -ops.val(p.grad)
            step = ops.val(state["step"]) + 1
            ops.assign(state["step"], step)
            if group["weight_decay"] != 0:
                if group["decoupled_weight_decay"]:
                    param = param * ops.derived("1-lr*wd", d, lambda: 1 - lr * ops.hp64("weight_decay"))
                    ops.assign(p, param)
                else:
                    grad = grad + param * ops.hp("weight_decay", d)
            exp_avg = lerp(ops.val(state["exp_avg"]), grad, ops.derived("1-beta1", d, lambda: 1 - beta1),
                           ops.hp("betas", d, 0), 1 - group["betas"][0])
            ops.assign(state["exp_avg"], exp_avg)
            exp_avg_sq = ops.val(state["exp_avg_sq"]) * ops.hp("betas", d, 1) \
                + grad * grad * ops.derived("1-beta2", d, lambda: 1 - beta2)
            ops.assign(state["exp_avg_sq"], exp_avg_sq)
            step64 = ops.cast(step, dt.float64)
            bias_correction1 = 1 - beta1 ** step64
            bias_correction2 = 1 - beta2 ** step64
            rho_t = rho_inf - 2 * step64 * beta2 ** step64 / bias_correction2
            ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            rect = ops.cast(ops.sqrt(ops.maximum(ratio, 0.0 * ratio)), d)  # only used where rho_t > 5 (ratio > 0)
            scaled = exp_avg / ops.cast(bias_correction1, d) * ops.cast(lr, d)
            adaptive = ops.cast(ops.sqrt(bias_correction2), d) / (ops.sqrt(exp_avg_sq) + ops.hp("eps", d))
            ops.assign(p, param - ops.where(rho_t > 5.0, scaled * adaptive * rect, scaled))
