"""Adam and AdamW, following torch.optim.Adam's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from . import _functional as F
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_options


class Adam(Optimizer):
    """Adam (Kingma & Ba); `decoupled_weight_decay=True` gives AdamW.

    Bias corrections `1 - beta ** step` are computed in float64 from the float32 `step`
    state tensor (as PyTorch computes them in Python doubles), then cast to the parameter dtype.
    """

    _tensor_hparams = ("lr", "betas", "eps", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False):
        _check_options(type(self).__name__, lr, eps=eps, betas=betas, weight_decay=weight_decay,
                       differentiable=differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable, differentiable=differentiable,
                        fused=fused, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: ParamGroup, state: dict) -> None:
        self._start_state(p, state, "exp_avg", "exp_avg_sq")
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = self._zeros_like(p)

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        for p in params:
            d, state = p.dtype, self.state[p]
            param, grad = F.param_and_grad(ops, p, group)
            step64 = F.float64_step(ops, F.count_step(ops, state))
            exp_avg, exp_avg_sq = F.adam_moments(ops, state, grad, group)
            step_size = ops.cast(ops.hp64("lr") / F.bias_correction(ops, step64, 0), d)
            bias_correction2_sqrt = ops.cast(ops.sqrt(F.bias_correction(ops, step64, 1)), d)
            if group["amsgrad"]:
                exp_avg_sq = ops.maximum(ops.val(state["max_exp_avg_sq"]), exp_avg_sq)
                ops.assign(state["max_exp_avg_sq"], exp_avg_sq)
            denom = ops.sqrt(exp_avg_sq) / bias_correction2_sqrt + ops.hp("eps", d)
            ops.assign(p, param - exp_avg / denom * step_size)

class AdamW(Adam):
    """Adam with decoupled weight decay (`p *= 1 - lr * weight_decay` before the Adam update)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, foreach=foreach,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for g in self.param_groups:
            g["decoupled_weight_decay"] = True
