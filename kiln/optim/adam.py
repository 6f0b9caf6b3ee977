"""Adam and AdamW, following torch.optim.Adam's single-tensor formulas."""
from __future__ import annotations

from typing import Any, Iterable

from ..frontend.tensor import Tensor
from ..ir import dtypes as dt
from .optimizer import Optimizer, ParamGroup, UpdateOps, _check_options


def lerp(start: Any, end: Any, weight: Any, one_minus_weight: Any, weight_value: float) -> Any:
    """start + weight * (end - start) with PyTorch's two formulas (picked by the weight's value when traced)."""
    if weight_value < 0.5:
        return start + (end - start) * weight
    return end - (end - start) * one_minus_weight


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
        state["step"] = self._step_tensor()
        state["exp_avg"] = self._zeros_like(p)
        state["exp_avg_sq"] = self._zeros_like(p)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = self._zeros_like(p)

    def _update_group(self, group: ParamGroup, params: list[Tensor], ops: UpdateOps) -> None:
        beta1, beta2 = ops.hp64("betas", 0), ops.hp64("betas", 1)
        f64 = dt.float64
        for p in params:
            d = p.dtype
            state = self.state[p]
            param = ops.val(p)
            grad = ops.val(p.grad) if not group["maximize"] else -ops.val(p.grad)
            step = ops.val(state["step"]) + 1
            ops.assign(state["step"], step)
            if group["weight_decay"] != 0:
                if group["decoupled_weight_decay"]:
                    param = param * ops.derived("1-lr*wd", d, lambda: 1 - ops.hp64("lr") * ops.hp64("weight_decay"))
                    ops.assign(p, param)
                else:
                    grad = grad + param * ops.hp("weight_decay", d)
            exp_avg = lerp(ops.val(state["exp_avg"]), grad, ops.derived("1-beta1", d, lambda: 1 - beta1),
                           ops.hp("betas", d, 0), 1 - group["betas"][0])
            ops.assign(state["exp_avg"], exp_avg)
            exp_avg_sq = ops.val(state["exp_avg_sq"]) * ops.hp("betas", d, 1) \
                + grad * grad * ops.derived("1-beta2", d, lambda: 1 - beta2)
            ops.assign(state["exp_avg_sq"], exp_avg_sq)
            step64 = ops.cast(step, f64)
            bias_correction1 = 1 - beta1 ** step64
            bias_correction2 = 1 - beta2 ** step64
            step_size = ops.cast(ops.hp64("lr") / bias_correction1, d)
            bias_correction2_sqrt = ops.cast(ops.sqrt(bias_correction2), d)
            if group["amsgrad"]:
                max_sq = ops.maximum(ops.val(state["max_exp_avg_sq"]), exp_avg_sq)
                ops.assign(state["max_exp_avg_sq"], max_sq)
                denom = ops.sqrt(max_sq) / bias_correction2_sqrt + ops.hp("eps", d)
            else:
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
