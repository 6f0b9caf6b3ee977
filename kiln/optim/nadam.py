"""NAdam (Adam with Nesterov momentum), following torch.optim.NAdam's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..frontend import trace as _trace
from ..frontend.tensor import Tensor
from ..ir import dtypes as dt
from .adam import lerp
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_options


class NAdam(Optimizer):
    """NAdam (Dozat): Adam whose update mixes the gradient and the momentum with the momentum
    schedule `mu_t = beta1 (1 - 0.5 * 0.96^(t * momentum_decay))`; `mu_product` is their product."""

    _scalar_state = ("step", "mu_product")
    _tensor_hparams = ("lr", "betas", "eps", "weight_decay", "momentum_decay")

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False):
        _check_options("NAdam", lr, eps=eps, betas=betas, weight_decay=weight_decay, momentum_decay=momentum_decay,
                       differentiable=differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        state["step"] = self._step_tensor()
        with _trace.suspended():
            state["mu_product"] = Tensor._make(np.array(1.0, dtype=np.float32))
        state["exp_avg"] = self._zeros_like(p)
        state["exp_avg_sq"] = self._zeros_like(p)

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        beta1, beta2 = ops.hp64("betas", 0), ops.hp64("betas", 1)
        lr, decay = ops.hp64("lr"), ops.hp64("momentum_decay")
        f32, f64 = dt.float32, dt.float64
        for p in params:
            d = p.dtype
            state = self.state[p]
            param = ops.val(p)
            grad = ops.val(p.grad) if not group["maximize"] else -ops.val(p.grad)
            step = ops.val(state["step"]) + 1
            ops.assign(state["step"], step)
            step64 = ops.cast(step, f64)
            bias_correction2 = 1 - beta2 ** step64
            if group["weight_decay"] != 0:
                if group["decoupled_weight_decay"]:
                    param = param * ops.derived("1-lr*wd", d, lambda: 1 - lr * ops.hp64("weight_decay"))
                    ops.assign(p, param)
                else:
                    grad = grad + param * ops.hp("weight_decay", d)
            mu = beta1 * (1.0 - 0.5 * 0.96 ** (step64 * decay))
            mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step64 + 1) * decay))
            mu_product = ops.val(state["mu_product"]) * ops.cast(mu, f32)  # float32, as PyTorch's state
            ops.assign(state["mu_product"], mu_product)
            mu_product64 = ops.cast(mu_product, f64)
            exp_avg = lerp(ops.val(state["exp_avg"]), grad, ops.derived("1-beta1", d, lambda: 1 - beta1),
                           ops.hp("betas", d, 0), 1 - group["betas"][0])
            ops.assign(state["exp_avg"], exp_avg)
            exp_avg_sq = ops.val(state["exp_avg_sq"]) * ops.hp("betas", d, 1) \
                + grad * grad * ops.derived("1-beta2", d, lambda: 1 - beta2)
            ops.assign(state["exp_avg_sq"], exp_avg_sq)
            denom = ops.sqrt(exp_avg_sq / ops.cast(bias_correction2, d)) + ops.hp("eps", d)
            grad_coef = ops.cast(-lr * (1.0 - mu) / (1.0 - mu_product64), d)
            avg_coef = ops.cast(-lr * mu_next / (1.0 - mu_product64 * mu_next), d)
            param = param + grad / denom * grad_coef
            ops.assign(p, param + exp_avg / denom * avg_coef)
