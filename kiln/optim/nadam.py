"""NAdam (Adam with Nesterov momentum), following torch.optim.NAdam's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from ..ir import dtypes as dt
from . import _functional as F
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
        self._start_state(p, state, "exp_avg", "exp_avg_sq", mu_product=1.0)

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        beta1 = ops.hp64("betas", 0)
        lr, decay = ops.hp64("lr"), ops.hp64("momentum_decay")
        f32, f64 = dt.float32, dt.float64
        for p in params:
            d, state = p.dtype, self.state[p]
            param, grad = F.param_and_grad(ops, p, group)
            step64 = F.float64_step(ops, F.count_step(ops, state))
            mu = beta1 * (1.0 - 0.5 * 0.96 ** (step64 * decay))
            mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step64 + 1) * decay))
            mu_product = ops.val(state["mu_product"]) * ops.cast(mu, f32)  # float32, as PyTorch's state
            ops.assign(state["mu_product"], mu_product)
            mu_product64 = ops.cast(mu_product, f64)
            exp_avg, exp_avg_sq = F.adam_moments(ops, state, grad, group)
            denom = ops.sqrt(exp_avg_sq / ops.cast(F.bias_correction(ops, step64, 1), d)) + ops.hp("eps", d)
            grad_coef = ops.cast(-lr * (1.0 - mu) / (1.0 - mu_product64), d)
            avg_coef = ops.cast(-lr * mu_next / (1.0 - mu_product64 * mu_next), d)
            param = param + grad / denom * grad_coef
            ops.assign(p, param + exp_avg / denom * avg_coef)